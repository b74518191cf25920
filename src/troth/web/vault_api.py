"""The vault and audit APIs for backends and auditors. Personal data travels only in
request bodies, never in URLs; every route needs a role."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from troth.errors import AuditError, KeyringError, PurposeDenied
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.web.auth_deps import Principal, require
from troth.web.problems import problem
from troth.web.services import Services

__all__ = ["vault_router"]

Id = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PutIn(_Body):
    subject: str = Field(pattern=SUBJECT_PATTERN.pattern)
    category: Id
    value: str = Field(max_length=8192)
    purpose: Id
    activity: Id | None = None


class GetIn(_Body):
    subject: str = Field(pattern=SUBJECT_PATTERN.pattern)
    categories: list[Id] = Field(min_length=1, max_length=64)
    purpose: Id
    activity: Id | None = None


class LimitIn(_Body):
    subject: str = Field(pattern=SUBJECT_PATTERN.pattern)
    kind: Literal["restriction", "objection", "legal_hold"]
    scope: Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")] = "*"
    reason: str = Field(min_length=1, max_length=500)


def _denied(exc: PurposeDenied) -> Response:
    return problem(403, "Purpose denied", f"{exc.rule}: {exc}")


def vault_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["vault"])
    vault = services.vault
    actor = "{kind}:{id}"

    @router.post("/api/vault/put", status_code=204, summary="Store a value for a declared purpose")
    async def put(
        body: PutIn, who: Annotated[Principal, Depends(require("vault.use"))]
    ) -> Response:
        try:
            await anyio.to_thread.run_sync(
                lambda: vault.put(
                    body.subject,
                    body.category,
                    body.value,
                    purpose=body.purpose,
                    actor=actor.format(kind=who.kind, id=who.id),
                    activity=body.activity,
                )
            )
        except PurposeDenied as exc:
            return _denied(exc)
        return Response(status_code=204)

    @router.post("/api/vault/get", summary="Read values for a declared purpose")
    async def get(
        body: GetIn, who: Annotated[Principal, Depends(require("vault.use"))]
    ) -> Response:
        try:
            values = await anyio.to_thread.run_sync(
                lambda: vault.get(
                    body.subject,
                    body.categories,
                    purpose=body.purpose,
                    actor=actor.format(kind=who.kind, id=who.id),
                    activity=body.activity,
                )
            )
        except PurposeDenied as exc:
            return _denied(exc)
        except KeyringError as exc:
            return problem(409, "Value cannot be opened", str(exc))
        return JSONResponse({"values": values}, headers={"Cache-Control": "no-store"})

    @router.post(
        "/api/vault/limits",
        status_code=201,
        summary="Record a restriction, objection or legal hold",
    )
    async def add_limit(
        body: LimitIn, who: Annotated[Principal, Depends(require("consent.manage"))]
    ) -> Response:
        await anyio.to_thread.run_sync(
            lambda: vault.limit(
                body.subject, body.kind, body.scope, body.reason, actor=f"{who.kind}:{who.id}"
            )
        )
        return Response(status_code=201)

    @router.post("/api/vault/limits/release", summary="Release a restriction, objection or hold")
    async def release_limit(
        body: LimitIn, who: Annotated[Principal, Depends(require("consent.manage"))]
    ) -> Response:
        released = await anyio.to_thread.run_sync(
            lambda: vault.release(body.subject, body.kind, body.scope, actor=f"{who.kind}:{who.id}")
        )
        return JSONResponse({"released": released})

    @router.get("/api/audit/verify", summary="Verify the audit log against its signed heads")
    async def verify(_who: Annotated[Principal, Depends(require("audit.read"))]) -> Response:
        try:
            report = await anyio.to_thread.run_sync(lambda: services.audit.verify(services.engine))
        except AuditError as exc:
            return problem(409, "Audit heads unreadable", str(exc))
        return JSONResponse(report.as_dict(), status_code=200)

    @router.get("/api/audit/proof/{index}", summary="Inclusion proof for one audit entry")
    async def proof(
        index: Annotated[int, Path(ge=0)],
        _who: Annotated[Principal, Depends(require("audit.read"))],
    ) -> Response:
        try:
            found = await anyio.to_thread.run_sync(
                lambda: services.audit.prove(services.engine, index)
            )
        except AuditError as exc:
            return problem(404, "No proof", str(exc))
        return JSONResponse(found)

    return router
