"""What every admin page shares: the navigation (filtered by the viewer's role) and the
base template. Each capability's admin pages render through :func:`render_admin`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from troth.web.auth_deps import Principal

__all__ = ["NAV", "NO_STORE", "render_admin"]

NO_STORE = {"Cache-Control": "no-store"}

# (link, label, permission): the navigation, filtered by the viewer's role
NAV = (
    ("/admin", "Overview", "admin.view"),
    ("/admin#policy", "Policy", "policy.view"),
    ("/admin#consent", "Consent", "consent.report"),
    ("/admin/analytics", "Analytics", "consent.report"),
    ("/admin#audit", "Audit log", "audit.read"),
    ("/admin/requests", "Requests", "requests.view"),
    ("/admin/transfers", "Transfers", "transfers.view"),
    ("/admin/disclosures", "Disclosures", "transfers.view"),
    ("/admin/legal", "Legal requests", "legal.manage"),
    ("/admin/users", "Users", "admin.users"),
)

_env = Environment(
    loader=PackageLoader("troth.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_admin(
    request: Request,
    template: str,
    title: str,
    principal: Principal | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """``admin/{template}`` inside the admin shell, never cached."""
    here = request.url.path
    nav = [
        {"href": href, "label": label, "current": href == here}
        for href, label, permission in NAV
        if principal is not None and principal.may(permission)
    ]
    body = _env.get_template(f"admin/{template}").render(
        title=title,
        service=request.app.state.services.policy.service,
        principal=principal,
        nav=nav,
        **context,
    )
    return HTMLResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})
