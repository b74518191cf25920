"""Helpers of the request lifecycle tests: troth (the web app, on the test's database) next
to Lumen's own database (same engine), the outbox mail, and a worker of its own."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from conftest import SEED, new_postgres_database
from rights.conftest import make_db, write_datasets
from troth.auth.api_keys import create_api_key
from troth.config import Settings
from troth.policy.loader import load_policy
from troth.rights.requests_service import Rights, open_rights
from troth.store.tables import metadata
from troth.web.app import create_app
from troth.web.services import Services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

POLICY = load_policy(SEED).policy


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Lifecycle:
    settings: Settings
    app: FastAPI
    client: TestClient
    lumen_url: str
    outbox: Path
    opened: list[Rights] = field(default_factory=list)
    worker_rights: Rights | None = None  # on the real clock

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def key(self, role: str) -> dict[str, str]:
        _, secret = create_api_key(self.services.engine, role, f"test {role}")
        return {"Authorization": f"Bearer {secret}"}

    def rights(self, clock: Callable[[], dt.datetime] | None = None) -> Rights:
        """A Rights of its own (another worker's view: its own engine and keys loaded)."""
        services = Services.open(POLICY, self.settings)
        rights = open_rights(
            self.settings,
            POLICY,
            services.engine,
            services.audit,
            services.vault,
            services.ledger,
            datasets=self.settings.datasets,
            **({"clock": clock} if clock else {}),
        )
        self.opened.append(rights)
        return rights

    def work(self) -> int:
        """Run every runnable job with a separate worker; how many ran."""
        if self.worker_rights is None:
            self.worker_rights = self.rights()
        worker = self.worker_rights.worker()
        ran = 0
        while worker.run_once() is not None:
            ran += 1
        return ran

    def mails(self) -> list[email.message.EmailMessage]:
        out = []
        for path in sorted(self.outbox.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, email.message.EmailMessage)
            out.append(message)
        return out

    def last_mail(self, to: str) -> str:
        found = [m for m in self.mails() if m["To"] == to]
        assert found, f"no mail to {to}"
        body = found[-1].get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    def code(self, to: str) -> str:
        match = re.search(r"(?:Your|Ihr) code: (\d{4}) (\d{4})", self.last_mail(to), re.I)
        assert match, self.last_mail(to)
        return match.group(1) + match.group(2)

    def link(self, to: str) -> str:
        match = re.search(
            r"http://testserver(/privacy/requests/download/[A-Za-z0-9_-]+)", self.last_mail(to)
        )
        assert match, self.last_mail(to)
        return match.group(1)

    def dump(self) -> str:
        """Every row of every troth table, as text (but the published policy documents,
        whose example contact details happen to share Alex's phone number)."""
        out = []
        with self.services.engine.connect() as conn:
            for table in metadata.sorted_tables:
                if table.name == "policy_versions":
                    continue
                out += [repr(tuple(row)) for row in conn.execute(select(table))]
        return "\n".join(out)

    def lumen(self, statement: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        engine = make_db.engine_for(self.lumen_url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def close(self) -> None:
        for rights in self.opened:
            rights.executor.close()
            rights.engine.dispose()


@contextmanager
def lifecycle(
    db_url: str,
    tmp_path: Path,
    *,
    datasets: bool = True,
    **settings: Any,
) -> Iterator[Lifecycle]:
    """troth on ``db_url`` with Lumen's demo database on the same engine beside it."""
    if db_url.startswith("postgresql"):
        server = db_url.rsplit("/", 1)[0]
        lumen_url = new_postgres_database(server)
        kind = "postgresql"
    else:
        lumen_url = f"sqlite:///{tmp_path / f'lumen-{uuid.uuid4().hex[:6]}.db'}"
        kind = "sqlite"
    make_db.build(lumen_url, accounts=6)

    def point(data: dict[str, Any]) -> None:
        data["datastores"][0]["kind"] = kind
        data["datastores"][0]["url"] = lumen_url

    outbox = tmp_path / "outbox"
    config = Settings(
        database_url=db_url,
        keys_dir=tmp_path / "keys",
        audit_heads=tmp_path / "audit" / "heads.jsonl",
        erasures=tmp_path / "audit" / "erasures.jsonl",
        outbox=outbox,
        datasets=write_datasets(tmp_path, point) if datasets else None,
        public_url="http://testserver",
        rights_worker=False,
        **settings,
    )
    app = create_app(POLICY, config)
    with TestClient(app) as client:
        life = Lifecycle(config, app, client, lumen_url, outbox)
        try:
            yield life
        finally:
            life.close()


def no_identity_in(text: str, *identities: str) -> None:
    for value in identities:
        if value in text:
            line = next(x for x in text.splitlines() if value in x)
            pytest.fail(f"an identity appears in clear: {value[:3]}... in {line[:60]}")
