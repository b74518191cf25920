"""First-party tracking endpoints: a pixel, an event beacon and signed tracking links.

All three are public. Each hit is decided by :class:`~troth.tracking.tracker.Tracker` from
the consent the ledger holds and the browser's signals (``Sec-GPC``, ``DNT``); what is kept
is only what that decision allows. The pixel always answers the same GIF, so its answer
never tells anyone what a person consented to. A tracking link redirects only to the
destination its signature covers; there is no parameter that could point it elsewhere.
A click, and an open with a recipient token, is judged under the jurisdiction signed into
the token (the recipient's, as the e-mail was tagged), else under the policy's default.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Query
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from troth.consent.banner_config import CONSENT_COOKIE
from troth.errors import TrackingError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.tracking.decide import HitDecision
from troth.tracking.links import LinkClaims
from troth.tracking.mail import OPEN_URL
from troth.tracking.recorder import Hit
from troth.tracking.tracker import Request, Tracker
from troth.web.problems import RateLimiter, client_key, problem

__all__ = ["PIXEL", "EventBatch", "tracking_router"]

# A transparent 1×1 GIF89a (42 bytes).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
PIXEL_TYPES = frozenset({"pixel", "web_beacon"})
EVENT_TYPES = frozenset({"pixel", "web_beacon", "sdk"})

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_PROP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_COOKIE_VISITOR = re.compile(r"^[A-Za-z0-9_\-]{16,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_NO_STORE = {"Cache-Control": "no-store"}

Campaign = Annotated[str, Field(max_length=64, pattern=_PRINTABLE)]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tech: str = Field(max_length=64, description="A declared tracking technology id")
    name: str = Field(pattern=_NAME, description="What happened, e.g. signup_click")
    campaign: Campaign = ""
    page: str = Field(default="", max_length=512, pattern=r"^(/[^\x00-\x20\x7f]*)?$")
    props: dict[str, Any] = Field(default_factory=dict)

    @field_validator("props")
    @classmethod
    def _flat(cls, props: dict[str, Any]) -> dict[str, Any]:
        if len(props) > 16:
            raise ValueError("at most 16 properties")
        for key, value in props.items():
            if not _PROP_KEY.match(key):
                raise ValueError("keys are 1-64 letters, digits or '_', starting with a letter")
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                if abs(value) >= 2**53:
                    raise ValueError(f"'{key}': integers must be below 2^53")
                continue
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise ValueError(f"'{key}': numbers must be finite")
                continue
            if isinstance(value, str):
                if len(value) > 200:
                    raise ValueError(f"'{key}': strings are at most 200 characters")
                if _CONTROL.search(value) or not _encodable(value):
                    raise ValueError(f"'{key}': control characters are not allowed")
                continue
            raise ValueError(f"'{key}': values are strings, numbers or booleans (flat)")
        return props


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[EventIn] = Field(min_length=1, max_length=50)
    visitor: str | None = Field(default=None, pattern=SUBJECT_PATTERN.pattern)
    jurisdiction: str | None = Field(default=None, max_length=64)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cookie_visitor(request: HttpRequest) -> str | None:
    """The visitor id from the banner's cookie ``v1.<visitor>.<version>.<choices>``; the
    choices in it are not trusted — consent is read from the ledger."""
    raw = request.cookies.get(CONSENT_COOKIE)
    if not raw:
        return None
    parts = raw.split(".")
    if len(parts) < 4 or parts[0] != "v1" or not _COOKIE_VISITOR.match(parts[1]):
        return None
    return parts[1]


def _referer_path(request: HttpRequest) -> str:
    """The path of the page that showed the pixel: never its query or fragment."""
    referer = request.headers.get("referer", "")
    try:
        path = urlsplit(referer).path
    except ValueError:
        return ""
    if not path.startswith("/"):
        return ""
    return _CONTROL.sub("", path)[:512]


def _person(
    request: HttpRequest,
    tracker: Tracker,
    *,
    visitor: str | None,
    jurisdiction: str | None,
    subject_hash: str | None = None,
) -> Request:
    return Request(
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", "")[:256],
        visitor=visitor,
        subject_hash=subject_hash,
        jurisdiction=jurisdiction if jurisdiction in tracker.ledger.jurisdictions else None,
        gpc=request.headers.get("sec-gpc", "").strip() == "1",
        dnt=request.headers.get("dnt", "").strip() == "1",
    )


def _verify(tracker: Tracker, token: str) -> LinkClaims:
    """Verify a link token; anything that is not a valid token is a TrackingError."""
    if not token or not token.isascii():
        raise TrackingError("token: not a tracking link")
    try:
        return tracker.links.verify(token)
    except TrackingError:
        raise
    except (ValueError, TypeError, UnicodeError):
        raise TrackingError("token: not a tracking link") from None


def _oops(where: str, exc: BaseException) -> None:
    print(f"troth: {where} failed ({type(exc).__name__})", file=sys.stderr)


async def _decide(
    tracker: Tracker, tech_id: str, person: Request, *, kind: str, campaign: str, page: str = ""
) -> tuple[HitDecision, Hit | None]:
    """Decide one hit on the event loop; the person's consent comes from the cache or from a
    read shared with concurrent requests. Only a visitor without a consented id, whose day's
    salt may have to be read, is decided on a worker thread."""
    allowed = await tracker.allowed_shared(person)  # no suspension when cached
    made = tracker.hit_allowed(tech_id, person, allowed, kind=kind, campaign=campaign, page=page)
    if made is not None:
        return made
    return await run_in_threadpool(
        tracker.hit, tech_id, person, kind=kind, campaign=campaign, page=page
    )


async def _record(tracker: Tracker, hits: Sequence[tuple[Hit, bool]]) -> None:
    """Durable hits are awaited until committed, then the best-effort ones are buffered (so
    a failed durable write can be retried by the client without double-counting)."""
    durable = [hit for hit, is_durable in hits if is_durable]
    if durable:
        await tracker.recorder.durable(durable)
    best = [hit for hit, is_durable in hits if not is_durable]
    if best:
        tracker.recorder.best_effort(best)


def tracking_router(rate_per_minute: int = 600) -> APIRouter:
    """The tracking endpoints. ``rate_per_minute``: hits each client network (IPv4 /24,
    IPv6 /48) may send to the pixel, and separately to ``/t/e``, with bursts up to half of
    it. Over the limit ``/t/e`` answers 429 with Retry-After and records nothing; the pixel
    still answers its GIF (a page never breaks) and records nothing. Links are not limited:
    a click always leads on."""
    router = APIRouter(tags=["tracking"])
    pixel_limit = RateLimiter(rate_per_minute)
    event_limit = RateLimiter(rate_per_minute)

    def tracker_of(request: HttpRequest) -> Tracker:
        tracker: Tracker = request.app.state.tracker
        return tracker

    def gif() -> Response:
        return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)

    @router.get(
        "/t/p/{tech_id}.gif",
        response_class=Response,
        summary="Tracking pixel: always the same 1×1 GIF, whatever was recorded",
    )
    async def pixel(
        request: HttpRequest,
        tech_id: str,
        c: Annotated[str, Query(max_length=64, pattern=_PRINTABLE)] = "",
        k: Annotated[Literal["view", "open"], Query()] = "view",
        m: Annotated[str | None, Query(max_length=2048)] = None,
        j: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        tracker = tracker_of(request)
        tech = tracker.compiled.tracking_by_id.get(tech_id)
        if tech is None or tech.type not in PIXEL_TYPES:
            return problem(
                404, "No such tracking pixel", "id: not a pixel or web beacon of this policy"
            )
        if pixel_limit.take(client_key(request)):
            return gif()  # over the limit: the same answer, nothing recorded
        campaign, subject_hash, jurisdiction = c, None, j
        if m is not None:
            try:
                claims = _verify(tracker, m)
            except TrackingError:
                return gif()  # a forged or expired recipient token: record nothing
            if claims.tech != tech.id or claims.url != OPEN_URL:
                return gif()
            campaign = _CONTROL.sub("", claims.campaign)[:64]
            subject_hash = claims.recipient or None
            if claims.jurisdiction is not None:  # signed: wins over an unsigned ``j``
                jurisdiction = claims.jurisdiction
        person = _person(
            request,
            tracker,
            visitor=_cookie_visitor(request),
            jurisdiction=jurisdiction,
            subject_hash=subject_hash,
        )
        try:
            _decision, hit = await _decide(
                tracker, tech.id, person, kind=k, campaign=campaign, page=_referer_path(request)
            )
            if hit is not None:
                await _record(tracker, [(hit, tech.delivery == "durable")])
        except Exception as exc:  # the page must not break, nor learn anything
            _oops("recording a pixel hit", exc)
        return gif()

    @router.post(
        "/t/e",
        status_code=202,
        response_class=JSONResponse,
        summary="Record events (web beacons, app SDKs), each decided on its own",
    )
    async def events(request: HttpRequest, batch: EventBatch) -> Response:
        wait = event_limit.take(client_key(request))
        if wait:
            return problem(
                429,
                "Too many requests",
                "slow down and try again; nothing was recorded",
                **_NO_STORE,
                **event_limit.retry_after(wait),
            )
        tracker = tracker_of(request)
        if (
            batch.jurisdiction is not None
            and batch.jurisdiction not in tracker.ledger.jurisdictions
        ):
            return problem(
                422,
                "Invalid request",
                "jurisdiction: not declared; use one of " + ", ".join(tracker.ledger.jurisdictions),
            )
        durable: dict[str, bool] = {}
        for i, event in enumerate(batch.events):
            try:
                tech = tracker.technology(event.tech)
            except TrackingError:
                return problem(
                    422,
                    "Invalid request",
                    f"events.{i}.tech: not a tracking technology of this policy",
                )
            if tech.type not in EVENT_TYPES:
                return problem(
                    422,
                    "Invalid request",
                    f"events.{i}.tech: a {tech.type} cannot record events; use a web_beacon, "
                    "pixel or sdk technology",
                )
            durable[tech.id] = tech.delivery == "durable"
        person = _person(
            request,
            tracker,
            visitor=batch.visitor or _cookie_visitor(request),
            jurisdiction=batch.jurisdiction,
        )

        def fields(e: EventIn) -> dict[str, Any]:
            page = e.page.split("#", 1)[0]
            return {"kind": "event", "name": e.name, "campaign": e.campaign, "page": page}

        def decide() -> list[tuple[HitDecision, Hit | None]]:
            return [
                tracker.hit(e.tech, person, props=dict(e.props), **fields(e)) for e in batch.events
            ]

        try:
            # on the event loop (consent cached or read with concurrent requests' misses);
            # on a worker thread only when the day's salt may have to be read
            allowed = await tracker.allowed_shared(person)
            quick = [
                tracker.hit_allowed(e.tech, person, allowed, props=dict(e.props), **fields(e))
                for e in batch.events
            ]
            decided = [d for d in quick if d is not None]
            if len(decided) < len(quick):
                decided = await run_in_threadpool(decide)
            await _record(
                tracker, [(hit, durable[hit.tech_id]) for _d, hit in decided if hit is not None]
            )
        except Exception as exc:
            _oops("recording events", exc)
            return problem(
                503, "Not recorded", "the events could not be recorded; try again", **_NO_STORE
            )
        outcomes = [d.outcome for d, _hit in decided]
        return JSONResponse(
            {
                "accepted": outcomes.count("full"),
                "counted": outcomes.count("aggregate"),
                "dropped": outcomes.count("drop"),
            },
            status_code=202,
            headers=_NO_STORE,
        )

    @router.get(
        "/t/l/{token:path}",
        response_class=Response,
        summary="Tracking link: redirects to the destination its signature covers",
    )
    async def link(request: HttpRequest, token: str) -> Response:
        tracker = tracker_of(request)
        try:
            claims = _verify(tracker, token)
            parts = urlsplit(claims.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise TrackingError("token: not a tracking link")
            location = quote(claims.url, safe=_URL_SAFE)
        except (TrackingError, ValueError, UnicodeError) as exc:
            detail = str(exc) if isinstance(exc, TrackingError) else "token: not a tracking link"
            return problem(400, "Invalid tracking link", detail, **_NO_STORE)
        tech = tracker.compiled.tracking_by_id.get(claims.tech)
        if tech is not None:  # a link whose technology left the policy still leads on
            person = _person(
                request,
                tracker,
                visitor=_cookie_visitor(request),
                jurisdiction=claims.jurisdiction,  # None for links made before the claim
                subject_hash=claims.recipient or None,
            )
            try:
                _decision, hit = await _decide(
                    tracker,
                    tech.id,
                    person,
                    kind="click",
                    campaign=_CONTROL.sub("", claims.campaign)[:64],
                )
                if hit is not None:
                    await _record(tracker, [(hit, tech.delivery == "durable")])
            except Exception as exc:  # the person still gets where the link leads
                _oops("recording a link click", exc)
        return Response(
            status_code=302,
            headers={**_NO_STORE, "Location": location, "Referrer-Policy": "no-referrer"},
        )

    return router
