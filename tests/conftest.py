"""Shared fixtures: the minimal and seed policies, and a way to write variants of them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from troth.policy.loader import LoadedPolicy, load_policy

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "fixtures" / "minimal.yaml"
SEED = ROOT / "examples" / "seed-service" / "policy.yaml"
SEED_TEXT = ROOT.parent / "shared" / "seed" / "privacy-policy.txt"

Variant = Callable[[Callable[[dict[str, Any]], None]], LoadedPolicy]


def write_variant(base: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = copy.deepcopy(yaml.safe_load(base.read_text(encoding="utf-8")))
    edit(data)
    out = tmp_path / f"variant-{len(list(tmp_path.iterdir()))}.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


@pytest.fixture
def minimal_variant(tmp_path: Path) -> Variant:
    """Load the minimal policy after applying ``edit`` to its YAML data."""

    def make(edit: Callable[[dict[str, Any]], None]) -> LoadedPolicy:
        return load_policy(write_variant(MINIMAL, tmp_path, edit))

    return make


@pytest.fixture
def seed_variant(tmp_path: Path) -> Callable[[Callable[[dict[str, Any]], None]], Path]:
    """Write the seed policy after applying ``edit`` and return its path."""

    def make(edit: Callable[[dict[str, Any]], None]) -> Path:
        return write_variant(SEED, tmp_path, edit)

    return make


@pytest.fixture(scope="session")
def seed() -> LoadedPolicy:
    return load_policy(SEED)


@pytest.fixture(scope="session")
def minimal() -> LoadedPolicy:
    return load_policy(MINIMAL)


# --- databases: every storage test runs on SQLite and on a real PostgreSQL ----------------

import glob  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from sqlalchemy import create_engine, text  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root; CI runs as root, so drop to 'postgres'."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL cluster from the Debian server binaries, for this test run."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing: run `make test`, which installs them")
    bindir = os.path.dirname(found[-1])
    # Not under pytest's tmp_path: that is private to root, and the server runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="troth-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "troth",
                      "--no-sync", "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True,
    )  # fmt: skip
    log = base / "postgres.log"
    subprocess.run(
        _as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60",
                      "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
                      "-c max_connections=200", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://troth@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def new_postgres_database(server: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'troth.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


# --- a real troth server ------------------------------------------------------------------

import contextlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx  # noqa: E402

TROTH_BIN = str(Path(sys.executable).with_name("troth"))


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_server(
    policy: Path,
    database_url: str,
    workdir: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start `troth serve` on a free port and wait until it answers; stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / f"serve-{port}.log"
    full_env = {**os.environ, "TROTH_KEYS_DIR": str(workdir / "keys"), **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TROTH_BIN, "serve", str(policy), "--port", str(port),
             "--database-url", database_url, "--workers", str(workers)],
            cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=full_env,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"troth serve exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"troth serve did not start:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- engines opened by apps built in-process are disposed after each test ------------------

import troth.web.services as _services  # noqa: E402


@pytest.fixture(autouse=True)
def _dispose_app_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Apps built with create_app() outside a server open pooled connections; close them
    when the test ends, instead of leaving them to the garbage collector."""
    opened = []
    real = _services.make_engine

    def tracking_make_engine(*args: Any, **kwargs: Any) -> Any:
        engine = real(*args, **kwargs)
        opened.append(engine)
        return engine

    monkeypatch.setattr(_services, "make_engine", tracking_make_engine)
    yield
    for engine in opened:
        engine.dispose()
