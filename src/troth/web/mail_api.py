"""The mail API for backends that send e-mail: ``POST /api/mail/tag`` answers the e-mail as
it may go to one recipient, with open and click tracking only where their consent allows it
(:mod:`troth.tracking.mail`). It needs the ``vault.use`` permission (role ``service``).

Size: the route takes HTML of up to 512 KiB, but every request body first passes the app's
body limit, ``TROTH_MAX_BODY_BYTES`` (16 KiB by default), which answers 413 above it. The
default therefore suits short mails only; a service that tags newsletters sets
``TROTH_MAX_BODY_BYTES=600000`` (512 KiB of HTML plus the JSON around it and its escapes).

Base URL: the tracking links point at ``base_url`` if the body gives one, else at the
address the request reached troth on. A backend that calls troth on an internal address
must send ``base_url`` (the public address of troth's ``/t/`` endpoints), or the links
would point where recipients cannot go.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from troth.errors import ConsentError, TrackingError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.tracking.mail import CAMPAIGN_PATTERN, MAX_HTML_BYTES, TaggedEmail, tag_email
from troth.tracking.tracker import Request as Hit
from troth.tracking.tracker import Tracker
from troth.web.auth_deps import Principal, require
from troth.web.problems import problem
from troth.web.services import Services

__all__ = ["MailIn", "allowed_categories", "mail_router"]


class MailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    html: str = Field(max_length=MAX_HTML_BYTES, description="The e-mail's HTML, up to 512 KiB")
    recipient: str = Field(
        pattern=SUBJECT_PATTERN.pattern, description="The recipient's subject reference"
    )
    campaign: str = Field(pattern=CAMPAIGN_PATTERN, description="a-z, 0-9, '_' or '-'")
    jurisdiction: str | None = Field(default=None, max_length=64)
    base_url: str | None = Field(
        default=None,
        max_length=512,
        description="Public address of troth's /t/ endpoints; default: this request's",
    )

    @field_validator("html")
    @classmethod
    def _utf8(cls, value: str) -> str:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode text (a lone surrogate?)") from None
        if size > MAX_HTML_BYTES:
            raise ValueError(f"at most {MAX_HTML_BYTES} bytes (512 KiB)")
        return value


def allowed_categories(
    services: Services, recipient: str, jurisdiction: str | None, tracker: Tracker | None = None
) -> frozenset[str]:
    """The consent categories ``recipient`` allows now. ConsentError for a malformed
    recipient or an undeclared jurisdiction (rather than quietly using the default one)."""
    services.ledger.jurisdiction(jurisdiction)
    subject_hash = services.ledger.hash(recipient)
    if tracker is not None:
        return tracker.allowed(Hit(ip="", subject_hash=subject_hash, jurisdiction=jurisdiction))
    state = services.ledger.effective_hashed(subject_hash, jurisdiction)
    return frozenset(c for c, s in state.categories.items() if s.allowed)


def mail_router() -> APIRouter:
    router = APIRouter(tags=["mail"])

    @router.post("/api/mail/tag", summary="Tag an outgoing e-mail for one recipient's consent")
    async def tag(
        request: Request,
        body: MailIn,
        _who: Annotated[Principal, Depends(require("vault.use"))],
    ) -> Response:
        services: Services = request.app.state.services
        tracker: Tracker = request.app.state.tracker
        base_url = body.base_url or str(request.base_url).rstrip("/")

        def work() -> TaggedEmail:
            allowed = allowed_categories(services, body.recipient, body.jurisdiction, tracker)
            return tag_email(
                body.html,
                recipient=body.recipient,
                campaign=body.campaign,
                base_url=base_url,
                allowed=allowed,
                links=services.links,
                policy=services.policy,
                hash_subject=services.ledger.hash,
                jurisdiction=body.jurisdiction,
            )

        try:
            tagged = await anyio.to_thread.run_sync(work)
        except (TrackingError, ConsentError) as exc:
            return problem(422, "Cannot tag this e-mail", str(exc))
        return JSONResponse(
            {
                "html": tagged.html,
                "tracked": tagged.tracked,
                "links_rewritten": tagged.links_rewritten,
                "pixel": tagged.pixel,
            },
            headers={"Cache-Control": "no-store"},
        )

    return router
