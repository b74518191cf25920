"""Connectors: how the rights engine reads and changes one datastore.

A connector is a small class registered for a datastore ``kind``; the engine only ever
calls the :class:`Connector` protocol, so adding a kind touches no engine code::

    @register("duckdb")
    class DuckConnector: ...

:func:`open_connectors` opens one connector per declared datastore:

    connectors = open_connectors(datasets, troth=services)   # services: web Services or
                                                               # anything with engine, vault
    connectors = open_connectors(datasets, urls={"lumen": "postgresql+psycopg://..."})

``urls`` overrides a datastore's URL from the file (after ``${VAR}`` expansion); the troth
datastore needs ``troth`` (an object with ``engine`` and ``vault``, e.g.
:class:`troth.web.services.Services`), else opening it fails with a clear error.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from troth.errors import StoreError
from troth.policy.datasets import Datasets, DatasetTable, Datastore
from troth.rights.types import Key, Row, StorePlan

__all__ = [
    "BATCH",
    "CONNECTORS",
    "Connector",
    "SqlConnector",
    "TrothParts",
    "open_connectors",
    "register",
]

BATCH = 1000  # values per IN (...) list: one query per table per batch


class Connector(Protocol):
    """One datastore, as the rights engine sees it."""

    datastore: Datastore

    def tables(self) -> Sequence[DatasetTable]:
        """The tables the engine may search (the declared ones, or a store's own)."""
        ...

    def fetch(self, table: DatasetTable, where: Mapping[str, Sequence[Any]]) -> list[Row]:
        """Rows of ``table`` whose ``column`` is one of the values, for any column given;
        only the declared columns. One indexed query per batch of values."""
        ...

    def nullable(self, table: str, column: str) -> bool:
        """Whether ``column`` may be set to NULL (to cut a reference cycle)."""
        ...

    def unique(self, table: str, column: str) -> bool:
        """Whether no two rows of ``table`` share a value of ``column`` (then the engine
        does not ask again for a value it found in that very column)."""
        ...

    def apply(self, plan: StorePlan) -> None:
        """Carry out an erasure plan in ONE transaction: all of it, or nothing."""
        ...

    def coerce_value(self, table: DatasetTable, column: str, value: str) -> Any:
        """``value`` (text, as a person typed it) as ``column`` stores it; raises
        ValueError saying what the column takes (never quoting the value)."""
        ...

    def set_value(self, table: DatasetTable, key: Key, column: str, value: Any) -> int:
        """Set one field of one row; returns the number of rows changed."""
        ...

    def session(self, *, write: bool = False) -> AbstractContextManager[None]:
        """One connection (``write``: one transaction) for the block's work, if the
        connector has such a thing; else a block that does nothing."""
        ...

    def close(self) -> None: ...


class TrothParts(Protocol):
    """What the troth datastore needs of troth itself (web Services has all of it)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def vault(self) -> Any: ...


ConnectorFactory = Callable[[Datastore, str | None, "TrothParts | None"], Connector]
CONNECTORS: dict[str, ConnectorFactory] = {}


def register(*kinds: str) -> Callable[[ConnectorFactory], ConnectorFactory]:
    def add(factory: ConnectorFactory) -> ConnectorFactory:
        for kind in kinds:
            CONNECTORS[kind] = factory
        return factory

    return add


def open_connectors(
    datasets: Datasets,
    *,
    troth: TrothParts | None = None,
    urls: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Connector]:
    """One open connector per datastore id; raises StoreError naming the datastore."""
    from troth.rights import troth_store  # noqa: F401  (registers the 'troth' kind)

    out: dict[str, Connector] = {}
    try:
        for store in datasets.datastores:
            factory = CONNECTORS.get(store.kind)
            if factory is None:
                raise StoreError(f"datastore '{store.id}': no connector for kind '{store.kind}'")
            url = (urls or {}).get(store.id) or store.resolved_url(env)
            out[store.id] = factory(store, url, troth)
    except BaseException:
        for connector in out.values():
            connector.close()
        raise
    return out


# --- SQL databases through SQLAlchemy ---------------------------------------------------------

_BACKENDS = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def _engine_for(store: Datastore, url: str | None) -> Engine:
    if not url:
        raise StoreError(f"datastore '{store.id}' has no url")
    try:
        parsed = make_url(url)
    except Exception:
        raise StoreError(f"datastore '{store.id}': the url is not a database URL") from None
    backend = _BACKENDS.get(parsed.get_backend_name())
    if backend != store.kind:
        raise StoreError(
            f"datastore '{store.id}' is declared as kind '{store.kind}' but its url is for "
            f"'{parsed.get_backend_name()}'"
        )
    if backend in _DRIVERS and "+" not in parsed.drivername:
        parsed = parsed.set(drivername=_DRIVERS[backend])
    elif backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        raise StoreError(f"datastore '{store.id}': use the psycopg 3 driver (postgresql+psycopg)")
    elif backend == "mysql" and parsed.get_driver_name() != "pymysql":
        raise StoreError(f"datastore '{store.id}': use the pymysql driver (mysql+pymysql)")
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:" and "uri" not in parsed.query:
            # the service's database must exist: a missing file is an error, not a new one
            path = urllib.parse.quote(parsed.database, safe="/:")
            parsed = parsed.set(database=f"file:{path}", query={"mode": "rw", "uri": "true"})
        # The driver leaves transactions to us, so an erasure's reads and writes are one
        # transaction that holds the write lock from its start (see "begin" below).
        engine = create_engine(
            parsed, pool_size=2, max_overflow=2, connect_args={"isolation_level": None}
        )

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            write = conn.get_execution_options().get("troth_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(parsed, pool_size=2, max_overflow=2, pool_recycle=1800)


def _chunks(values: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@register("sqlite", "postgresql", "mysql")
class SqlConnector:
    """A service database: the tables and columns the annotations declare, nothing else.

    Statements are plain SQL built once per shape (table, columns asked, number of values)
    with the dialect's quoting and the driver's placeholders; :meth:`session` keeps one
    connection (and, for writing, one transaction) for a whole discovery or erasure."""

    def __init__(self, datastore: Datastore, url: str | None, _troth: TrothParts | None) -> None:
        self.datastore = datastore
        self.engine = _engine_for(datastore, url)
        self._writer = self.engine.execution_options(troth_write=True)
        self._types: dict[str, dict[str, Any]] = {}
        self._sql: dict[tuple[Any, ...], str] = {}
        self._unique: dict[tuple[str, str], set[str]] = {}
        self._ints: dict[tuple[str, str], bool] = {}
        self._local = threading.local()
        self._referenced = {r.to_table for t in datastore.tables for r in t.references}
        quote = self.engine.dialect.identifier_preparer.quote
        self._q: Callable[[str], str] = quote
        self._mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._array = self.engine.dialect.name == "postgresql"

    def tables(self) -> Sequence[DatasetTable]:
        return self.datastore.tables

    # --- connections -----------------------------------------------------------------------

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[None]:
        """Use one connection until the block ends; ``write``: one transaction, committed
        at the end of the block (rolled back if it raises). Nested sessions join the outer."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        try:
            with self._writer.begin() if write else self.engine.connect() as conn:
                self._local.conn = conn
                self._local.write = write
                try:
                    yield
                finally:
                    self._local.conn = None
                    self._local.write = False
        except SQLAlchemyError as exc:
            raise self._error("the database refused the work; nothing was changed", exc) from None

    @contextmanager
    def _conn(self, *, write: bool = False) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._writer.begin() if write else self.engine.connect() as new:
            yield new

    # --- schema ----------------------------------------------------------------------------

    def _columns(self, table: str) -> dict[str, Any]:
        """Reflected columns of ``table`` (name -> info), read once."""
        if table not in self._types:
            try:
                cols = inspect(self.engine).get_columns(table)
            except SQLAlchemyError as exc:
                raise self._error(f"cannot read the columns of table '{table}'", exc) from None
            self._types[table] = {c["name"]: c for c in cols}
        return self._types[table]

    def nullable(self, table: str, column: str) -> bool:
        info = self._columns(table).get(column)
        return bool(info and info.get("nullable", True))

    def unique(self, table: str, column: str) -> bool:
        key = ("unique", table)
        if key not in self._unique:
            try:
                inspector = inspect(self.engine)
                single: set[str] = set()
                pk = inspector.get_pk_constraint(table).get("constrained_columns") or []
                if len(pk) == 1:
                    single.add(pk[0])
                for ix in inspector.get_indexes(table, include_auto_indexes=True):
                    names = ix.get("column_names") or []
                    if ix.get("unique") and len(names) == 1 and names[0]:
                        single.add(str(names[0]))
                for uq in inspector.get_unique_constraints(table):
                    columns = uq.get("column_names") or []
                    if len(columns) == 1:
                        single.add(columns[0])
            except SQLAlchemyError as exc:
                raise self._error(f"cannot read the indexes of table '{table}'", exc) from None
            self._unique[key] = single
        return column in self._unique[key]

    def _wants_int(self, table: str, name: str) -> bool:
        key = (table, name)
        if key not in self._ints:
            info = self._columns(table).get(name)
            try:
                self._ints[key] = info is not None and info["type"].python_type is int
            except NotImplementedError:
                self._ints[key] = False
        return self._ints[key]

    def _coerce(self, table: str, name: str, values: Sequence[Any]) -> list[Any]:
        """Identities arrive as text; an integer column is asked for integers."""
        wants_int = self._wants_int(table, name)
        out: list[Any] = []
        for value in values:
            if wants_int and not isinstance(value, int):
                text = str(value).strip()
                if not text.lstrip("-").isdigit():
                    continue  # cannot match an integer column
                value = int(text)
            out.append(value)
        return list(dict.fromkeys(out))

    def _marks(self, n: int) -> str:
        return ", ".join([self._mark] * n)

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """``column IN (...)`` and its parameters; on PostgreSQL ``column = ANY(array)``: one
        parameter, however many values (cheaper to bind, one statement shape)."""
        if self._array:
            return f"{self._q(column)} = ANY({self._mark})", (list(values),)
        return f"{self._q(column)} IN ({self._marks(len(values))})", tuple(values)

    def _select(
        self, table: DatasetTable, shape: tuple[tuple[str, int], ...], lock: bool = False
    ) -> str:
        key = ("select", table.name, shape, lock)
        sql = self._sql.get(key)
        if sql is None:
            q = self._q
            cols = ", ".join(q(c) for c in table.columns())
            terms = " OR ".join(self._in(c, [None] * n)[0] for c, n in shape)
            sql = f"SELECT {cols} FROM {q(table.name)} WHERE {terms}"
            self._sql[key] = sql = f"{sql} FOR UPDATE" if lock else sql
        return sql

    def _locking(self, table: DatasetTable) -> bool:
        """Inside a write session, rows read of a table others refer to are locked until it
        ends (PostgreSQL, MySQL): no one can add rows that refer to them between finding
        and erasing (rows of other tables wait for the erasure's own DELETE or UPDATE).
        SQLite's write session holds the whole database from its start."""
        return (
            bool(getattr(self._local, "write", False))
            and self.engine.dialect.name != "sqlite"
            and table.name in self._referenced
        )

    # --- reading ---------------------------------------------------------------------------

    def fetch(self, table: DatasetTable, where: Mapping[str, Sequence[Any]]) -> list[Row]:
        wanted = {name: self._coerce(table.name, name, vals) for name, vals in where.items()}
        wanted = {name: vals for name, vals in wanted.items() if vals}
        if not wanted:
            return []
        rows: dict[Any, Row] = {}
        columns = table.columns()
        longest = max(len(v) for v in wanted.values())
        try:
            with self._conn() as conn:
                for start in range(0, longest, BATCH):
                    parts = [
                        (name, vals[start : start + BATCH])
                        for name, vals in wanted.items()
                        if vals[start : start + BATCH]
                    ]
                    shape = tuple((name, 1 if self._array else len(v)) for name, v in parts)
                    sql = self._select(table, shape, self._locking(table))
                    params = tuple(p for name, vals in parts for p in self._in(name, vals)[1])
                    for record in conn.exec_driver_sql(sql, params):
                        row = dict(zip(columns, record, strict=True))
                        rows[row[table.key]] = row
        except SQLAlchemyError as exc:
            raise self._error(f"cannot read table '{table.name}'", exc) from None
        return list(rows.values())

    # --- writing ---------------------------------------------------------------------------

    def apply(self, plan: StorePlan) -> None:
        try:
            with self._conn(write=True) as conn:
                for tp in plan.tables:
                    self._update(conn, tp.table, tp.unlink)
                for tp in plan.tables:
                    self._update(conn, tp.table, tp.update)
                    q = self._q
                    for keys in _chunks(tp.delete):
                        where, params = self._in(tp.table.key, keys)
                        conn.exec_driver_sql(
                            f"DELETE FROM {q(tp.table.name)} WHERE {where}", params
                        )
        except SQLAlchemyError as exc:
            raise self._error("the erasure was rolled back", exc) from None

    def _update(self, conn: Connection, table: DatasetTable, changes: Mapping[Key, Row]) -> None:
        """Rows that get the same values (NULLs): one UPDATE per batch of keys; rows that get
        values of their own (masks): one statement, executed for many rows."""
        q = self._q
        same: dict[tuple[tuple[str, Any], ...], list[Key]] = {}
        own: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for key, values in changes.items():
            if all(v is None for v in values.values()):
                same.setdefault(tuple(sorted(values.items())), []).append(key)
            else:
                cols = tuple(sorted(values))
                own.setdefault(cols, []).append((*(values[c] for c in cols), key))
        for items, keys in same.items():
            sets = ", ".join(f"{q(c)} = NULL" for c, _ in items)
            for chunk in _chunks(keys):
                where, params = self._in(table.key, chunk)
                conn.exec_driver_sql(f"UPDATE {q(table.name)} SET {sets} WHERE {where}", params)
        for cols, rows in own.items():
            sets = ", ".join(f"{q(c)} = {self._mark}" for c in cols)
            conn.exec_driver_sql(
                f"UPDATE {q(table.name)} SET {sets} WHERE {q(table.key)} = {self._mark}", rows
            )

    def coerce_value(self, table: DatasetTable, column: str, value: str) -> Any:
        info = self._columns(table.name).get(column)
        if info is None:
            raise ValueError("the column does not exist in the database")
        kind = info["type"]
        try:
            python_type: type | None = kind.python_type
        except NotImplementedError:
            python_type = None
        text = value.strip()
        if python_type is int:
            if not re.fullmatch(r"[-+]?\d{1,18}", text):
                raise ValueError("a whole number is expected")
            return int(text)
        if python_type in (float, decimal.Decimal):
            try:
                number = decimal.Decimal(text)
            except decimal.InvalidOperation:
                raise ValueError("a number is expected") from None
            if not number.is_finite():
                raise ValueError("a number is expected")
            return number if python_type is decimal.Decimal else float(number)
        if python_type is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError("true or false is expected")
            return text.lower() == "true"
        if python_type in (dt.date, dt.datetime):
            try:
                return python_type.fromisoformat(text)
            except ValueError:
                raise ValueError("a date (YYYY-MM-DD) is expected") from None
        length = getattr(kind, "length", None)
        if isinstance(length, int) and len(value) > length:
            raise ValueError(f"at most {length} characters")
        return value

    def set_value(self, table: DatasetTable, key: Key, column_name: str, value: Any) -> int:
        q = self._q
        try:
            with self._conn(write=True) as conn:
                result = conn.exec_driver_sql(
                    f"UPDATE {q(table.name)} SET {q(column_name)} = {self._mark} "
                    f"WHERE {q(table.key)} = {self._mark}",
                    (value, key),
                )
        except SQLAlchemyError as exc:
            raise self._error(f"cannot update table '{table.name}'", exc) from None
        return int(result.rowcount)

    def _error(self, what: str, exc: SQLAlchemyError) -> StoreError:
        # the driver's message may quote values (personal data): name only the kind of error
        origin = type(getattr(exc, "orig", None) or exc).__name__
        return StoreError(f"datastore '{self.datastore.id}': {what} ({origin})")

    def close(self) -> None:
        self.engine.dispose()
