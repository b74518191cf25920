"""The job queue of data subject requests, in the database.

A request splits into jobs (one per datastore and operation) whose state lives in
``rights_jobs``, so they survive restarts and any number of worker processes can share
them. A worker *claims* a job with a lease: on PostgreSQL the claim is ``SELECT ... FOR
UPDATE SKIP LOCKED``, so two workers never take the same job and never wait for each
other; on SQLite the write lock taken at ``BEGIN IMMEDIATE`` serialises claims (same code
otherwise). A worker renews its lease while the job runs; a job whose lease ran out while
``running`` belongs to a worker that crashed or hung: the next claim takes it over (the
operations are idempotent, so a job run twice ends the same). Attempts are counted;
after ``max_attempts`` the job is ``failed`` and waits for an officer (``troth rights
execute`` retries it).

Finishing a job locks its request row first, so the worker that finishes the last job of a
request, and only that one, settles the request (next phase, package, completion).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from troth.audit.log import AuditLog
from troth.errors import TrothError
from troth.store.engine import writing
from troth.store.tables_rights import rights_jobs, rights_requests

__all__ = [
    "Job",
    "JobRunner",
    "Outcome",
    "Worker",
    "enqueue",
    "jobs_of",
    "new_worker_id",
    "requeue_failed",
]

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Job:
    id: int
    request_id: str
    operation: str
    datastore: str
    state: str
    attempts: int
    lease_owner: str | None
    result: dict[str, Any] | None
    error: str | None


@dataclass
class Outcome:
    """What running a job produced: ``output`` sealed by the runner, ``result`` counts."""

    output: bytes | None = None
    result: dict[str, Any] = field(default_factory=dict)


class JobRunner(Protocol):
    def run(self, job: Job) -> Outcome:
        """Do the job's work (outside any queue transaction)."""

    def settle(self, conn: Connection, job: Job) -> Callable[[], None] | None:
        """Called in the transaction that marks ``job`` done, with its request row locked:
        queue the next phase or complete the request. May return work to do after the
        commit (sending mail)."""


def _job(row: Any) -> Job:
    return Job(
        row.id,
        row.request_id,
        row.operation,
        row.datastore,
        row.state,
        row.attempts,
        row.lease_owner,
        row.result,
        row.error,
    )


def enqueue(
    conn: Connection,
    request_id: str,
    operation: str,
    datastores: Sequence[str],
    now: dt.datetime,
) -> int:
    """Queue one job per datastore (jobs already there are left as they are)."""
    existing = set(
        conn.execute(
            select(rights_jobs.c.datastore).where(
                rights_jobs.c.request_id == request_id, rights_jobs.c.operation == operation
            )
        ).scalars()
    )
    rows = [
        {
            "request_id": request_id,
            "operation": operation,
            "datastore": store,
            "state": "queued",
            "attempts": 0,
            "run_after": now,
            "created_at": now,
            "updated_at": now,
        }
        for store in datastores
        if store not in existing
    ]
    if rows:
        conn.execute(insert(rights_jobs), rows)
    return len(rows)


def jobs_of(conn: Connection, request_id: str) -> list[Job]:
    rows = conn.execute(
        select(rights_jobs).where(rights_jobs.c.request_id == request_id).order_by(rights_jobs.c.id)
    ).all()
    return [_job(r) for r in rows]


def requeue_failed(conn: Connection, request_id: str, now: dt.datetime) -> int:
    result = conn.execute(
        update(rights_jobs)
        .where(rights_jobs.c.request_id == request_id, rights_jobs.c.state == "failed")
        .values(state="queued", attempts=0, run_after=now, error=None, updated_at=now)
    )
    return int(result.rowcount)


def _error_text(exc: BaseException) -> str:
    """What a failed job records: troth's own messages (which name no person), else only
    the exception's type, since a driver's message may quote the data it choked on."""
    if isinstance(exc, TrothError):
        return str(exc)[:500]
    return f"{type(exc).__name__} (details withheld: they may quote personal data)"


class Worker:
    """Claims and runs jobs, one per :meth:`run_once`."""

    def __init__(
        self,
        engine: Engine,
        runner: JobRunner,
        audit: AuditLog,
        *,
        owner: str | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        max_attempts: int = 5,
        clock: Clock = _utcnow,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.audit = audit
        self.owner = owner or new_worker_id()
        self.lease = lease
        self.max_attempts = max_attempts
        self.clock = clock

    def claim(self) -> Job | None:
        """Take the oldest runnable job: queued and due, or running with an expired lease."""
        now = self.clock()
        with writing(self.engine).begin() as conn:
            candidate = (
                select(rights_jobs.c.id)
                .where(
                    or_(
                        and_(rights_jobs.c.state == "queued", rights_jobs.c.run_after <= now),
                        and_(rights_jobs.c.state == "running", rights_jobs.c.lease_until < now),
                    )
                )
                .order_by(rights_jobs.c.run_after, rights_jobs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job_id = conn.execute(candidate).scalar_one_or_none()
            if job_id is None:
                return None
            conn.execute(
                update(rights_jobs)
                .where(rights_jobs.c.id == job_id)
                .values(
                    state="running",
                    lease_owner=self.owner,
                    lease_until=now + self.lease,
                    attempts=rights_jobs.c.attempts + 1,
                    updated_at=now,
                )
            )
            row = conn.execute(select(rights_jobs).where(rights_jobs.c.id == job_id)).one()
        return _job(row)

    def _still_mine(self, conn: Connection, job: Job) -> bool:
        owner = conn.execute(
            select(rights_jobs.c.lease_owner, rights_jobs.c.state)
            .where(rights_jobs.c.id == job.id)
            .with_for_update()
        ).first()
        return owner is not None and owner.state == "running" and owner.lease_owner == self.owner

    def finish(self, job: Job, outcome: Outcome) -> bool:
        """Mark ``job`` done and let the runner settle its request. False when the lease
        was lost (another worker took the job over): then nothing is written."""
        after: Callable[[], None] | None = None
        with writing(self.engine).begin() as conn:
            # request row first, then the job: every worker locks in this order
            conn.execute(
                select(rights_requests.c.id)
                .where(rights_requests.c.id == job.request_id)
                .with_for_update()
            ).first()
            if not self._still_mine(conn, job):
                return False
            now = self.clock()
            conn.execute(
                update(rights_jobs)
                .where(rights_jobs.c.id == job.id)
                .values(
                    state="done",
                    output=outcome.output,
                    result=outcome.result,
                    error=None,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
            done = Job(**{**job.__dict__, "state": "done", "result": outcome.result})
            after = self.runner.settle(conn, done)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        if after is not None:
            after()
        return True

    def fail(self, job: Job, exc: BaseException) -> None:
        """Record a failed attempt: retried later (backing off), or failed for good."""
        now = self.clock()
        with writing(self.engine).begin() as conn:
            if not self._still_mine(conn, job):
                return
            final = job.attempts >= self.max_attempts
            conn.execute(
                update(rights_jobs)
                .where(rights_jobs.c.id == job.id)
                .values(
                    state="failed" if final else "queued",
                    error=_error_text(exc),
                    lease_owner=None,
                    lease_until=None,
                    run_after=now + dt.timedelta(seconds=min(300, 2**job.attempts)),
                    updated_at=now,
                )
            )

    def renew(self, job: Job) -> bool:
        """Extend this worker's lease on ``job``; False when it is no longer this worker's."""
        now = self.clock()
        with writing(self.engine).begin() as conn:
            result = conn.execute(
                update(rights_jobs)
                .where(
                    rights_jobs.c.id == job.id,
                    rights_jobs.c.state == "running",
                    rights_jobs.c.lease_owner == self.owner,
                )
                .values(lease_until=now + self.lease, updated_at=now)
            )
        return bool(result.rowcount)

    def _keep_leased(self, job: Job, done: threading.Event) -> None:
        """Renew the lease every third of it while the job runs (long erasures)."""
        every = max(self.lease.total_seconds() / 3, 0.1)
        while not done.wait(every):
            try:
                if not self.renew(job):
                    return
            except Exception:  # the database is away; the lease may lapse, the job is redone
                return

    def run_once(self) -> Job | None:
        """Claim one job and run it; the job as claimed, or None when there was none."""
        job = self.claim()
        if job is None:
            return None
        done = threading.Event()
        keeper = threading.Thread(
            target=self._keep_leased, args=(job, done), name="troth-rights-lease", daemon=True
        )
        keeper.start()
        try:
            outcome = self.runner.run(job)
            self.finish(job, outcome)
        except Exception as exc:  # any failure of the work is recorded, never lost
            self.fail(job, exc)
        finally:
            done.set()
            keeper.join()
        return job
