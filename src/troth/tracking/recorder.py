"""Writing hits: full events and aggregate counts, batched.

Durable events (beacons, SDK batches) go through the shared group-commit writer and are
acknowledged only once committed. Best-effort hits (pixels, link clicks) go into a bounded
buffer that a background task flushes by size and time; if the buffer is full the oldest
hits are dropped and counted, never the request blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.dialects import postgresql, sqlite

from troth.store.batch import BatchWriter, Work
from troth.store.tables import tracking_aggregates, tracking_events

__all__ = ["Hit", "Recorder"]


@dataclass(frozen=True)
class Hit:
    tech_id: str
    kind: str  # view | open | click | event
    full: bool  # False: counted in aggregate only
    at: dt.datetime
    name: str = ""
    campaign: str = ""
    visitor: str = ""
    page: str = ""
    ip_prefix: str = ""
    props: dict[str, Any] = field(default_factory=dict)


class _Group:
    """Durable hits of concurrent requests, written as one job of the group-commit writer
    (submitted when the group opens; ``outcome`` is that job's). Requests join it on the
    event loop until the writer's thread starts the job, which closes the group; both under
    ``lock``, so what is written is exactly what joined."""

    def __init__(
        self,
        hits: list[Hit],
        lock: threading.Lock,
        write: Callable[[Connection, Sequence[Hit]], int],
        submit: Callable[[Work], Coroutine[Any, Any, Any]],
    ) -> None:
        self.hits = hits
        self.closed = False
        self._lock = lock
        self._write = write
        self.outcome: asyncio.Future[Any] = asyncio.ensure_future(submit(self._run))
        self.outcome.add_done_callback(_retrieve)

    def join(self, hits: Sequence[Hit], most: int) -> bool:
        """Add ``hits`` unless the group is closed or would grow beyond ``most``; call with
        the lock held."""
        if self.closed or len(self.hits) + len(hits) > most:
            return False
        self.hits.extend(hits)
        return True

    def _run(self, conn: Connection) -> int:
        with self._lock:
            self.closed = True  # a retry by the writer runs this again: the same hits
        return self._write(conn, self.hits)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # every waiter sees the outcome; this only keeps asyncio from reporting it as unread
    if not future.cancelled():
        future.exception()


class Recorder:
    def __init__(
        self,
        engine: Engine,
        writer: BatchWriter,
        *,
        buffer: int = 20_000,
        flush_size: int = 500,
        flush_every: float = 0.5,
        group_max: int = 5_000,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self._lock = threading.Lock()  # the open group of durable hits: joined / closed
        self._group: _Group | None = None
        self._group_max = group_max  # durable hits per group (one request may exceed it)
        self._buffer: deque[Hit] = deque(maxlen=buffer)
        self.dropped = 0  # best-effort hits lost to a full buffer since this process started
        self._flush_size = flush_size
        self._flush_every = flush_every
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        insert_for = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        upsert = insert_for(tracking_aggregates)
        self._count = upsert.on_conflict_do_update(
            index_elements=["day", "tech_id", "kind", "campaign", "consent"],
            set_={"count": tracking_aggregates.c.count + upsert.excluded.count},
        )
        self._insert = insert(tracking_events)

    # --- the two ways in -----------------------------------------------------------------

    async def durable(self, hits: Sequence[Hit]) -> None:
        """Returns once the hits are committed; raises if the transaction holding them failed.

        Hits of concurrent requests are coalesced: they join the one open group, which is a
        single job for the group-commit writer (one multi-row insert, one aggregated
        upsert). The group closes when the writer starts on it; later hits open the next
        group. Every request of a group waits for that group's one outcome, so none is
        acknowledged for hits that were rolled back."""
        if not hits:
            return
        with self._lock:
            group = self._group
            if group is None or not group.join(hits, self._group_max):
                group = self._group = _Group(list(hits), self._lock, self.write, self.writer.submit)
        # one waiter cancelled (its client went away) must not cancel the others' write
        await asyncio.shield(group.outcome)

    def best_effort(self, hits: Sequence[Hit]) -> None:
        """Returns at once; the hits are written within ``flush_every`` seconds."""
        for hit in hits:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            self._buffer.append(hit)
        if len(self._buffer) >= self._flush_size:
            self._wake.set()

    # --- writing -------------------------------------------------------------------------

    def write(self, conn: Connection, hits: Sequence[Hit]) -> int:
        events = [
            {
                "tech_id": h.tech_id,
                "kind": h.kind,
                "name": h.name,
                "campaign": h.campaign,
                "visitor": h.visitor,
                "page": h.page,
                "ip_prefix": h.ip_prefix,
                "props": h.props,
                "day": h.at.date(),
                "at": h.at,
            }
            for h in hits
            if h.full
        ]
        if events:
            conn.execute(self._insert, events)
        counts: dict[tuple[dt.date, str, str, str, str], int] = {}
        for h in hits:
            key = (h.at.date(), h.tech_id, h.kind, h.campaign, "given" if h.full else "none")
            counts[key] = counts.get(key, 0) + 1
        conn.execute(
            self._count,
            [
                {"day": d, "tech_id": t, "kind": k, "campaign": c, "consent": s, "count": n}
                for (d, t, k, c, s), n in sorted(counts.items())
            ],
        )
        return len(hits)

    async def flush(self) -> int:
        hits = list(self._buffer)
        self._buffer.clear()
        if hits:
            try:
                await self.writer.submit(lambda conn: self.write(conn, hits))
            except Exception:
                # put them back (oldest first) for the next flush; the deque stays bounded, so
                # what no longer fits (the newest) is lost, and counted
                self.dropped += max(0, len(self._buffer) + len(hits) - (self._buffer.maxlen or 0))
                self._buffer.extendleft(reversed(hits))
                raise
        return len(hits)

    # --- background flushing -----------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_every)
            self._wake.clear()
            with contextlib.suppress(Exception):  # a failed flush is retried by the next one
                await self.flush()
