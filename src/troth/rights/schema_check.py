"""``troth check --connect``: the dataset annotations against the live schemas.

For every SQL datastore: the declared tables and columns exist, and every column the
rights engine searches by (identity fields and reference columns) leads an index, a
unique constraint or the primary key — else each request would scan the table; and every
foreign key of the live schema that points into a declared table is declared as a
reference — else erasing the rows it points at fails (or, worse, half-succeeds). Findings
read like lint findings, at the place in the annotations file (``file:LINE:COL``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from sqlalchemy import inspect
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.exc import SQLAlchemyError

from troth.errors import StoreError
from troth.policy.datasets import Datasets, DatasetTable, Datastore
from troth.policy.lint import Finding
from troth.rights.connectors import SqlConnector

__all__ = ["check_schemas"]


def _finding(
    datasets: Datasets,
    code: str,
    message: str,
    store: str,
    table: str | None = None,
    column: str | None = None,
    *,
    reference: bool = False,
) -> Finding:
    loc: tuple[str | int, ...] = ("datastores", store, *(x for x in (table, column) if x))
    return Finding(
        "error", code, loc, message, datasets.location(store, table, column, reference=reference)
    )


def check_schemas(
    datasets: Datasets,
    *,
    urls: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Findings for every SQL datastore (troth's own store is troth's to keep right)."""
    findings: list[Finding] = []
    for store in datasets.datastores:
        if store.kind == "troth":
            continue
        findings += _check_store(datasets, store, urls, env)
    return findings


def _check_store(
    datasets: Datasets,
    store: Datastore,
    urls: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
) -> list[Finding]:
    try:
        url = (urls or {}).get(store.id) or store.resolved_url(env)
        connector = SqlConnector(store, url, None)
    except StoreError as exc:
        return [_finding(datasets, "R001", str(exc), store.id)]
    try:
        inspector = inspect(connector.engine)
        existing = set(inspector.get_table_names())
    except SQLAlchemyError as exc:
        connector.close()
        origin = type(getattr(exc, "orig", None) or exc).__name__
        message = f"cannot connect to datastore '{store.id}' ({origin})"
        return [_finding(datasets, "R001", message, store.id)]
    findings: list[Finding] = []
    try:
        for table in store.tables:
            if table.name not in existing:
                close = difflib.get_close_matches(table.name, sorted(existing), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                findings.append(
                    _finding(
                        datasets,
                        "R002",
                        f"table '{table.name}' does not exist in datastore '{store.id}'{hint}",
                        store.id,
                        table.name,
                    )
                )
                continue
            findings += _check_table(datasets, store, table, inspector)
        findings += _check_foreign_keys(datasets, store, inspector, existing)
    finally:
        connector.close()
    return findings


def _check_table(
    datasets: Datasets, store: Datastore, table: DatasetTable, inspector: Inspector
) -> list[Finding]:
    columns = {c["name"] for c in inspector.get_columns(table.name)}
    findings: list[Finding] = []
    for name in table.columns():
        if name not in columns:
            close = difflib.get_close_matches(name, sorted(columns), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            findings.append(
                _finding(
                    datasets,
                    "R003",
                    f"column '{name}' does not exist in table '{table.name}'{hint}",
                    store.id,
                    table.name,
                    name,
                )
            )
    leading: set[str] = set()
    pk = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
    if pk:
        leading.add(pk[0])
    # SQLite: the indexes behind UNIQUE columns are "auto indexes", listed only on request
    for index in inspector.get_indexes(table.name, include_auto_indexes=True):
        cols = index.get("column_names") or []
        if cols and cols[0]:
            leading.add(str(cols[0]))
    for unique in inspector.get_unique_constraints(table.name):
        names = unique.get("column_names") or []
        if names:
            leading.add(names[0])
    searched = {f.name: "identity" for f in table.identity_fields()}
    for ref in table.references:
        searched.setdefault(ref.column, "reference")
    for name, why in searched.items():
        if name in columns and name not in leading:
            code = "R004" if why == "identity" else "R005"
            findings.append(
                _finding(
                    datasets,
                    code,
                    f"{why} column '{table.name}.{name}' has no index: every data subject "
                    f"request would scan the table (CREATE INDEX ix_{table.name}_{name} ON "
                    f"{table.name} ({name}))",
                    store.id,
                    table.name,
                    name,
                    reference=why == "reference",
                )
            )
    return findings


def _check_foreign_keys(
    datasets: Datasets, store: Datastore, inspector: Inspector, existing: set[str]
) -> list[Finding]:
    """R006: a live foreign key into a declared table that the annotations do not declare
    (at the referring table if it is declared, else at the table referred to). R007: a
    reference to someone else's row (``erasure: null``) on a column that cannot be NULL."""
    declared = {t.name: t for t in store.tables}
    findings: list[Finding] = []
    try:
        for name in sorted(existing):
            table = declared.get(name)
            for fk in inspector.get_foreign_keys(name):
                target = fk.get("referred_table")
                columns = fk.get("constrained_columns") or []
                if target not in declared or not columns:
                    continue
                column = columns[0]
                ref = (
                    next((r for r in table.references if r.column == column), None)
                    if table
                    else None
                )
                if ref is not None:
                    if not ref.owns and _not_null(inspector, name, column):
                        findings.append(
                            _finding(
                                datasets,
                                "R007",
                                f"reference '{name}.{column}' is declared with erasure null, "
                                "but the column cannot be NULL",
                                store.id,
                                name,
                                column,
                                reference=True,
                            )
                        )
                    continue
                to = f"{target}.{(fk.get('referred_columns') or ['id'])[0]}"
                message = (
                    f"foreign key '{name}.{column}' -> '{to}' is not declared as a reference: "
                    f"erasing rows of '{target}' would fail. Declare it in the references of "
                    f"'{name}': '{column}: {to}' if its rows belong to the same person, or "
                    f"'{column}: {{to: {to}, erasure: \"null\"}}' if they are someone else's"
                )
                where = name if table is not None else target
                findings.append(_finding(datasets, "R006", message, store.id, where))
    except SQLAlchemyError as exc:
        origin = type(getattr(exc, "orig", None) or exc).__name__
        message = f"cannot read the foreign keys of datastore '{store.id}' ({origin})"
        findings.append(_finding(datasets, "R001", message, store.id))
    return findings


def _not_null(inspector: Inspector, table: str, column: str) -> bool:
    info = next((c for c in inspector.get_columns(table) if c["name"] == column), None)
    return info is not None and not info.get("nullable", True)
