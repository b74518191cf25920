"""The consent API: record a choice, read effective consent, history and receipts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from troth.consent.ledger import ConsentChange, ConsentLedger, Method
from troth.consent.receipts import public_key_pem
from troth.errors import ConsentError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.store.batch import BatchWriter
from troth.web.problems import RateLimiter, client_key, problem

__all__ = ["ConsentIn", "consent_router"]

Subject = Annotated[
    str, Path(pattern=SUBJECT_PATTERN.pattern, description="Visitor or account reference")
]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(
        pattern=SUBJECT_PATTERN.pattern, description="Visitor or account reference"
    )
    choices: dict[Annotated[str, Field(max_length=64)], Literal["given", "refused"]] = Field(
        max_length=32
    )
    method: Method = "api"
    language: str | None = Field(default=None, max_length=16)
    policy_version: str | None = Field(default=None, max_length=32)
    jurisdiction: str | None = Field(default=None, max_length=64)
    gpc: bool = False


def _gpc(request: Request, body_says: bool = False) -> bool:
    return request.headers.get("sec-gpc") == "1" or body_says


def consent_router(ledger: ConsentLedger, writer: BatchWriter, limiter: RateLimiter) -> APIRouter:
    router = APIRouter(tags=["consent"])
    policy = ledger.policy
    no_store = {"Cache-Control": "no-store"}

    @router.post("/api/consent", status_code=201, summary="Record a consent choice")
    async def record(request: Request, body: ConsentIn) -> Response:
        wait = limiter.take(client_key(request))
        if wait:
            return problem(
                429, "Too many requests", "slow down and try again", **limiter.retry_after(wait)
            )
        change = ConsentChange(
            subject=body.subject,
            choices=dict(body.choices),
            method=body.method,
            language=body.language or policy.default_language,
            policy_version=body.policy_version or policy.version,
            jurisdiction=body.jurisdiction,
            gpc=_gpc(request, body.gpc),
        )
        try:
            work = ledger.prepare(change)
        except ConsentError as exc:
            return problem(422, "Invalid consent", str(exc))
        receipt = await writer.submit(work)
        tracker = getattr(request.app.state, "tracker", None)
        if tracker is not None:
            tracker.forget(body.subject)  # events sent right after the choice see it
        return JSONResponse({"receipt": receipt}, status_code=201, headers=no_store)

    @router.get(
        "/.well-known/troth-receipt-key.pem",
        summary="Public key that verifies consent receipts",
        response_class=Response,
    )
    def receipt_key() -> Response:
        return Response(
            public_key_pem(ledger.signer.public),
            media_type="application/x-pem-file",
            headers={"X-Key-Id": ledger.signer.key_id},
        )

    @router.get("/api/consent/{subject}", summary="Effective consent, per category")
    def effective(
        request: Request,
        subject: Subject,
        jurisdiction: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        try:
            state = ledger.effective(subject, jurisdiction, gpc=_gpc(request))
        except ConsentError as exc:
            return problem(422, "Invalid request", str(exc))
        return JSONResponse({"policy_version": policy.version, **state.as_dict()}, headers=no_store)

    @router.get("/api/consent/{subject}/history", summary="Every recorded change, oldest first")
    def history(subject: Subject) -> Response:
        return JSONResponse({"events": ledger.history_of(subject)}, headers=no_store)

    @router.get(
        "/api/consent/{subject}/receipts/{receipt_id}",
        summary="A signed consent receipt, to download",
    )
    def receipt(
        subject: Subject,
        receipt_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    ) -> Response:
        found = ledger.receipt(subject, receipt_id)
        if found is None:
            return problem(404, "No such receipt", "receipt_id: no receipt with this id")
        return JSONResponse(
            found,
            headers={
                **no_store,
                "Content-Disposition": f'attachment; filename="consent-receipt-{receipt_id}.json"',
            },
        )

    @router.get("/.well-known/gpc.json", summary="Global Privacy Control support")
    def gpc_json() -> dict[str, Any]:
        return {
            "gpc": any(j.gpc == "opt_out" for j in policy.jurisdictions),
            "lastUpdate": policy.effective.isoformat(),
        }

    return router
