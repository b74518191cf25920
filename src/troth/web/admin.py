"""The admin pages: sign-in and sign-out, the overview, tracking analytics, the list of users.

Server-rendered HTML, no inline script or style (the admin CSP forbids both); the consent
chart is an SVG drawn here, with a table of the same figures next to it. Each section of
the overview, and each navigation link, appears only for roles that may see it.
Creating users and API keys stays in the CLI.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from troth.audit.log import AuditEvent
from troth.auth.api_keys import list_api_keys
from troth.auth.roles import allows
from troth.auth.sessions import SESSION_LIFETIME, create_session, destroy_session
from troth.auth.users import LOCK_FOR, MAX_FAILURES, list_users, login_attempt
from troth.consent.report import ConsentReport, consent_report
from troth.errors import TrothError
from troth.rights.requests_model import request_workload
from troth.web.admin_pages import NO_STORE as _NO_STORE
from troth.web.admin_pages import render_admin
from troth.web.auth_deps import (
    SESSION_COOKIE,
    Principal,
    engine_of,
    require,
    session_principal,
)
from troth.web.problems import RateLimiter, client_key
from troth.web.security import is_https
from troth.web.stats_api import (
    RangeError,
    analytics_chart,
    analytics_report,
    dropped_hits,
    parse_range,
)

__all__ = ["LOGIN_COOKIE", "admin_router"]

LOGIN_COOKIE = "troth_login"


@dataclass(frozen=True)
class _Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class _Series:
    name: str
    css: str
    path: str
    points: list[_Point]


@dataclass(frozen=True)
class _Tick:
    x: float
    y: float
    label: str
    anchor: str = "end"


@dataclass(frozen=True)
class _Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    yticks: list[_Tick]
    xticks: list[_Tick]
    series: list[_Series]


def _chart(report: ConsentReport, width: int = 720, height: int = 260) -> _Chart:
    left, right, top, bottom = 48, width - 16, 16, height - 32
    dates = report.dates()
    span = max(len(dates) - 1, 1)

    def x(i: int) -> float:
        return round(left + (right - left) * (i / span if len(dates) > 1 else 0.5), 1)

    def y(share: float) -> float:
        return round(bottom - (bottom - top) * share, 1)

    series = []
    for n, (category, name) in enumerate(report.categories):
        parts: list[str] = []
        points: list[_Point] = []
        previous = False
        for i, day in enumerate(dates):
            share = report.share(day, category)
            if share is None:
                previous = False
                continue
            given, total = report.counts[(day, category)]
            parts.append(f"{'L' if previous else 'M'}{x(i)} {y(share)}")
            label = f"{name}, {day.isoformat()}: {share:.0%} ({given} of {total})"
            points.append(_Point(x(i), y(share), label))
            previous = True
        series.append(_Series(name, f"series-{n % 8}", " ".join(parts), points))
    yticks = [_Tick(left, y(s / 100), f"{s}%") for s in (0, 25, 50, 75, 100)]
    marks = sorted({0, len(dates) // 2, len(dates) - 1})
    anchors = {0: "start", len(dates) - 1: "end"}
    xticks = [
        _Tick(x(i), bottom, dates[i].strftime("%d %b"), anchors.get(i, "middle")) for i in marks
    ]
    return _Chart(width, height, left, right, top, bottom, yticks, xticks, series)


# --- the router ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verified:
    ok: bool
    size: int | None
    signed_size: int | None
    problem: str
    at: str
    by: str


def admin_router(
    *,
    login_rate_per_minute: int = 10,
    trust_forwarded_proto: bool = False,
    consent_days: int = 30,
) -> APIRouter:
    """The admin pages under ``/admin``. Sign-in attempts are limited per client network
    (``login_rate_per_minute``, bursts up to 10); ``trust_forwarded_proto`` as for
    :class:`troth.web.security.SecurityHeaders` (cookies are ``Secure`` over HTTPS)."""
    limiter = RateLimiter(login_rate_per_minute)
    last_verified: list[_Verified] = []  # the latest audit verification in this process
    router = APIRouter(include_in_schema=False)

    def secure(request: Request) -> bool:
        return is_https(request.scope, trust_forwarded_proto)

    render = render_admin

    def login_page(
        request: Request,
        status: int = 200,
        error: str | None = None,
        email: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        # Login CSRF: the form's token must match this cookie (double submit).
        token = secrets.token_urlsafe(32)
        response = render(
            request, "login.html.j2", "Sign in", None, status, headers,
            error=error, email=email, login_csrf=token,
        )  # fmt: skip
        response.set_cookie(
            LOGIN_COOKIE, token, max_age=3600, path="/admin/login",
            secure=secure(request), httponly=True, samesite="strict",
        )  # fmt: skip
        return response

    async def audit(request: Request, action: str, user_id: int | str, **details: Any) -> None:
        log = getattr(request.app.state.services, "audit", None)
        if log is not None:
            event = AuditEvent(action, f"user:{user_id}", None, details)
            await run_in_threadpool(log.record, engine_of(request), [event])

    @router.get("/admin/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        principal = await session_principal(request)
        if principal is not None and principal.may("admin.view"):
            return RedirectResponse("/admin", status_code=303, headers=_NO_STORE)
        return login_page(request)

    @router.post("/admin/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        email: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        wait = limiter.take(client_key(request))
        if wait:
            return login_page(
                request,
                429,
                "Too many sign-in attempts from your network. "
                f"Try again in {max(1, math.ceil(wait))} seconds.",
                email,
                limiter.retry_after(wait),
            )
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
            return login_page(request, 400, "The sign-in form had expired. Please try again.")
        if not email or not password:
            return login_page(request, 400, "Enter your e-mail address and password.", email)
        engine = engine_of(request)
        attempt = await run_in_threadpool(login_attempt, engine, email, password)
        if attempt.user is None:
            if attempt.outcome in ("wrong_password", "disabled"):  # not every knock on a lock
                await audit(
                    request,
                    "admin.login_refused",
                    attempt.user_id or 0,
                    reason=attempt.outcome,
                    locked=attempt.locked_now,
                )
            minutes = int(LOCK_FOR.total_seconds() // 60)
            return login_page(
                request,
                401,
                "Wrong e-mail address or password, or the account is locked "
                f"({MAX_FAILURES} wrong passwords in a row lock it for {minutes} minutes).",
                email,
                {"WWW-Authenticate": 'Bearer realm="troth"'},
            )
        user = attempt.user
        if not allows(user.role, "admin.view"):
            return login_page(
                request,
                403,
                f"The role '{user.role}' does not use the admin pages; it works with an API key.",
                email,
            )
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:  # a new sign-in never reuses a token (no session fixation)
            await run_in_threadpool(destroy_session, engine, previous)
        token, _session = await run_in_threadpool(create_session, engine, user.id)
        await audit(request, "admin.login", user.id)
        response = RedirectResponse("/admin", status_code=303, headers=_NO_STORE)
        response.set_cookie(
            SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
            secure=secure(request), httponly=True, samesite="strict",
        )  # fmt: skip
        response.delete_cookie(
            LOGIN_COOKIE, path="/admin/login", secure=secure(request), httponly=True,
            samesite="strict",
        )  # fmt: skip
        return response

    @router.post("/admin/logout")
    async def logout(
        request: Request, principal: Annotated[Principal, Depends(require(None))]
    ) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if principal.kind == "user" and token:
            await run_in_threadpool(destroy_session, engine_of(request), token)
            await audit(request, "admin.logout", principal.id)
        response = RedirectResponse("/admin/login", status_code=303, headers=_NO_STORE)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=secure(request), httponly=True, samesite="strict"
        )
        return response

    async def overview_page(request: Request, principal: Principal) -> Response:
        services = request.app.state.services
        policy_view = None
        if principal.may("policy.view"):
            history = services.history
            today = dt.datetime.now(dt.UTC).date()
            in_force = [v for v in history.versions if v.effective <= today]
            policy_view = {
                "version": services.policy.version,
                "effective": services.policy.effective,
                "upcoming": services.policy.effective > today,
                "in_force": in_force[-1] if in_force else None,
                "versions": list(reversed(history.versions)),
            }
        consent = chart = None
        if principal.may("consent.report"):
            consent = await run_in_threadpool(
                consent_report, services.engine, services.policy, consent_days
            )
            chart = _chart(consent)
        audit_view = None
        if principal.may("audit.read"):
            audit_view = {
                "available": getattr(services, "audit", None) is not None,
                "last": last_verified[-1] if last_verified else None,
            }
        return render(
            request,
            "overview.html.j2",
            "Overview",
            principal,
            policy=policy_view,
            consent=consent,
            chart=chart,
            audit=audit_view,
            requests=(
                await run_in_threadpool(
                    request_workload, services.engine, dt.datetime.now(dt.UTC).date()
                )
                if principal.may("requests.view")
                else None
            ),
        )

    @router.get("/admin", response_class=HTMLResponse)
    async def overview(
        request: Request, principal: Annotated[Principal, Depends(require("admin.view"))]
    ) -> Response:
        return await overview_page(request, principal)

    @router.post("/admin/audit/verify", response_class=HTMLResponse)
    async def verify_audit(
        request: Request, principal: Annotated[Principal, Depends(require("audit.read"))]
    ) -> Response:
        log = getattr(request.app.state.services, "audit", None)
        at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        by = principal.email or f"API key {principal.id}"
        if log is None:
            result = _Verified(False, None, None, "no audit log is configured", at, by)
        else:
            try:
                report = await run_in_threadpool(log.verify, engine_of(request))
                result = _Verified(
                    bool(report.ok), report.size, report.signed_size, report.problem, at, by
                )
            except TrothError as exc:
                result = _Verified(False, None, None, str(exc), at, by)
        last_verified[:] = [result]
        return await overview_page(request, principal)

    @router.get("/admin/analytics", response_class=HTMLResponse)
    async def analytics(
        request: Request,
        principal: Annotated[Principal, Depends(require("consent.report"))],
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        campaign: str = "",
    ) -> Response:
        campaign = campaign[:64]  # the column's width
        today = dt.datetime.now(dt.UTC).date()
        error = None
        try:
            first, last = parse_range(start, end, today=today)
        except RangeError as exc:
            error = str(exc)
            first, last = parse_range(None, None, today=today)
        report = await run_in_threadpool(
            analytics_report, engine_of(request), first, last, campaign, dropped_hits(request)
        )

        def link(days: int) -> str:
            since = today - dt.timedelta(days=days - 1)
            query = {"from": since.isoformat(), "to": today.isoformat()}
            return "/admin/analytics?" + urlencode(
                {**query, **({"campaign": campaign} if campaign else {})}
            )

        presets = [
            {
                "href": link(days),
                "label": label,
                "current": (first, last) == (today - dt.timedelta(days=days - 1), today),
            }
            for days, label in ((7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "12 months"))
        ]
        return render(
            request,
            "analytics.html.j2",
            "Analytics",
            principal,
            422 if error else 200,
            error=error,
            start=start if error else first.isoformat(),
            end=end if error else last.isoformat(),
            report=report,
            chart=None if report.empty else analytics_chart(report),
            presets=presets,
        )

    @router.get("/admin/users", response_class=HTMLResponse)
    async def users_page(
        request: Request, principal: Annotated[Principal, Depends(require("admin.users"))]
    ) -> Response:
        engine = engine_of(request)
        people = await run_in_threadpool(list_users, engine)
        keys = await run_in_threadpool(list_api_keys, engine)
        now = dt.datetime.now(dt.UTC)
        return render(
            request, "users.html.j2", "Users", principal, users=people, keys=keys, now=now
        )

    return router
