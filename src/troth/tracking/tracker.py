"""The tracking decisions the endpoints make, in one place: which technology, whose consent,
what may be kept."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from troth.consent.ledger import ConsentLedger
from troth.errors import ConsentError, TrackingError
from troth.policy.compiled import CompiledPolicy
from troth.tracking.decide import HitDecision, decide_hit
from troth.tracking.identity import DailySalts, truncate_ip
from troth.tracking.links import LinkSigner
from troth.tracking.recorder import Hit, Recorder
from troth.tracking.subject_events import consented_visitor, mail_visitor

__all__ = ["Request", "Tracker"]


@dataclass(frozen=True)
class Request:
    """What a hit tells about the person, before troth decides what may be kept."""

    ip: str
    user_agent: str = ""
    visitor: str | None = None  # the banner's visitor id from the consent cookie
    subject_hash: str | None = None  # an e-mail recipient, from a signed token
    jurisdiction: str | None = None
    gpc: bool = False
    dnt: bool = False


class Tracker:
    def __init__(
        self,
        compiled: CompiledPolicy,
        ledger: ConsentLedger,
        salts: DailySalts,
        links: LinkSigner,
        recorder: Recorder,
        *,
        cache_seconds: float = 5.0,
    ) -> None:
        self.compiled = compiled
        self.ledger = ledger
        self.salts = salts
        self.links = links
        self.recorder = recorder
        self._ttl = cache_seconds
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self.required = frozenset(compiled.required_consents)

    def technology(self, tech_id: str) -> Any:
        tech = self.compiled.tracking_by_id.get(tech_id)
        if tech is None:
            raise TrackingError(f"id: '{tech_id[:64]}' is not a tracking technology of this policy")
        return tech

    def forget(self, visitor: str) -> None:
        """Drop cached consent for ``visitor`` (called when this worker records a change)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == visitor]:
                del self._cache[key]

    def cached(self, req: Request) -> frozenset[str] | None:
        """What :meth:`allowed` would answer from its cache, without reading the ledger;
        None when the cache does not hold this person's consent (or it is stale)."""
        key = (req.visitor, req.subject_hash, req.jurisdiction, req.gpc)
        with self._lock:
            found = self._cache.get(key)
        if found is not None and time.monotonic() - found[0] < self._ttl:
            return found[1]
        return None

    def allowed(self, req: Request) -> frozenset[str]:
        """The consent categories this person allows now (cached for a few seconds)."""
        key = (req.visitor, req.subject_hash, req.jurisdiction, req.gpc)
        now = time.monotonic()
        found = self.cached(req)
        if found is not None:
            return found
        try:
            if req.subject_hash is not None:
                state = self.ledger.effective_hashed(req.subject_hash, req.jurisdiction, req.gpc)
            elif req.visitor is not None:
                state = self.ledger.effective(req.visitor, req.jurisdiction, req.gpc)
            else:
                state = self.ledger.effective_from_rows(
                    [], self.ledger.jurisdiction(req.jurisdiction), req.gpc
                )
        except ConsentError:
            state = self.ledger.effective_from_rows([], self.ledger.jurisdiction(None), req.gpc)
        allowed = frozenset(c for c, s in state.categories.items() if s.allowed)
        with self._lock:
            self._cache[key] = (now, allowed)
            if len(self._cache) > 50_000:
                self._cache.popitem(last=False)
        return allowed

    def hit(
        self,
        tech_id: str,
        req: Request,
        *,
        kind: str,
        name: str = "",
        campaign: str = "",
        page: str = "",
        props: dict[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> tuple[HitDecision, Hit | None]:
        """Decide a hit and make what may be kept of it (may read the database)."""
        made = self._hit(
            tech_id, req, self.allowed(req), True, kind, name, campaign, page, props, at
        )
        assert made is not None  # with the database at hand, a hit is always decided
        return made

    def hit_cached(
        self,
        tech_id: str,
        req: Request,
        *,
        kind: str,
        name: str = "",
        campaign: str = "",
        page: str = "",
        props: dict[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> tuple[HitDecision, Hit | None] | None:
        """:meth:`hit` without touching the database, for the event loop: None when deciding
        would need it (consent not cached, or the day's salt for a visitor without a
        consented id); then call :meth:`hit` on a worker thread."""
        allowed = self.cached(req)
        if allowed is None:
            return None
        return self._hit(tech_id, req, allowed, False, kind, name, campaign, page, props, at)

    def _hit(
        self,
        tech_id: str,
        req: Request,
        allowed: frozenset[str],
        may_read: bool,
        kind: str,
        name: str,
        campaign: str,
        page: str,
        props: dict[str, Any] | None,
        at: dt.datetime | None,
    ) -> tuple[HitDecision, Hit | None] | None:
        tech = self.technology(tech_id)
        decision = decide_hit(tech, allowed, required=self.required, dnt=req.dnt)
        if decision.outcome == "drop":
            return decision, None
        at = at or dt.datetime.now(dt.UTC)
        if decision.outcome == "aggregate":
            return decision, Hit(tech.id, kind, False, at, campaign=campaign)
        prefix = truncate_ip(req.ip)
        if req.subject_hash is not None:
            visitor = mail_visitor(req.subject_hash)
        elif req.visitor is not None and "analytics" in allowed:
            visitor = consented_visitor(self.ledger.hash(req.visitor))
        elif may_read:
            visitor = self.salts.visitor(at.date(), prefix, req.user_agent)
        else:
            return None  # the day's salt may have to be read (or made) first
        return decision, Hit(
            tech.id,
            kind,
            True,
            at,
            name=name,
            campaign=campaign,
            visitor=visitor,
            page=page.split("?", 1)[0][:512],
            ip_prefix=prefix,
            props=props or {},
        )
