"""Everything the request lifecycle needs, assembled once per process from the settings
and troth's own services (database, audit log, vault, consent ledger)."""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from troth.audit.log import AuditLog
from troth.config import Settings
from troth.consent.ledger import ConsentLedger
from troth.policy.datasets import datasets_beside
from troth.policy.model import Policy
from troth.rights.codes import Sealer
from troth.rights.delivery import Deliveries, Download
from troth.rights.jobs import Worker
from troth.rights.mailer import Mailer, make_mailer
from troth.rights.requests import RequestDesk
from troth.rights.requests_errors import RequestError
from troth.rights.requests_execution import Executor
from troth.rights.requests_model import DeskConfig
from troth.store.engine import reading
from troth.store.secrets import Secrets
from troth.store.tables_rights import rights_jobs
from troth.vault.vault import Vault

__all__ = ["Rights", "datasets_path", "open_rights"]

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def datasets_path(settings: Settings, policy_path: Path | None) -> Path | None:
    """``TROTH_DATASETS``, else ``datasets.yaml`` beside the policy if there is one."""
    if settings.datasets is not None:
        return settings.datasets
    return datasets_beside(policy_path)


@dataclass
class Rights:
    settings: Settings
    engine: Engine
    audit: AuditLog
    desk: RequestDesk
    deliveries: Deliveries
    executor: Executor
    clock: Clock
    _threads: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)
    _last_housekeeping: dt.datetime | None = None

    def download(self, token: str) -> Download:
        """The package behind a download link, once: the link is used up and the step
        recorded (and audited) in the same transaction."""
        heads: list[Any] = []

        def record(conn: Connection, request_id: str) -> None:
            row = self.desk.lock(conn, request_id)
            self.desk.step(conn, row, "downloaded", "requester", "package downloaded; link used up")
            heads.append(self.audit.take_head(conn))

        found = self.deliveries.take(token, record)
        for head in heads:
            self.audit.publish(head)
        return found

    def worker(self, owner: str | None = None) -> Worker:
        return Worker(
            self.engine,
            self.executor,
            self.audit,
            owner=owner,
            lease=dt.timedelta(seconds=self.settings.rights_lease_seconds),
            max_attempts=self.settings.rights_max_attempts,
            clock=self.clock,
        )

    def pending(self) -> bool:
        """Whether any job may be runnable (a cheap read before a worker's write claim)."""
        with reading(self.engine).connect() as conn:
            found = conn.execute(
                select(rights_jobs.c.id)
                .where(rights_jobs.c.state.in_(("queued", "running")))
                .limit(1)
            ).first()
        return found is not None

    def housekeeping(self) -> tuple[int, int]:
        """Empty expired download packages; drop identities of requests closed long ago."""
        emptied = self.deliveries.purge()
        forgotten = self.desk.forget(dt.timedelta(days=self.settings.rights_keep_days))
        return emptied, forgotten

    def housekeeping_due(self, every: dt.timedelta = dt.timedelta(minutes=10)) -> bool:
        now = self.clock()
        if self._last_housekeeping is not None and now - self._last_housekeeping < every:
            return False
        self._last_housekeeping = now
        return True

    def start_background(self, idle: float = 2.0) -> None:
        """A worker thread inside this process (``troth serve``), until :meth:`stop`."""
        stop = threading.Event()
        worker = self.worker()

        def loop() -> None:
            while not stop.is_set():
                try:
                    if self.housekeeping_due():
                        self.housekeeping()
                    busy = self.pending() and worker.run_once() is not None
                except Exception as exc:  # the database went away: say so, try again later
                    print(f"troth: request worker: {type(exc).__name__}; retrying", file=sys.stderr)
                    busy = False
                if not busy:
                    stop.wait(idle)

        thread = threading.Thread(target=loop, name="troth-rights-worker", daemon=True)
        thread.start()
        self._threads.append((thread, stop))

    def stop(self) -> None:
        for thread, stop in self._threads:
            stop.set()
            thread.join(timeout=60)
        self._threads.clear()


def open_rights(
    settings: Settings,
    policy: Policy,
    engine: Engine,
    audit: AuditLog,
    vault: Vault,
    ledger: ConsentLedger,
    *,
    datasets: Path | None = None,
    mailer: Mailer | None = None,
    clock: Clock = _utcnow,
) -> Rights:
    sealer = Sealer(Secrets(settings.keys_dir).key("rights"))
    mailer = mailer or make_mailer(
        settings.smtp_url, settings.outbox, settings.mail_from or policy.controller.email
    )
    config = DeskConfig(
        auto_approve=settings.auto_approve_kinds(),
        code_ttl=dt.timedelta(minutes=settings.rights_code_minutes),
        code_attempts=settings.rights_code_attempts,
        public_url=settings.public_url or (str(policy.url) if policy.url else ""),
        service=policy.service,
        purposes=frozenset(p.id for p in policy.purposes),
    )
    desk = RequestDesk(engine, audit, sealer, mailer, vault.hash, config, clock)
    deliveries = Deliveries(
        engine, sealer, dt.timedelta(hours=settings.rights_download_hours), clock
    )
    executor = Executor(desk, deliveries, policy, engine, vault, ledger, datasets)
    desk.queue_execution = executor.queue

    def identity_kinds() -> list[str] | None:
        try:
            return executor.identity_kinds()
        except RequestError:  # annotations unusable: execution says why, not submission
            return None

    def correctable() -> list[str] | None:
        if datasets is None:
            return None  # no annotations: execution says why, not submission
        try:
            return [target for target, _label in executor.rectifiable()]
        except RequestError:
            return None

    desk.identity_kinds = identity_kinds
    desk.subject_kinds = executor.subject_kinds
    desk.correctable = correctable
    desk.check_correction = executor.check_correction
    desk.same_person = executor.same_person
    return Rights(settings, engine, audit, desk, deliveries, executor, clock)
