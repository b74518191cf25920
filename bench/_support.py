"""What every benchmark needs: a bench error type, logging, and a throwaway PostgreSQL
cluster from the Debian server binaries (as tests/conftest.py starts one for the tests)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from sqlalchemy import create_engine, text

__all__ = ["BenchError", "as_postgres", "free_port", "log", "postgres_cluster", "print_table"]


class BenchError(Exception):
    """The bench itself could not run (not a missed goal)."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to 'postgres' when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_cluster(base: Path, databases: tuple[str, ...]) -> Iterator[tuple[list[str], str]]:
    """A throwaway cluster; yields one URL per database and a line describing the server."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise BenchError("PostgreSQL server binaries are missing (scripts/install-test-deps.sh)")
    bindir = os.path.dirname(found[-1])
    data, sockets = base / "data", base / "run"
    sockets.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(
        as_postgres([f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "troth",
                     "--no-sync", "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True,
    )  # fmt: skip
    pg_log = base / "postgres.log"
    subprocess.run(
        as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-l", str(pg_log), "-w", "-t", "60",
                     "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
                     "-c max_connections=200", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        server = f"postgresql+psycopg://troth@127.0.0.1:{port}"
        admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in databases:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            settings = {
                name: conn.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("server_version", "fsync", "synchronous_commit")
            }
        admin.dispose()
        about = ", ".join(f"{k}={v}" for k, v in settings.items())
        log("PostgreSQL " + about)
        yield [f"{server}/{name}" for name in databases], about
    finally:
        subprocess.run(
            as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip


def print_table(head: Sequence[str], rows: Iterable[Sequence[str]], widths: Sequence[int]) -> None:
    """The benchmark's Markdown table: figure columns (1-3) right-aligned, the rest left."""
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in rows:
        print(
            "| "
            + " | ".join(
                c.rjust(w) if i in (1, 2, 3) else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )
