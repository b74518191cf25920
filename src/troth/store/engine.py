"""One engine factory for both databases: SQLite (WAL, embedded) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from troth.errors import StoreError

__all__ = ["make_engine", "writing"]


def writing(engine: Engine) -> Engine:
    """The same engine, for transactions that write: on SQLite they take the write lock at
    BEGIN (``BEGIN IMMEDIATE``), so a transaction that reads before it writes never fails
    because another connection committed in between. Readers stay deferred."""
    return engine.execution_options(troth_write=True)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, full sync and a busy timeout on every connection."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"database URL is not valid: {type(exc).__name__}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed,
            # isolation_level=None: the driver leaves transactions to us (see "begin" below)
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            **kwargs,
        )

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get("troth_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit that returned is on disk, so an acknowledged write survives a crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise StoreError("use the psycopg 3 driver: postgresql+psycopg://...")
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_pre_ping=True,
            pool_size=kwargs.pop("pool_size", 10),
            max_overflow=kwargs.pop("max_overflow", 10),
            **kwargs,
        )
    raise StoreError(f"unsupported database '{backend}': use sqlite:/// or postgresql+psycopg://")
