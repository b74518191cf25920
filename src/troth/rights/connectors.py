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

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine, column, create_engine, delete, event, inspect, or_, select, update
from sqlalchemy import table as sql_table
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

BATCH = 500  # values per IN (...) list: one query per table per batch


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

    def apply(self, plan: StorePlan) -> None:
        """Carry out an erasure plan in ONE transaction: all of it, or nothing."""
        ...

    def set_value(self, table: DatasetTable, key: Key, column: str, value: Any) -> int:
        """Set one field of one row; returns the number of rows changed."""
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
    engine = create_engine(parsed, pool_size=2, max_overflow=2, pool_recycle=1800)
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def _chunks(values: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@register("sqlite", "postgresql", "mysql")
class SqlConnector:
    """A service database: the tables and columns the annotations declare, nothing else."""

    def __init__(self, datastore: Datastore, url: str | None, _troth: TrothParts | None) -> None:
        self.datastore = datastore
        self.engine = _engine_for(datastore, url)
        self._types: dict[str, dict[str, Any]] = {}

    def tables(self) -> Sequence[DatasetTable]:
        return self.datastore.tables

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

    def _coerce(self, table: str, name: str, values: Sequence[Any]) -> list[Any]:
        """Identities arrive as text; an integer column is asked for integers."""
        info = self._columns(table).get(name)
        try:
            wants_int = info is not None and info["type"].python_type is int
        except NotImplementedError:
            wants_int = False
        out: list[Any] = []
        for value in values:
            if wants_int and not isinstance(value, int):
                text = str(value).strip()
                if not text.lstrip("-").isdigit():
                    continue  # cannot match an integer column
                value = int(text)
            out.append(value)
        return list(dict.fromkeys(out))

    def _table(self, table: DatasetTable) -> Any:
        return sql_table(table.name, *(column(c) for c in table.columns()))

    def fetch(self, table: DatasetTable, where: Mapping[str, Sequence[Any]]) -> list[Row]:
        t = self._table(table)
        wanted = {name: self._coerce(table.name, name, vals) for name, vals in where.items()}
        wanted = {name: vals for name, vals in wanted.items() if vals}
        if not wanted:
            return []
        rows: dict[Any, Row] = {}
        longest = max(len(v) for v in wanted.values())
        try:
            with self.engine.connect() as conn:
                for start in range(0, longest, BATCH):
                    terms = [
                        t.c[name].in_(vals[start : start + BATCH])
                        for name, vals in wanted.items()
                        if vals[start : start + BATCH]
                    ]
                    for row in conn.execute(select(t).where(or_(*terms))).mappings():
                        rows[row[table.key]] = dict(row)
        except SQLAlchemyError as exc:
            raise self._error(f"cannot read table '{table.name}'", exc) from None
        return list(rows.values())

    def apply(self, plan: StorePlan) -> None:
        try:
            with self.engine.begin() as conn:
                for tp in plan.tables:
                    t = self._table(tp.table)
                    for key, values in tp.unlink.items():
                        conn.execute(update(t).where(t.c[tp.table.key] == key).values(values))
                for tp in plan.tables:
                    t = self._table(tp.table)
                    for key, values in tp.update.items():
                        conn.execute(update(t).where(t.c[tp.table.key] == key).values(values))
                    for keys in _chunks(tp.delete):
                        conn.execute(delete(t).where(t.c[tp.table.key].in_(keys)))
        except SQLAlchemyError as exc:
            raise self._error("the erasure was rolled back", exc) from None

    def set_value(self, table: DatasetTable, key: Key, column_name: str, value: Any) -> int:
        t = self._table(table)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(t).where(t.c[table.key] == key).values({column_name: value})
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
