"""Authentication and permissions for routes, as FastAPI dependencies.

``Depends(require("audit.read"))`` admits a request that carries

- ``Authorization: Bearer troth_<id>_<secret>`` (an API key), or
- the admin session cookie ``troth_admin``; for unsafe methods (POST, PUT, PATCH,
  DELETE) also the session's CSRF token, as form field ``csrf`` or header
  ``X-CSRF-Token``,

and whose role holds the permission (:mod:`troth.auth.roles`). Otherwise it raises
:class:`AuthProblem`: 401 with ``WWW-Authenticate: Bearer`` when no valid credential came,
403 when the role lacks the permission or the CSRF token is missing or wrong.
Install :func:`auth_problem_handler` for it so that the problem keeps its headers; a
browser that asks for an admin page without a session gets a page with a sign-in link.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from troth.auth.api_keys import verify_api_key
from troth.auth.roles import allows, check_permission
from troth.auth.sessions import load_session
from troth.web.problems import problem
from troth.web.security import is_admin_path

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AuthProblem",
    "Principal",
    "auth_problem_handler",
    "engine_of",
    "require",
    "session_principal",
]

SESSION_COOKIE = "troth_admin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class Principal:
    """Who is asking: an API key (``id`` is the key id) or a signed-in user (the user id)."""

    kind: Literal["api_key", "user"]
    id: str
    role: str
    email: str | None = None  # users only
    csrf: str | None = None  # sessions only: the token their forms must send back

    def may(self, permission: str) -> bool:
        return allows(self.role, permission)


class AuthProblem(HTTPException):
    """401 or 403, rendered as an RFC 9457 problem by :func:`auth_problem_handler`."""

    def __init__(
        self, status_code: int, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, detail=detail, headers=headers)
        self.title = title


_SIGN_IN_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - troth admin</title><link rel="stylesheet" href="/troth/admin.css"></head>
<body class="narrow"><main><h1>Sign in required</h1>
<p>This page is for signed-in administrators.</p>
<p><a class="button" href="/admin/login">Sign in</a></p></main></body></html>
"""


async def auth_problem_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, AuthProblem):  # pragma: no cover - registered for AuthProblem only
        raise exc
    headers = dict(exc.headers or {})
    if (
        exc.status_code == 401
        and request.method == "GET"
        and is_admin_path(request.url.path)
        and "text/html" in request.headers.get("accept", "")
    ):
        return HTMLResponse(_SIGN_IN_PAGE, status_code=401, headers=headers)
    return problem(exc.status_code, exc.title, str(exc.detail), **headers)


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.services.engine
    return engine


def _unauthorized(detail: str, error: str | None = None) -> AuthProblem:
    challenge = 'Bearer realm="troth"' + (f', error="{error}"' if error else "")
    return AuthProblem(401, "Unauthorized", detail, {"WWW-Authenticate": challenge})


async def session_principal(request: Request) -> Principal | None:
    """The signed-in user of the session cookie, if it names a live session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    session = await run_in_threadpool(load_session, engine_of(request), token)
    if session is None:
        return None
    return Principal("user", str(session.user_id), session.role, session.email, session.csrf)


async def _principal(request: Request) -> Principal:
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer":
            key = await run_in_threadpool(verify_api_key, engine_of(request), credential.strip())
            if key is None:
                raise _unauthorized(
                    "authorization: not a valid, unrevoked troth API key", "invalid_token"
                )
            return Principal("api_key", key.key_id, key.role)
    principal = await session_principal(request)
    if principal is None:
        raise _unauthorized(
            "send Authorization: Bearer troth_... (an API key) or sign in at /admin/login"
        )
    return principal


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if sent is None and content_type.startswith(_FORMS):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise AuthProblem(
            403,
            "CSRF token missing or wrong",
            f"{CSRF_FIELD}: send the session's CSRF token as form field '{CSRF_FIELD}' "
            f"or header {CSRF_HEADER}",
        )


def require(permission: str | None) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting principals whose role holds ``permission``; ``None`` admits
    any authenticated principal (sign-out). Unknown permission names fail at import."""
    if permission is not None:
        check_permission(permission)

    async def dependency(request: Request) -> Principal:
        principal = await _principal(request)
        if principal.kind == "user" and request.method in UNSAFE_METHODS:
            await _check_csrf(request, principal.csrf or "")
        if permission is not None and not principal.may(permission):
            raise AuthProblem(
                403,
                "Forbidden",
                f"role '{principal.role}' does not hold the permission '{permission}'",
            )
        return principal

    dependency.__name__ = f"require_{(permission or 'login').replace('.', '_')}"
    return dependency
