"""Fixtures of the rights tests: a throwaway MariaDB server (Debian's, started here like
PostgreSQL in tests/conftest.py), and the seed service's own database (Lumen's demo,
examples/seed-service/service) on SQLite, PostgreSQL and MariaDB, with troth beside it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from troth.config import Settings
from troth.policy.datasets import Datasets, load_datasets
from troth.policy.loader import load_policy
from troth.policy.model import Policy
from troth.rights.connectors import Connector, open_connectors
from troth.rights.engine import RightsEngine
from troth.web.services import Services

ROOT = Path(__file__).resolve().parents[2]
SEED_DIR = ROOT / "examples" / "seed-service"
SEED_POLICY = SEED_DIR / "policy.yaml"
SEED_DATASETS = SEED_DIR / "datasets.yaml"


def _load_make_db() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lumen_make_db", SEED_DIR / "service" / "make_db.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_db = _load_make_db()
ALEX: dict[str, Any] = make_db.ALEX


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(*names: str) -> str:
    for name in names:
        for place in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if place and os.access(place, os.X_OK):
                return place
    pytest.fail(
        f"MariaDB server binaries are missing ({' / '.join(names)}): run `make test`, which "
        "installs Debian's mariadb-server"
    )


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[str]:
    """A throwaway MariaDB server for this test run: a datadir in /tmp, run as 'mysql'
    (tests run as root), on a free port; no grant tables (nothing but tests can reach it)."""
    install = _binary("mariadb-install-db", "mysql_install_db")
    server = _binary("mariadbd", "mysqld")
    base = Path(tempfile.mkdtemp(prefix="troth-mariadb-"))
    data, run = base / "data", base / "run"
    run.mkdir()
    as_mysql: list[str] = []
    user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "mysql")
        shutil.chown(run, "mysql")
        as_mysql = ["runuser", "-u", "mysql", "--"]
        user = ["--user=mysql"]
    result = subprocess.run(
        [*as_mysql, install, "--no-defaults", f"--datadir={data}", *user,
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")
    port = _free_port()
    log = base / "error.log"
    process = subprocess.Popen(
        [*as_mysql, server, "--no-defaults", f"--datadir={data}", f"--socket={run}/mysqld.sock",
         f"--port={port}", "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
         "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2",
         f"--pid-file={run}/mysqld.pid", f"--log-error={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"mysql+pymysql://root@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"mariadbd exited with {process.returncode}:\n{log.read_text()}")
            try:
                engine = create_engine(f"{url}/mysql")
                with engine.connect():
                    pass
                engine.dispose()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(f"mariadbd did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)


def new_mariadb_database(server: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/mysql")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    admin.dispose()
    return f"{server}/{name}"


def new_service_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of ``kind`` (sqlite | postgresql | mysql)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'lumen-{uuid.uuid4().hex[:6]}.db'}"
    if kind == "postgresql":
        server = request.getfixturevalue("postgres_server")  # tests/conftest.py
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return f"{server}/{name}"
    return new_mariadb_database(request.getfixturevalue("mariadb_server"))


def write_datasets(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The example annotations after ``edit`` (of its YAML data), as a file."""
    data = yaml.safe_load(SEED_DATASETS.read_text(encoding="utf-8"))
    edit(data)
    out = tmp_path / f"datasets-{uuid.uuid4().hex[:6]}.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


@dataclass
class World:
    """Lumen's database (``url``, on ``kind``) with troth beside it (``services``)."""

    kind: str
    url: str
    policy: Policy
    datasets: Datasets
    services: Services
    opened: list[dict[str, Connector]] = field(default_factory=list)

    def connectors(self) -> dict[str, Connector]:
        connectors = open_connectors(self.datasets, troth=self.services, urls={"lumen": self.url})
        self.opened.append(connectors)
        return connectors

    def engine(self) -> RightsEngine:
        return RightsEngine(self.policy, self.datasets, self.connectors())

    def sql(self, statement: str, **params: Any) -> list[Any]:
        engine = make_db.engine_for(self.url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def close(self) -> None:
        for connectors in self.opened:
            for c in connectors.values():
                c.close()
        self.services.engine.dispose()


@pytest.fixture(scope="session")
def seed_policy() -> Policy:
    return load_policy(SEED_POLICY).policy


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def world(request: pytest.FixtureRequest, tmp_path: Path, seed_policy: Policy) -> Iterator[World]:
    """The example service database on SQLite, PostgreSQL and MariaDB, filled by
    make_db.py, annotated by the example datasets.yaml (its kind set to match), and troth's
    own store (SQLite beside SQLite and MariaDB; PostgreSQL beside PostgreSQL)."""
    kind = str(request.param)
    url = new_service_database(kind, request, tmp_path)
    make_db.build(url, accounts=12)

    def to_kind(data: dict[str, Any]) -> None:
        data["datastores"][0]["kind"] = kind

    datasets = load_datasets(write_datasets(tmp_path, to_kind), seed_policy)
    troth_url = (
        new_service_database("postgresql", request, tmp_path)
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'troth.db'}"
    )
    settings = Settings(
        database_url=troth_url,
        keys_dir=tmp_path / "keys",
        audit_heads=tmp_path / "audit" / "heads.jsonl",
        erasures=tmp_path / "audit" / "erasures.jsonl",
    )
    w = World(kind, url, seed_policy, datasets, Services.open(seed_policy, settings))
    try:
        yield w
    finally:
        w.close()
