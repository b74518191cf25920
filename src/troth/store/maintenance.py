"""Periodic work that several worker processes (or hosts) share: one of them claims a run.

A claim is a compare-and-set on the task's last run time, so of the processes that ask at
about the same time exactly one gets it, and nobody gets it again before ``every`` has passed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from troth.store.engine import writing
from troth.store.tables import maintenance_runs

__all__ = ["claim"]


def claim(
    engine: Engine, task: str, every: dt.timedelta, *, now: dt.datetime | None = None
) -> bool:
    """Whether this process should run ``task`` now (and, if so, it is recorded as run)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        with writing(engine).begin() as conn:
            last = conn.execute(
                select(maintenance_runs.c.last_run).where(maintenance_runs.c.task == task)
            ).scalar_one_or_none()
            if last is None:
                conn.execute(insert(maintenance_runs).values(task=task, last_run=now))
                return True
            if last.tzinfo is None:  # SQLite hands back naive UTC
                last = last.replace(tzinfo=dt.UTC)
            if now - last < every:
                return False
            changed = conn.execute(
                update(maintenance_runs)
                .where(maintenance_runs.c.task == task, maintenance_runs.c.last_run == last)
                .values(last_run=now)
            ).rowcount
            return bool(changed)
    except IntegrityError:  # another process inserted the first run at the same moment
        return False
