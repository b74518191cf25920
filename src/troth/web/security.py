"""Security headers on every response (an ASGI middleware).

Every response: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
strict-origin-when-cross-origin``. Admin pages (``/admin``, ``/admin/...``) also get a
strict Content-Security-Policy without ``'unsafe-inline'``, ``X-Frame-Options: DENY`` and
``Cache-Control: no-store``; public pages may be framed by the same origin only. Over
HTTPS, ``Strict-Transport-Security`` as well. A header a route set itself is kept, except
on admin pages, where these always win.

HTTPS means the ASGI scheme is ``https`` (uvicorn sets it from ``X-Forwarded-Proto`` for
the proxies in ``--forwarded-allow-ips``), or ``trust_forwarded_proto`` is set and the
request says ``X-Forwarded-Proto: https``: set it only when every request reaches troth
through a proxy that overwrites that header.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ADMIN_CSP", "HSTS", "PUBLIC_CSP", "SecurityHeaders", "is_admin_path", "is_https"]

ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PUBLIC_CSP = "frame-ancestors 'self'"
HSTS = "max-age=31536000; includeSubDomains"


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def is_https(scope: Scope, trust_forwarded_proto: bool = False) -> bool:
    """Whether the request reached us over HTTPS (see the module docstring)."""
    if scope.get("scheme") == "https":
        return True
    if not trust_forwarded_proto:
        return False
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            first: bytes = value.split(b",")[0]
            return first.strip().lower() == b"https"
    return False


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, trust_forwarded_proto: bool = False) -> None:
        self.app = app
        self.trust_forwarded_proto = trust_forwarded_proto

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admin = is_admin_path(scope.get("path", ""))
        https = is_https(scope, self.trust_forwarded_proto)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                defaults = {
                    "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "strict-origin-when-cross-origin",
                }
                forced: dict[str, str] = {}
                if admin:
                    forced = {
                        "Content-Security-Policy": ADMIN_CSP,
                        "X-Frame-Options": "DENY",
                        "Cache-Control": "no-store",
                    }
                else:
                    defaults["Content-Security-Policy"] = PUBLIC_CSP
                    defaults["X-Frame-Options"] = "SAMEORIGIN"
                if https:
                    defaults["Strict-Transport-Security"] = HSTS
                for name, value in defaults.items():
                    if name not in headers:
                        headers[name] = value
                for name, value in forced.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
