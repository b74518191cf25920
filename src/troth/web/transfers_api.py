"""HTTP API and admin pages of the transfers capability: the register of recipients and
transfers, the disclosure log, and requests from authorities with their legal holds.

Personal data (subject ids) travels only in request bodies; answers never contain it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from troth.errors import PurposeDenied, RequestError, VocabularyError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.transfers.disclosures import DisclosureLog
from troth.transfers.legal import LegalRequests
from troth.transfers.register import by_country, transfer_register
from troth.web.admin_pages import render_admin
from troth.web.auth_deps import Principal, require
from troth.web.problems import problem
from troth.web.services import Services

__all__ = ["transfers_router"]

Id = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Subject = Annotated[str, Field(pattern=SUBJECT_PATTERN.pattern)]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2,5}$")]
Line = Annotated[str, Field(min_length=1, max_length=200)]
# Ids of legal requests and holds are stored (and referenced) as 32-bit integers.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
T = TypeVar("T")

# Which request field each refusal is about (problem details name it).
_FIELDS = {
    "recipient_undeclared": "recipient",
    "purpose_undeclared": "purpose",
    "category_undeclared": "categories",
    "country_undeclared": "country",
    "country_required": "country",
    "scope_undeclared": "scope",
    "no_mechanism": "recipient",
    "decision": "decision",
    "purpose": "purpose",
    "subject_not_in_request": "subjects",
    "no_subjects": "subjects",
}
_NOT_FOUND = ("unknown_request", "unknown_hold")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DisclosureIn(_Body):
    recipient: Id
    purpose: Id
    categories: list[Id] = Field(min_length=1, max_length=64)
    subject: Subject | None = None
    country: Country | None = None


class VaultDisclosureIn(_Body):
    subject: Subject
    recipient: Id
    purpose: Id
    categories: list[Id] = Field(min_length=1, max_length=64)
    country: Country | None = None
    activity: Id | None = None


class LegalIn(_Body):
    authority: Line
    country: Country
    reference: Line
    received: dt.date
    decision: Literal["pending", "disclosed", "partial", "refused"]
    legal_basis: Annotated[str, Field(min_length=1, max_length=500)]
    categories: list[Id] = Field(default_factory=list, max_length=64)
    subjects: list[Subject] = Field(default_factory=list, max_length=1000)
    recipient: Id | None = None
    purpose: Id | None = None
    note: Annotated[str, Field(max_length=2000)] = ""


class HoldIn(_Body):
    scope: Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")] = "*"
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    subjects: list[Subject] | None = Field(default=None, max_length=1000)


class ReleaseIn(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


def _refused(exc: PurposeDenied) -> Response:
    if exc.rule in _NOT_FOUND:
        return problem(404, "Not found", str(exc))
    where = _FIELDS.get(exc.rule)
    detail = f"{where}: {exc}" if where and not str(exc).startswith(f"{where}:") else str(exc)
    return problem(422, "Not allowed by the policy", f"{exc.rule}: {detail}")


def _actor(who: Principal) -> str:
    return f"{who.kind}:{who.id}"


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']}"


def transfers_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["transfers"])
    log = DisclosureLog(
        services.engine, services.policy, services.vault.hash, services.audit, services.vault
    )
    legal = LegalRequests(
        services.engine, services.policy, services.vault.hash, services.audit, services.vault, log
    )

    async def run(call: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(call)

    # --- register -----------------------------------------------------------------------

    @router.get("/api/transfers", summary="Recipients, their transfers and whether they hold")
    async def transfers(
        _who: Annotated[Principal, Depends(require("transfers.view"))],
        on: Annotated[dt.date | None, Query(description="date to check (default today)")] = None,
    ) -> Response:
        day = on or dt.date.today()
        rows = transfer_register(services.policy, day)
        return JSONResponse(
            {
                "date": day.isoformat(),
                "ok": all(r.ok for r in rows),
                "recipients": [r.as_dict() for r in rows],
            }
        )

    # --- disclosures --------------------------------------------------------------------

    @router.post("/api/disclosures", status_code=201, summary="Record a disclosure")
    async def record(
        body: DisclosureIn, who: Annotated[Principal, Depends(require("disclosures.record"))]
    ) -> Response:
        try:
            found = await run(
                lambda: log.record(
                    recipient=body.recipient,
                    purpose=body.purpose,
                    categories=body.categories,
                    actor=_actor(who),
                    subject=body.subject,
                    country=body.country.upper() if body.country else None,
                )
            )
        except PurposeDenied as exc:
            return _refused(exc)
        return JSONResponse(found.as_dict(), status_code=201)

    @router.get("/api/disclosures", summary="The latest disclosures")
    async def disclosures(
        _who: Annotated[Principal, Depends(require("transfers.view"))],
        recipient: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,62}$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        found = await run(lambda: log.recent(recipient=recipient, limit=limit))
        return JSONResponse({"disclosures": [d.as_dict() for d in found]})

    @router.get("/api/disclosures/report", summary="Disclosures per recipient or country")
    async def report(
        _who: Annotated[Principal, Depends(require("transfers.view"))],
        by: Literal["recipient", "country"] = "recipient",
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> Response:
        rows = await run(lambda: log.report(by, since=since, until=until))
        return JSONResponse({"by": by, "rows": [r.as_dict() for r in rows]})

    @router.post("/api/vault/disclose", summary="Read values for a recipient and log it")
    async def disclose(
        body: VaultDisclosureIn, who: Annotated[Principal, Depends(require("vault.use"))]
    ) -> Response:
        try:
            values = await run(
                lambda: log.disclose_from_vault(
                    subject=body.subject,
                    recipient=body.recipient,
                    purpose=body.purpose,
                    categories=body.categories,
                    actor=_actor(who),
                    country=body.country.upper() if body.country else None,
                    activity=body.activity,
                )
            )
        except PurposeDenied as exc:
            return _refused(exc)
        return JSONResponse({"values": values}, headers={"Cache-Control": "no-store"})

    # --- legal requests -----------------------------------------------------------------

    def add(body: LegalIn, actor: str) -> Any:
        """Log a legal request from the API's or the admin form's validated body."""
        return legal.add(
            authority=body.authority,
            country=body.country,
            reference=body.reference,
            received=body.received,
            decision=body.decision,
            legal_basis=body.legal_basis,
            categories=body.categories,
            subjects=body.subjects,
            actor=actor,
            recipient=body.recipient,
            purpose=body.purpose,
            note=body.note,
        )

    async def add_request(body: LegalIn, who: Principal) -> Any:
        return await run(lambda: add(body, _actor(who)))

    @router.get("/api/legal", summary="Requests from authorities and their holds")
    async def legal_list(_who: Annotated[Principal, Depends(require("legal.manage"))]) -> Response:
        found = await run(legal.recent)
        return JSONResponse({"requests": [r.as_dict() for r in found]})

    @router.post("/api/legal", status_code=201, summary="Log a request from an authority")
    async def legal_add(
        body: LegalIn, who: Annotated[Principal, Depends(require("legal.manage"))]
    ) -> Response:
        try:
            found = await add_request(body, who)
        except PurposeDenied as exc:
            return _refused(exc)
        except VocabularyError as exc:
            return problem(422, "Invalid request", f"country: {exc}")
        except RequestError as exc:
            return problem(exc.status, exc.title, str(exc))
        return JSONResponse(found.as_dict(), status_code=201)

    @router.post("/api/legal/{request_id}/holds", status_code=201, summary="Create legal holds")
    async def legal_hold(
        request_id: RowId,
        body: HoldIn,
        who: Annotated[Principal, Depends(require("legal.manage"))],
    ) -> Response:
        try:
            holds = await run(
                lambda: legal.hold(
                    request_id,
                    scope=body.scope,
                    reason=body.reason,
                    actor=_actor(who),
                    subjects=body.subjects,
                )
            )
        except PurposeDenied as exc:
            return _refused(exc)
        except RequestError as exc:
            return problem(exc.status, exc.title, str(exc))
        return JSONResponse({"holds": [h.as_dict() for h in holds]}, status_code=201)

    @router.post("/api/legal/holds/{hold_id}/release", summary="Release a legal hold")
    async def legal_release(
        hold_id: RowId,
        body: ReleaseIn,
        who: Annotated[Principal, Depends(require("legal.manage"))],
    ) -> Response:
        try:
            hold = await run(lambda: legal.release(hold_id, reason=body.reason, actor=_actor(who)))
        except PurposeDenied as exc:
            if exc.rule == "already_released":
                return problem(409, "Already released", str(exc))
            return _refused(exc)
        except RequestError as exc:
            return problem(exc.status, exc.title, str(exc))
        return JSONResponse(hold.as_dict())

    # --- admin pages --------------------------------------------------------------------

    @router.get("/admin/transfers")
    async def transfers_page(
        request: Request, principal: Annotated[Principal, Depends(require("transfers.view"))]
    ) -> Response:
        today = dt.date.today()
        rows = transfer_register(services.policy, today)
        return render_admin(
            request,
            "transfers.html.j2",
            "Recipients and transfers",
            principal,
            today=today,
            rows=rows,
            countries=by_country(rows),
        )

    @router.get("/admin/disclosures")
    async def disclosures_page(
        request: Request, principal: Annotated[Principal, Depends(require("transfers.view"))]
    ) -> Response:
        recent = await run(lambda: log.recent(limit=100))
        per_recipient = await run(lambda: log.report("recipient"))
        per_country = await run(lambda: log.report("country"))
        return render_admin(
            request,
            "disclosures.html.j2",
            "Disclosures",
            principal,
            recent=recent,
            per_recipient=per_recipient,
            per_country=per_country,
        )

    async def legal_page(
        request: Request, principal: Principal, error: str | None = None, status: int = 200
    ) -> Response:
        found = await run(legal.recent)
        return render_admin(
            request,
            "legal.html.j2",
            "Legal requests",
            principal,
            status=status,
            requests=found,
            error=error,
            categories=[c.id for c in services.policy.categories],
            recipients=[r.id for r in services.policy.recipients if r.type == "authority"],
            purposes=[p.id for p in services.policy.purposes],
            today=dt.date.today(),
        )

    @router.get("/admin/legal")
    async def legal_get(
        request: Request, principal: Annotated[Principal, Depends(require("legal.manage"))]
    ) -> Response:
        return await legal_page(request, principal)

    def _form_list(value: object) -> list[str]:
        return [x for x in str(value or "").replace(",", " ").split() if x]

    async def _form(request: Request) -> dict[str, Any]:
        form = await request.form()
        return {k: v for k, v in form.items() if k != "csrf" and isinstance(v, str)}

    async def _after(
        request: Request, principal: Principal, action: Callable[[], object]
    ) -> Response:
        try:
            await run(action)
        except ValidationError as exc:
            return await legal_page(request, principal, _first_error(exc), 422)
        except RequestError as exc:
            return await legal_page(request, principal, str(exc), exc.status)
        except (PurposeDenied, VocabularyError) as exc:
            rule = getattr(exc, "rule", "country")
            code = 404 if rule in _NOT_FOUND else 422
            return await legal_page(request, principal, f"{_FIELDS.get(rule, rule)}: {exc}", code)
        return RedirectResponse("/admin/legal", status_code=303)

    @router.post("/admin/legal")
    async def legal_form_add(
        request: Request, principal: Annotated[Principal, Depends(require("legal.manage"))]
    ) -> Response:
        data = await _form(request)

        def action() -> object:
            body = LegalIn.model_validate(
                {
                    **{k: v for k, v in data.items() if v and k not in ("subjects", "categories")},
                    "categories": _form_list(data.get("categories")),
                    "subjects": _form_list(data.get("subjects")),
                }
            )
            return add(body, _actor(principal))

        return await _after(request, principal, action)

    @router.post("/admin/legal/{request_id}/hold")
    async def legal_form_hold(
        request: Request,
        request_id: RowId,
        principal: Annotated[Principal, Depends(require("legal.manage"))],
    ) -> Response:
        data = await _form(request)

        def action() -> object:
            body = HoldIn.model_validate(
                {"scope": data.get("scope") or "*", "reason": data.get("reason", "")}
            )
            return legal.hold(
                request_id, scope=body.scope, reason=body.reason, actor=_actor(principal)
            )

        return await _after(request, principal, action)

    @router.post("/admin/legal/holds/{hold_id}/release")
    async def legal_form_release(
        request: Request,
        hold_id: RowId,
        principal: Annotated[Principal, Depends(require("legal.manage"))],
    ) -> Response:
        data = await _form(request)

        def action() -> object:
            body = ReleaseIn.model_validate({"reason": data.get("reason", "")})
            return legal.release(hold_id, reason=body.reason, actor=_actor(principal))

        return await _after(request, principal, action)

    return router
