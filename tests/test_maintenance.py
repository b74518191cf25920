"""Periodic work shared by several workers: exactly one claims each run."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from troth.store.engine import make_engine
from troth.store.maintenance import claim
from troth.store.migrate import upgrade

HOUR = dt.timedelta(minutes=55)
T0 = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def test_a_task_runs_once_per_period(engine):
    assert claim(engine, "tracking.purge", HOUR, now=T0)
    assert not claim(engine, "tracking.purge", HOUR, now=T0 + dt.timedelta(minutes=1))
    assert not claim(engine, "tracking.purge", HOUR, now=T0 + dt.timedelta(minutes=54))
    assert claim(engine, "tracking.purge", HOUR, now=T0 + dt.timedelta(minutes=56))
    # the period counts from the last run, not the first
    assert not claim(engine, "tracking.purge", HOUR, now=T0 + dt.timedelta(minutes=100))


def test_tasks_are_claimed_independently(engine):
    assert claim(engine, "tracking.purge", HOUR, now=T0)
    assert claim(engine, "rights.housekeeping", HOUR, now=T0)


def test_of_many_workers_asking_at_once_exactly_one_gets_the_run(engine):
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        got = claim(engine, "tracking.purge", HOUR, now=T0)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
