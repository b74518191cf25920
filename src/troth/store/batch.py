"""Group commit: many concurrent writes, one transaction, each acknowledged only once durable.

Writers ``await submit(work)``; a single task gathers whatever is waiting (up to
``max_batch``), runs every ``work(connection)`` in one transaction on a worker thread, and
resolves each caller only after the commit returned. If the batch fails, its items are
retried one transaction each, so one bad write cannot sink the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine

from troth.store.engine import writing

__all__ = ["BatchWriter", "Work"]

Work = Callable[[Connection], Any]


class BatchWriter:
    """``finish(conn)`` runs inside each transaction after its work and returns a token;
    ``after_commit(token)`` runs once that transaction committed (the audit log uses them
    to take and then publish its signed head)."""

    def __init__(
        self,
        engine: Engine,
        max_batch: int = 256,
        max_queue: int = 10_000,
        finish: Callable[[Connection], Any] | None = None,
        after_commit: Callable[[Any], None] | None = None,
    ) -> None:
        self.engine = engine
        self._finish = finish or (lambda _conn: None)
        self._after_commit = after_commit or (lambda _token: None)
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Work, asyncio.Future[Any]]] = asyncio.Queue(max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="troth-writer")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            while not self._queue.empty():
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, work: Work) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((work, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            outcomes = await loop.run_in_executor(self._executor, self._commit, batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        try:
            with writing(self.engine).begin() as conn:
                results = [work(conn) for work, _ in batch]
                token = self._finish(conn)
        except Exception:
            if len(batch) == 1:
                return [self._one(batch[0][0])]
            return [self._one(work) for work, _ in batch]
        self._committed(token)
        return [(True, r) for r in results]

    def _one(self, work: Work) -> tuple[bool, Any]:
        try:
            with writing(self.engine).begin() as conn:
                result = work(conn)
                token = self._finish(conn)
        except Exception as exc:
            return False, exc
        self._committed(token)
        return True, result

    def _committed(self, token: Any) -> None:
        # The writes are durable and will be acknowledged whatever happens here: never retry
        # committed work. A failure leaves something to repair, and says so.
        try:
            self._after_commit(token)
        except Exception as exc:
            print(
                f"troth: committed, but the after-commit step failed ({type(exc).__name__}); "
                "run `troth audit recover` once the cause is fixed",
                file=sys.stderr,
            )
