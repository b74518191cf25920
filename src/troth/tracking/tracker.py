"""The tracking decisions the endpoints make, in one place: which technology, whose consent,
what may be kept."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from troth.consent.ledger import ConsentLedger, Effective
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


Key = tuple[str | None, str | None, str | None, bool]


class _Reads:
    """Cache misses of concurrent requests, read as one job on a worker thread (one
    ``SELECT ... IN (...)``). Requests join on the event loop until the thread starts the job,
    which closes the group; both under the tracker's lock, so what is read is what joined."""

    def __init__(self) -> None:
        self.wanted: dict[Key, Request] = {}
        self.closed = False
        self.done: asyncio.Future[dict[Key, frozenset[str]]] | None = None


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
        self._reads: _Reads | None = None  # the open group of cache misses
        self._reading = threading.Lock()  # held by the one shared read in progress
        self._forgets = 0  # counts forget(); a read that overlapped one is not cached
        self.read_max = 500  # cache misses per shared read
        self.required = frozenset(compiled.required_consents)

    def technology(self, tech_id: str) -> Any:
        tech = self.compiled.tracking_by_id.get(tech_id)
        if tech is None:
            raise TrackingError(f"id: '{tech_id[:64]}' is not a tracking technology of this policy")
        return tech

    def forget(self, visitor: str) -> None:
        """Drop cached consent for ``visitor`` (called when this worker records a change)."""
        with self._lock:
            self._forgets += 1
            for key in [k for k in self._cache if k[0] == visitor]:
                del self._cache[key]
            if self._reads is not None and any(k[0] == visitor for k in self._reads.wanted):
                self._reads = None  # later requests read again, after the change

    def cached(self, req: Request) -> frozenset[str] | None:
        """What :meth:`allowed` would answer from its cache, without reading the ledger;
        None when the cache does not hold this person's consent (or it is stale)."""
        with self._lock:
            found = self._cache.get(_key(req))
        if found is not None and time.monotonic() - found[0] < self._ttl:
            return found[1]
        return None

    def allowed(self, req: Request) -> frozenset[str]:
        """The consent categories this person allows now (cached for a few seconds)."""
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
        allowed = _allowed(state)
        with self._lock:
            self._remember(_key(req), now, allowed)
        return allowed

    async def allowed_shared(self, req: Request) -> frozenset[str]:
        """:meth:`allowed` for the event loop: a cache miss joins the misses of concurrent
        requests, read together on one worker thread in one query."""
        found = self.cached(req)
        if found is not None:
            return found
        if req.visitor is None and req.subject_hash is None:
            return self.allowed(req)  # nobody to look up: no read
        key = _key(req)
        with self._lock:
            group = self._reads
            if group is None or group.closed or len(group.wanted) >= self.read_max:
                group = self._reads = _Reads()
                group.done = asyncio.get_running_loop().run_in_executor(None, self._read, group)
                group.done.add_done_callback(_retrieve)
            group.wanted.setdefault(key, req)
            done = group.done
        assert done is not None
        # one waiter cancelled (its client went away) must not cancel the others' read
        return (await asyncio.shield(done))[key]

    def _read(self, group: _Reads) -> dict[Key, frozenset[str]]:
        # one read at a time: misses arriving meanwhile gather in the next group
        with self._reading:
            return self._read_now(group)

    def _read_now(self, group: _Reads) -> dict[Key, frozenset[str]]:
        with self._lock:
            group.closed = True
            if self._reads is group:
                self._reads = None
            wanted = dict(group.wanted)
            forgets = self._forgets
        now = time.monotonic()
        by_terms: dict[tuple[str | None, bool], dict[Key, str]] = {}
        for key, req in wanted.items():
            subject = req.subject_hash
            if subject is None:
                assert req.visitor is not None
                subject = self.ledger.hash(req.visitor)
            by_terms.setdefault((req.jurisdiction, req.gpc), {})[key] = subject
        out: dict[Key, frozenset[str]] = {}
        for (jurisdiction, gpc), subjects in by_terms.items():
            try:
                states = self.ledger.effective_many(subjects.values(), jurisdiction, gpc)
            except ConsentError:
                undecided = _allowed(
                    self.ledger.effective_from_rows([], self.ledger.jurisdiction(None), gpc)
                )
                out.update((key, undecided) for key in subjects)
                continue
            out.update((key, _allowed(states[subject])) for key, subject in subjects.items())
        with self._lock:
            if self._forgets == forgets:  # else a change may have been read too early
                for key, allowed in out.items():
                    self._remember(key, now, allowed)
        return out

    def _remember(self, key: Key, now: float, allowed: frozenset[str]) -> None:
        # call with the lock held
        self._cache[key] = (now, allowed)
        if len(self._cache) > 50_000:
            self._cache.popitem(last=False)

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

    def hit_allowed(
        self,
        tech_id: str,
        req: Request,
        allowed: frozenset[str],
        *,
        kind: str,
        name: str = "",
        campaign: str = "",
        page: str = "",
        props: dict[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> tuple[HitDecision, Hit | None] | None:
        """:meth:`hit` without touching the database, for the event loop, with the person's
        consent already known (from :meth:`allowed_shared`): None when the day's salt may have
        to be read first; then call :meth:`hit` on a worker thread."""
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


def _key(req: Request) -> Key:
    return (req.visitor, req.subject_hash, req.jurisdiction, req.gpc)


def _allowed(state: Effective) -> frozenset[str]:
    return frozenset(c for c, s in state.categories.items() if s.allowed)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # every waiter sees the outcome; this only keeps asyncio from reporting it as unread
    if not future.cancelled():
        future.exception()
