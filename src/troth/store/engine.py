"""One engine factory for both databases: SQLite (WAL, embedded) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from troth.errors import StoreError

__all__ = ["make_engine", "reading", "writing"]


def reading(engine: Engine) -> Engine:
    """The same engine, for single reads: no BEGIN/ROLLBACK around them (autocommit)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT", troth_read=True)
    return engine.execution_options(troth_read=True)


def writing(engine: Engine) -> Engine:
    """The same engine, for transactions that write: on SQLite they take the write lock at
    BEGIN (``BEGIN IMMEDIATE``), so a transaction that reads before it writes never fails
    because another connection committed in between. Readers stay deferred."""
    return engine.execution_options(troth_write=True)


def _forget_transaction_state(conn: Any) -> None:
    """``Connection.info`` outlives the transaction (it belongs to the pooled connection):
    whatever troth keeps there for one transaction (pending audit rows, unwrapped data keys)
    is dropped when the next one begins, so it can never leak into it."""
    for key in [k for k in conn.info if isinstance(k, str) and k.startswith("troth_")]:
        del conn.info[key]


def make_engine(url: str, *, pool_size: int = 12, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, full sync and a busy timeout on every connection.

    ``pool_size`` should exceed the number of threads that use the engine at once, so that
    requests reuse connections instead of opening new ones."""
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
            pool_size=pool_size,
            max_overflow=4,
            **kwargs,
        )

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            _forget_transaction_state(conn)
            options = conn.get_execution_options()
            if options.get("troth_read"):
                return  # a single SELECT is its own consistent snapshot
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("troth_write") else "BEGIN")

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
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            # no pre-ping (a round trip per checkout): a dropped connection is invalidated
            # on first use and replaced; recycle keeps idle ones from going stale
            pool_recycle=1800,
            pool_size=pool_size,
            max_overflow=4,
            **kwargs,
        )
        event.listen(engine, "begin", _forget_transaction_state)
        return engine
    raise StoreError(f"unsupported database '{backend}': use sqlite:/// or postgresql+psycopg://")
