"""Group commit: many concurrent writes, one transaction, each acknowledged only once durable.

Writers ``await submit(work)``; a single task gathers whatever is waiting (up to
``max_batch``), runs every ``work(connection)`` in one transaction on a worker thread, and
resolves each caller only after the commit returned. If the batch fails, its items are
retried one transaction each, so one bad write cannot sink the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine

__all__ = ["BatchWriter"]

Work = Callable[[Connection], Any]


class BatchWriter:
    def __init__(self, engine: Engine, max_batch: int = 256, max_queue: int = 10_000) -> None:
        self.engine = engine
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
            with self.engine.begin() as conn:
                results = [work(conn) for work, _ in batch]
            return [(True, r) for r in results]
        except Exception:
            if len(batch) == 1:
                return [self._one(batch[0][0])]
            return [self._one(work) for work, _ in batch]

    def _one(self, work: Work) -> tuple[bool, Any]:
        try:
            with self.engine.begin() as conn:
                return True, work(conn)
        except Exception as exc:
            return False, exc
