"""Data subject requests over HTTP: the public portal, the API, and the admin pages.

Public (the requester): ``/privacy/requests`` (form, and JSON for sites that build their
own), the status page ``/privacy/requests/{id}`` where the e-mailed code is entered, and the
single-use download ``/privacy/requests/download/{token}``. Identities travel only in
request bodies, never in URLs, and no answer echoes them.

API (``/api/rights/requests``): a backend holding ``requests.submit`` submits for an
account it has authenticated (verified at once); officers list, approve, extend, reject
and execute. Admin pages: ``/admin/requests`` by state and deadline, and a detail page
with the steps and the decisions (forms with the session's CSRF token).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from troth.errors import TrothError
from troth.policy.types import text_for
from troth.rights.requests_errors import RequestError
from troth.rights.requests_model import KINDS, RequestView
from troth.rights.requests_service import Rights, open_rights
from troth.rights.requests_texts import texts
from troth.web.admin_pages import NO_STORE, render_admin
from troth.web.auth_deps import Principal, require
from troth.web.problems import RateLimiter, client_key, problem
from troth.web.services import Services

__all__ = ["rights_router"]

Kind = Literal["access", "portability", "erasure", "rectification", "restriction", "objection"]
Scope = Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")]
Target = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){2}$")
]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortalIn(_Body):
    kind: Kind
    email: str = Field(min_length=3, max_length=254)
    language: str | None = Field(default=None, max_length=8)
    scope: Scope = "*"
    corrections: dict[Target, Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict, max_length=20
    )


class AccountIn(_Body):
    kind: Kind
    identities: dict[str, list[str]] = Field(min_length=1, max_length=8)
    language: str | None = Field(default=None, max_length=8)
    scope: Scope = "*"
    corrections: dict[Target, Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict, max_length=20
    )


class CodeIn(_Body):
    code: str = Field(min_length=1, max_length=32)


class ExtendIn(_Body):
    months: int = Field(ge=1, le=2)
    reason: str = Field(min_length=1, max_length=1000)


class RejectIn(_Body):
    reason: str = Field(min_length=1, max_length=1000)


def _first_error(exc: ValidationError) -> RequestError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    # never echo the input: pydantic's message describes the rule, not the value
    return RequestError(422, "Invalid request", f"{where}: {first['msg']}")


_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)


async def _fields(request: Request) -> tuple[dict[str, Any], bool]:
    """The body as a mapping, and whether it came as JSON (else a form)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "Malformed JSON", "body: not valid JSON") from None
        if not isinstance(data, dict):
            raise RequestError(400, "Malformed JSON", "body: expected a JSON object")
        return data, True
    media = content_type.split(";", 1)[0].strip().lower()
    broken = RequestError(400, "Malformed form", "body: not a readable form")
    if media not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if not media and not await request.body():
            return {}, False  # no body at all (a decision that needs no fields)
        raise broken
    if media == "multipart/form-data":
        # a body cut short parses as an empty form: it must end with its closing boundary
        boundary = _BOUNDARY.search(content_type)
        body = await request.body()
        if boundary is None or not body.rstrip(b"\r\n").endswith(
            b"--" + boundary.group(1).encode("latin-1") + b"--"
        ):
            raise broken
    try:
        form = await request.form()
    except Exception:  # a broken multipart body; nothing of it is echoed
        raise broken from None
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}, False


def _parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


def _form_to_portal(data: dict[str, Any]) -> dict[str, Any]:
    """The portal form's flat fields as the JSON shape (one correction: target + value)."""
    out = {k: v for k, v in data.items() if k in ("kind", "email", "language", "scope") and v}
    target, value = data.get("target", ""), data.get("value", "")
    if target or value:
        out["corrections"] = {target: value}
    return out


def _actor(who: Principal) -> str:
    return f"{who.kind}:{who.id}"


def rights_router(services: Services) -> APIRouter:
    rights: Rights = open_rights(
        services.settings,
        services.policy,
        services.engine,
        services.audit,
        services.vault,
        services.ledger,
        datasets=services.settings.datasets,
    )
    desk = rights.desk
    policy = services.policy
    limiter = RateLimiter(30)  # submissions and code entries per minute per client network

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if services.settings.rights_worker:
            rights.start_background()
        yield
        await anyio.to_thread.run_sync(rights.stop)
        rights.executor.close()

    router = APIRouter(lifespan=lifespan)
    env = Environment(
        loader=PackageLoader("troth.web", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def purposes(lang: str) -> list[tuple[str, str]]:
        default = policy.default_language
        return [(p.id, text_for(p.title, lang, default) or p.id) for p in policy.purposes]

    def rectifiable() -> list[tuple[str, str]]:
        try:
            return rights.executor.rectifiable()
        except RequestError:
            return []

    def page(template: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = env.get_template(template).render(
            service=policy.service, lang=lang, t=texts(lang), **context
        )
        headers = {**NO_STORE, "Content-Language": lang, "Vary": "Accept-Language"}
        return HTMLResponse(body, status_code=status, headers=headers)

    def error(exc: RequestError) -> JSONResponse:
        return problem(exc.status, exc.title, str(exc))

    async def call(work: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(work)

    def language(asked: str | None) -> str:
        return asked if asked in policy.languages else policy.default_language

    def page_language(request: Request, fallback: str | None = None) -> str:
        """``?lang=``, else the browser's first language the policy has, else ``fallback``."""
        asked = request.query_params.get("lang")
        if asked in policy.languages:
            return str(asked)
        if fallback is None:
            for part in request.headers.get("accept-language", "").split(",")[:20]:
                tag = part.split(";")[0].strip().split("-")[0].lower()
                if tag in policy.languages:
                    return tag
        return fallback or policy.default_language

    def portal_page(lang: str, status: int = 200, error: str | None = None) -> HTMLResponse:
        return page(
            "rights_portal.html.j2",
            lang,
            status,
            kinds=KINDS,
            purposes=purposes(lang),
            fields=rectifiable(),
            error=error,
            recorded=status == 503,
        )

    def limited(request: Request) -> Response | None:
        wait = limiter.take(client_key(request))
        if wait:
            return problem(
                429,
                "Too many requests",
                "body: too many submissions from your network; try again later",
                **limiter.retry_after(wait),
            )
        return None

    # --- the public portal -------------------------------------------------------------------

    @router.get("/privacy/requests", response_class=HTMLResponse, summary="Request portal")
    def portal(request: Request) -> HTMLResponse:
        return portal_page(page_language(request))

    @router.post("/privacy/requests", summary="Submit a data subject request", status_code=202)
    async def submit(request: Request) -> Response:
        refused = limited(request)
        if refused is not None:
            return refused
        as_json = True
        data: dict[str, Any] = {}
        try:
            data, as_json = await _fields(request)
            body = _parse(PortalIn, data if as_json else _form_to_portal(data))
            view = await call(
                lambda: desk.submit(
                    body.kind,
                    {"email": [body.email]},
                    channel="portal",
                    actor="requester",
                    language=language(body.language),
                    params={"scope": body.scope},
                    corrections=body.corrections,
                )
            )
        except RequestError as exc:
            if as_json:
                return error(exc)
            return portal_page(language(data.get("language")), exc.status, str(exc))
        status_url = f"/privacy/requests/{view.id}"
        if not as_json:
            return RedirectResponse(status_url, status_code=303, headers=NO_STORE)
        return JSONResponse(
            {"id": view.id, "state": view.state, "deadline": view.deadline.isoformat(),
             "status_url": status_url},
            status_code=202,
            headers=NO_STORE,
        )  # fmt: skip

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    def status_page(
        request: Request, view: RequestView, status: int = 200, error: str | None = None
    ) -> Response:
        lang = page_language(request, view.language)
        return page(
            "rights_status.html.j2",
            lang,
            status,
            item=view,
            today=desk.today(),
            error=error,
            purposes=dict(purposes(lang)),
        )

    def public_dict(view: RequestView) -> dict[str, Any]:
        data = view.as_dict(desk.today())
        data.pop("steps")
        data.pop("verified_by")
        return data

    @router.get("/privacy/requests/{request_id}", summary="A request's status")
    async def status(request: Request, request_id: str) -> Response:
        try:
            view = await call(lambda: desk.get(request_id, steps=False))
        except RequestError as exc:
            return error(exc)
        if wants_json(request):
            return JSONResponse(public_dict(view), headers=NO_STORE)
        return status_page(request, view)

    async def requester_action(
        request: Request, request_id: str, action: Callable[[dict[str, Any]], RequestView]
    ) -> Response:
        refused = limited(request)
        if refused is not None:
            return refused
        as_json = True
        try:
            data, as_json = await _fields(request)
            view = await call(lambda: action(data))
        except RequestError as exc:
            if as_json or exc.status == 404:
                return error(exc)
            try:
                view = await call(lambda: desk.get(request_id, steps=False))
            except RequestError:
                return error(exc)
            return status_page(request, view, exc.status, str(exc))
        if as_json:
            return JSONResponse(public_dict(view), headers=NO_STORE)
        return RedirectResponse(f"/privacy/requests/{view.id}", status_code=303, headers=NO_STORE)

    @router.post("/privacy/requests/{request_id}/verify", summary="Enter the e-mailed code")
    async def verify(request: Request, request_id: str) -> Response:
        return await requester_action(
            request,
            request_id,
            lambda data: desk.verify_code(request_id, _parse(CodeIn, data).code),
        )

    @router.post("/privacy/requests/{request_id}/resend", summary="Send a new code")
    async def resend(request: Request, request_id: str) -> Response:
        return await requester_action(request, request_id, lambda _d: desk.resend_code(request_id))

    @router.get("/privacy/requests/download/{token}", summary="Download a package (once)")
    async def download(token: str) -> Response:
        try:
            found = await call(lambda: rights.download(token))
        except RequestError as exc:
            return error(exc)
        return Response(
            found.data,
            media_type="application/zip",
            headers={
                **NO_STORE,
                "Content-Disposition": f'attachment; filename="{found.filename}"',
            },
        )

    # --- the API ------------------------------------------------------------------------------

    @router.post("/api/rights/requests", status_code=201, summary="Submit for an account")
    async def api_submit(
        request: Request, who: Annotated[Principal, Depends(require("requests.submit"))]
    ) -> Response:
        try:
            data, as_json = await _fields(request)
            if not as_json:
                raise RequestError(415, "JSON expected", "body: send application/json")
            body = _parse(AccountIn, data)
            view = await call(
                lambda: desk.submit(
                    body.kind,
                    body.identities,
                    channel="api",
                    actor=_actor(who),
                    language=language(body.language),
                    params={"scope": body.scope},
                    corrections=body.corrections,
                    verified_by=f"account ({_actor(who)})",
                )
            )
        except RequestError as exc:
            return error(exc)
        return JSONResponse(view.as_dict(desk.today()), status_code=201, headers=NO_STORE)

    @router.get("/api/rights/requests", summary="Requests by deadline")
    async def api_list(
        _who: Annotated[Principal, Depends(require("requests.view"))], state: str | None = None
    ) -> Response:
        try:
            views = await call(lambda: desk.list_requests(state))
        except RequestError as exc:
            return error(exc)
        today = desk.today()
        return JSONResponse({"requests": [v.as_dict(today) for v in views]}, headers=NO_STORE)

    @router.get("/api/rights/requests/{request_id}", summary="One request with its steps")
    async def api_get(
        request_id: str, _who: Annotated[Principal, Depends(require("requests.view"))]
    ) -> Response:
        try:
            view = await call(lambda: desk.get(request_id))
        except RequestError as exc:
            return error(exc)
        return JSONResponse(view.as_dict(desk.today()), headers=NO_STORE)

    Decide = Callable[[str, dict[str, Any], Principal], RequestView]

    def decisions() -> dict[str, Decide]:
        return {
            "approve": lambda rid, _d, who: desk.approve(rid, _actor(who)),
            "execute": lambda rid, _d, who: desk.execute(rid, _actor(who)),
            "extend": lambda rid, d, who: desk.extend(
                rid, _parse(ExtendIn, d).months, _parse(ExtendIn, d).reason, _actor(who)
            ),
            "reject": lambda rid, d, who: desk.reject(rid, _parse(RejectIn, d).reason, _actor(who)),
        }

    def api_decision(name: str, decide: Decide) -> Callable[..., Awaitable[Response]]:
        async def endpoint(
            request: Request,
            request_id: str,
            who: Annotated[Principal, Depends(require("requests.manage"))],
        ) -> Response:
            try:
                data, _ = await _fields(request)
                view = await call(lambda: decide(request_id, data, who))
            except RequestError as exc:
                return error(exc)
            return JSONResponse(view.as_dict(desk.today()), headers=NO_STORE)

        endpoint.__name__ = f"api_{name}"
        return endpoint

    for name, decide in decisions().items():
        router.add_api_route(
            f"/api/rights/requests/{{request_id}}/{name}",
            api_decision(name, decide),
            methods=["POST"],
            summary=f"{name.capitalize()} a request",
        )

    def check_erasure(request_id: str, who: Principal) -> dict[str, Any]:
        found = rights.executor.verify_erasure(request_id, _actor(who))
        return {
            "proven": found.proven,
            "remaining": found.remaining,
            "kept": found.kept,
            "reasons": found.reasons,
        }

    @router.post(
        "/api/rights/requests/{request_id}/verify-erasure",
        summary="Re-query every declared store: rows left after an erasure",
    )
    async def api_verify_erasure(
        request_id: str, who: Annotated[Principal, Depends(require("requests.manage"))]
    ) -> Response:
        try:
            report = await call(lambda: check_erasure(request_id, who))
        except RequestError as exc:
            return error(exc)
        return JSONResponse(report, headers=NO_STORE)

    # --- the admin pages ----------------------------------------------------------------------

    @router.get("/admin/requests", response_class=HTMLResponse, include_in_schema=False)
    async def admin_list(
        request: Request,
        principal: Annotated[Principal, Depends(require("requests.view"))],
        state: str = "open",
    ) -> Response:
        try:
            views = await call(lambda: desk.list_requests(None if state == "all" else state))
        except RequestError:
            state = "open"
            views = await call(lambda: desk.list_requests("open"))
        workload = await call(desk.workload)
        return render_admin(
            request,
            "requests.html.j2",
            "Requests",
            principal,
            requests=views,
            workload=workload,
            state=state,
            today=desk.today(),
        )

    async def admin_detail(
        request: Request,
        principal: Principal,
        request_id: str,
        status: int = 200,
        error_text: str | None = None,
        proof: dict[str, Any] | None = None,
    ) -> Response:
        try:
            view = await call(lambda: desk.get(request_id))
        except RequestError as exc:
            return error(exc)

        def holds() -> list[tuple[str, str]]:
            try:
                return rights.executor.holds(desk.identities(request_id))
            except TrothError:
                return []

        return render_admin(
            request,
            "request.html.j2",
            f"Request {view.id[:8]}",
            principal,
            status,
            item=view,
            today=desk.today(),
            holds=await call(holds),
            jobs=await call(lambda: desk.jobs(request_id)),
            error=error_text,
            proof=proof,
        )

    @router.post(
        "/admin/requests/{request_id}/verify-erasure",
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def admin_verify_erasure(
        request: Request,
        request_id: str,
        principal: Annotated[Principal, Depends(require("requests.manage"))],
    ) -> Response:
        try:
            report = await call(lambda: check_erasure(request_id, principal))
        except RequestError as exc:
            if exc.status == 404:
                return error(exc)
            return await admin_detail(request, principal, request_id, exc.status, str(exc))
        return await admin_detail(request, principal, request_id, proof=report)

    @router.get(
        "/admin/requests/{request_id}", response_class=HTMLResponse, include_in_schema=False
    )
    async def admin_get(
        request: Request,
        request_id: str,
        principal: Annotated[Principal, Depends(require("requests.view"))],
    ) -> Response:
        return await admin_detail(request, principal, request_id)

    def admin_decision(name: str, decide: Decide) -> Callable[..., Awaitable[Response]]:
        async def endpoint(
            request: Request,
            request_id: str,
            principal: Annotated[Principal, Depends(require("requests.manage"))],
        ) -> Response:
            try:
                data, _ = await _fields(request)
                await call(lambda: decide(request_id, data, principal))
            except RequestError as exc:
                if exc.status == 404:
                    return error(exc)
                return await admin_detail(request, principal, request_id, exc.status, str(exc))
            return RedirectResponse(
                f"/admin/requests/{request_id}", status_code=303, headers=NO_STORE
            )

        endpoint.__name__ = f"admin_{name}"
        return endpoint

    for name, decide in decisions().items():
        router.add_api_route(
            f"/admin/requests/{{request_id}}/{name}",
            admin_decision(name, decide),
            methods=["POST"],
            include_in_schema=False,
            response_class=HTMLResponse,
        )

    return router
