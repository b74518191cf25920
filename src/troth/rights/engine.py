"""The rights engine: find a person's data across the declared datastores, export it,
erase it by the declared strategies, correct it, and prove that it is gone.

Discovery walks breadth-first. Each round asks every table once (in batches of
:data:`troth.rights.connectors.BATCH` values) for the rows whose identity fields hold an
identity known so far, or whose reference columns point at a row found so far. An
identity found in a row joins the search only when no one else can hold it there: the
column is the table's key or the live schema keeps it unique (an e-mail finds the
account, the account's id finds its devices, a device id finds threat events recorded
under it, in any datastore), or the annotation says ``follow: true``. A value several
people can share (a phone number, the account id written on a support ticket) is used for
nothing beyond its row: a ticket sent from address X about account Y is found by X's
request (X's own address) and by Y's (it refers to Y's account), but X's request does not
reach Y's account. E-mail identities are searched as given and in lower case.
Only indexed columns are asked (``troth check --connect`` says which are not), so the work
is proportional to the person's rows, never to the size of a table.

The engine does not write the audit log: it returns what it did (:class:`ErasureReport`,
counts and reasons, no identities) and the request lifecycle audits each step with the
subject's keyed hash. troth's own store audits its vault erasure itself.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

from troth.errors import PolicyError
from troth.policy.datasets import DatasetField, Datasets, DatasetTable
from troth.policy.model import Policy
from troth.policy.types import text_for
from troth.rights.connectors import Connector
from troth.rights.types import Identities, Key, Row, StorePlan, TablePlan

__all__ = [
    "Discovery",
    "ErasureProof",
    "ErasureReport",
    "Identities",
    "RightsEngine",
    "TableOutcome",
    "rectifiable",
]

_MASK = "erased-"
EMAIL = "email"  # the identity kind whose values are e-mail addresses


@dataclass
class Discovery:
    """What belongs to a person: every identity found (a superset of those given) and the
    rows per (datastore, table), only the declared columns."""

    identities: dict[str, set[str]]
    rows: dict[tuple[str, str], list[Row]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def is_empty(self) -> bool:
        return self.count() == 0


@dataclass
class TableOutcome:
    """Rows of one table after an erasure: deleted, with a field set null, with a field
    masked, and kept (with the reasons: a 'keep' strategy or a legal hold)."""

    deleted: int = 0
    nulled: int = 0
    masked: int = 0
    kept: int = 0
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "nulled": self.nulled,
            "masked": self.masked,
            "kept": self.kept,
            "reasons": list(self.reasons),
        }


@dataclass
class ErasureReport:
    datastore: str
    tables: dict[str, TableOutcome]

    def total(self, what: str) -> int:
        return sum(int(getattr(t, what)) for t in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "datastore": self.datastore,
            "tables": {name: t.as_dict() for name, t in self.tables.items()},
        }


@dataclass
class ErasureProof:
    """After an erasure: rows that still hold what should be gone (``remaining``; zero
    everywhere is the proof) and rows kept on purpose (``kept``, with reasons)."""

    remaining: dict[tuple[str, str], int]
    kept: dict[tuple[str, str], int]
    reasons: dict[tuple[str, str], list[str]]

    @property
    def proven(self) -> bool:
        return not any(self.remaining.values())


def _variants(kind: str, value: str) -> set[str]:
    """The values to search for: e-mail addresses as given and in lower case (services
    store them either way; the search itself compares exactly)."""
    if kind == EMAIL:
        return {value, value.lower()}
    return {value}


def _normalise(identities: Identities) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for kind, values in identities.items():
        if isinstance(values, str):
            values = [values]
        for value in values:
            text = str(value).strip()
            if text:
                out[kind].update(_variants(kind, text))
    return out


_MASKED = re.compile(re.escape(_MASK) + r"[0-9a-f]{12}")
MaskForm = Literal["mask", "null", "star"]


def _is_masked(value: Any) -> bool:
    """Whether erasure already masked ``value``: only the whole, exact forms count (a
    value like 'er' is someone's data, not a shortened mask)."""
    return isinstance(value, str) and (bool(_MASKED.fullmatch(value)) or value == "*")


def _mask(value: Any, form: MaskForm) -> Any:
    """A stand-in that keeps no part of the value: ``erased-`` and 12 random hex digits
    where the column has room; else NULL, or '*' where the column cannot be NULL."""
    if not isinstance(value, str) or form == "null":
        return None
    if form == "star":
        return "*"
    return _MASK + secrets.token_hex(6)


class RightsEngine:
    def __init__(
        self, policy: Policy, datasets: Datasets, connectors: Mapping[str, Connector]
    ) -> None:
        self.policy = policy
        self.datasets = datasets
        self.connectors = dict(connectors)
        missing = [s.id for s in datasets.datastores if s.id not in self.connectors]
        if missing:
            raise PolicyError(f"no connector open for datastore(s): {', '.join(missing)}")
        self._order = {sid: _erasure_order(c) for sid, c in self.connectors.items()}
        self._unique: dict[tuple[str, str], list[str]] = {}
        self._follow: dict[tuple[str, str], list[DatasetField]] = {}
        self._masks: dict[tuple[str, str, str], MaskForm] = {}

    # --- finding ---------------------------------------------------------------------------

    def discover(
        self, identities: Identities, *, datastores: Collection[str] | None = None
    ) -> Discovery:
        """Everything of the person's in every datastore (or only in ``datastores``)."""
        connectors = {
            sid: c for sid, c in self.connectors.items() if datastores is None or sid in datastores
        }
        with ExitStack() as stack:
            for connector in connectors.values():
                stack.enter_context(connector.session())
            return self._discover(identities, connectors)

    def one_person(self, identities: Identities) -> bool:
        """Whether identities given together lead to one person: searching by one of them
        (in the service's own databases) finds all the others on the person's rows."""
        given = {(kind, v) for kind, values in _normalise(identities).items() for v in values}
        stores = [s.id for s in self.datasets.datastores if s.kind != "troth"]
        for kind, value in sorted(given):
            found = self.discover({kind: [value]}, datastores=stores).identities
            if all(v in found.get(k, ()) for k, v in given):
                return True
        return False

    def _discover(
        self, identities: Identities, connectors: Mapping[str, Connector] | None = None
    ) -> Discovery:
        known = _normalise(identities)
        found: dict[tuple[str, str], dict[Key, Row]] = defaultdict(dict)
        # (store, table, column) -> values already asked for, as text
        asked: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        progress = True
        while progress:
            progress = False
            for sid, connector in (self.connectors if connectors is None else connectors).items():
                for table in connector.tables():
                    where = self._questions(sid, table, known, found, asked)
                    if not where:
                        continue
                    for column, values in where.items():
                        asked[(sid, table.name, column)].update(str(v) for v in values)
                    rows = connector.fetch(table, where)
                    unique = self._unique_columns(sid, connector, table)
                    follow = self._followed(sid, connector, table)
                    bucket = found[(sid, table.name)]
                    for row in rows:
                        key = row.get(table.key)
                        if key in bucket:
                            continue
                        bucket[key] = row
                        progress = True
                        # a unique column (the key, or one the schema keeps unique): asking
                        # the table for this row's value again would find only this row
                        for column in unique:
                            if row.get(column) is not None:
                                asked[(sid, table.name, column)].add(str(row[column]))
                        # a value several people can share (a phone, a ticket's account id)
                        # says nothing about who this person is: it stays with its row
                        for f in follow:
                            value = row.get(f.name)
                            if value is not None and str(value) != "":
                                assert f.identity is not None
                                known[f.identity].update(_variants(f.identity, str(value)))
                    progress = progress or bool(where)
        return Discovery(
            {k: set(v) for k, v in known.items()},
            {k: list(v.values()) for k, v in found.items() if v},
        )

    def _followed(self, sid: str, connector: Connector, table: DatasetTable) -> list[DatasetField]:
        """Identity fields whose values found in a row join the search: those the live
        schema keeps unique (or the table's key), unless the annotation says ``follow``."""
        key = (sid, table.name)
        if key not in self._follow:
            unique = set(self._unique_columns(sid, connector, table))
            self._follow[key] = [
                f
                for f in table.identity_fields()
                if f.follow or (f.follow is None and f.name in unique)
            ]
        return self._follow[key]

    def _unique_columns(self, sid: str, connector: Connector, table: DatasetTable) -> list[str]:
        key = (sid, table.name)
        if key not in self._unique:
            names = [table.key, *(f.name for f in table.identity_fields())]
            self._unique[key] = [
                n for n in dict.fromkeys(names) if n == table.key or connector.unique(table.name, n)
            ]
        return self._unique[key]

    @staticmethod
    def _questions(
        sid: str,
        table: DatasetTable,
        known: Mapping[str, set[str]],
        found: Mapping[tuple[str, str], Mapping[Key, Row]],
        asked: Mapping[tuple[str, str, str], set[str]],
    ) -> dict[str, list[Any]]:
        where: dict[str, list[Any]] = {}
        for f in table.identity_fields():
            assert f.identity is not None
            done = asked.get((sid, table.name, f.name), set())
            new = [v for v in known.get(f.identity, ()) if v not in done]  # text
            if new:
                where[f.name] = sorted(new)
        for ref in table.owning_references():
            targets = found.get((sid, ref.to_table), {})
            done = asked.get((sid, table.name, ref.column), set())
            values = {r.get(ref.to_column) for r in targets.values()}
            new = [v for v in values if v is not None and str(v) not in done]
            if new:
                where.setdefault(ref.column, [])
                where[ref.column] = list(dict.fromkeys([*where[ref.column], *new]))
        return where

    def access(self, identities: Identities) -> Discovery:
        return self.discover(identities)

    def package(self, found: Discovery, language: str) -> bytes:
        from troth.rights.package import build_package

        return build_package(self.policy, self.connectors, found, language)

    # --- erasing ---------------------------------------------------------------------------

    def erase(
        self,
        identities: Identities,
        datastore: str,
        *,
        holds: Collection[tuple[str, str]] = (),
        actor: str,
    ) -> ErasureReport:
        """Erase what ``datastore`` holds about the person, by the declared strategies, in
        one transaction; idempotent (a second run finds nothing left to change).

        Pass every identity the request found (``discover(...).identities``) so that a
        datastore erased after another can still be searched by ids found there."""
        connector = self._connector(datastore)
        # found, planned and applied in the same transaction: what is erased is what was found
        with connector.session(write=True):
            found = self.discover(identities)
            plan, report = self._plan(datastore, connector, found, holds)
            plan.actor = actor
            plan.identities = {k: frozenset(v) for k, v in found.identities.items()}
            self._unlink_others(connector, plan, found)
            connector.apply(plan)
        return report

    @staticmethod
    def _unlink_others(connector: Connector, plan: StorePlan, found: Discovery) -> None:
        """Other people's rows that only point at a row about to be deleted (a reference
        declared with ``erasure: null``) lose the link, in the same transaction."""
        plans = {tp.table.name: tp for tp in plan.tables}
        for tp in plan.tables:
            for link in tp.table.links():
                parent = plans.get(link.to_table)
                if parent is None or not parent.delete:
                    continue
                doomed = set(parent.delete)
                pkey = parent.table.key
                values = [
                    r[link.to_column]
                    for r in found.rows.get((plan.datastore, link.to_table), [])
                    if r[pkey] in doomed and r.get(link.to_column) is not None
                ]
                if not values:
                    continue
                for row in connector.fetch(tp.table, {link.column: values}):
                    tp.unlink.setdefault(row[tp.table.key], {})[link.column] = None

    def _connector(self, datastore: str) -> Connector:
        try:
            return self.connectors[datastore]
        except KeyError:
            raise PolicyError(f"no datastore '{datastore}' is declared") from None

    def _reason(self, text: str | dict[str, str] | None) -> str:
        return text_for(text, self.policy.default_language, self.policy.default_language) or ""

    def _hold(
        self, categories: Iterable[str | None], holds: Collection[tuple[str, str]]
    ) -> str | None:
        cats = {c for c in categories if c}
        for scope, reason in holds:
            if scope == "*" or scope in cats:
                return f"legal hold: {reason}"
        return None

    def _plan(
        self,
        sid: str,
        connector: Connector,
        found: Discovery,
        holds: Collection[tuple[str, str]],
    ) -> tuple[StorePlan, ErasureReport]:
        order, cut = self._order[sid]
        plans: dict[str, TablePlan] = {}
        outcomes: dict[str, TableOutcome] = {}
        # rows kept whole (delete tables under a hold, or referred to by kept rows): reasons
        kept_rows: dict[str, dict[Key, list[str]]] = {}
        rows_of = {t.name: found.rows.get((sid, t.name), []) for t in order}
        for table in order:
            rows = rows_of[table.name]
            tp = plans[table.name] = TablePlan(table)
            outcome = outcomes[table.name] = TableOutcome()
            kept_rows[table.name] = {}
            if table.erasure == "delete":
                held = self._hold((f.category for f in table.fields), holds)
                for row in rows:
                    if held:
                        kept_rows[table.name][row[table.key]] = [held]
                    else:
                        tp.delete.append(row[table.key])
                continue
            form = functools.partial(self._mask_form, sid, connector, table)
            for row in rows:
                changes, kept_reasons, nulled, masked = self._row_changes(table, row, holds, form)
                if changes:
                    tp.update[row[table.key]] = changes
                outcome.nulled += nulled
                outcome.masked += masked
                if kept_reasons:
                    kept_rows[table.name][row[table.key]] = kept_reasons
        self._keep_what_kept_rows_refer_to(order, rows_of, plans, kept_rows)
        report = ErasureReport(sid, {})
        for table in order:
            tp, outcome = plans[table.name], outcomes[table.name]
            outcome.deleted = len(tp.delete)
            outcome.kept = len(kept_rows[table.name])
            reasons = dict.fromkeys(r for rs in kept_rows[table.name].values() for r in rs)
            outcome.reasons = list(reasons)
            tp.held = bool(rows_of[table.name]) and not tp.delete and not tp.update
            if rows_of[table.name]:
                report.tables[table.name] = outcome
        # cut reference cycles: null the cut columns of rows that are about to be deleted
        for child, column in cut:
            tp = plans[child]
            doomed = set(tp.delete)
            for row in rows_of[child]:
                key = row[tp.table.key]
                if key in doomed and row.get(column) is not None:
                    tp.unlink.setdefault(key, {})[column] = None
        return StorePlan(sid, [plans[t.name] for t in order]), report

    @staticmethod
    def _keep_what_kept_rows_refer_to(
        order: Sequence[DatasetTable],
        rows_of: Mapping[str, Sequence[Row]],
        plans: Mapping[str, TablePlan],
        kept_rows: dict[str, dict[Key, list[str]]],
    ) -> None:
        """A row that stays and still refers to a row planned for deletion keeps that row
        too (the database would refuse the delete, and the kept row would lose its context);
        the kept row's reasons carry over, up the references, until nothing changes."""
        doomed = {name: set(tp.delete) for name, tp in plans.items()}
        # (table, column) -> value -> keys of the rows planned for deletion holding it
        index: dict[tuple[str, str], dict[Any, list[Key]]] = {}

        def doomed_by(to_table: str, to_column: str) -> dict[Any, list[Key]]:
            where = (to_table, to_column)
            if where not in index:
                pkey = plans[to_table].table.key
                by_value: dict[Any, list[Key]] = defaultdict(list)
                for prow in rows_of[to_table]:
                    if prow[pkey] in doomed[to_table] and prow.get(to_column) is not None:
                        by_value[prow[to_column]].append(prow[pkey])
                index[where] = by_value
            return index[where]

        changed = True
        while changed:
            changed = False
            for table in order:
                tp = plans[table.name]
                deleted = doomed[table.name]
                for row in rows_of[table.name]:
                    key = row[table.key]
                    if key in deleted:
                        continue
                    reasons = kept_rows[table.name].get(key) or [
                        f"referred to by kept rows of {table.name}"
                    ]
                    for ref in table.owning_references():
                        if ref.to_table not in plans or ref.to_table == table.name:
                            continue
                        if ref.column in tp.update.get(key, {}):
                            continue  # the link itself is erased
                        value = row.get(ref.column)
                        if value is None or not doomed[ref.to_table]:
                            continue
                        spared = doomed_by(ref.to_table, ref.to_column).pop(value, [])
                        for pkey in spared:
                            if pkey in doomed[ref.to_table]:
                                doomed[ref.to_table].discard(pkey)
                                kept_rows[ref.to_table][pkey] = list(reasons)
                                changed = True
        for name, tp in plans.items():
            if len(tp.delete) != len(doomed[name]):
                tp.delete = [k for k in tp.delete if k in doomed[name]]

    def _mask_form(
        self, sid: str, connector: Connector, table: DatasetTable, f: DatasetField
    ) -> MaskForm:
        key = (sid, table.name, f.name)
        if key not in self._masks:
            try:
                connector.coerce_value(table, f.name, _MASK + "0" * 12)
                form: MaskForm = "mask"
            except ValueError:  # too short for a whole mask, or not text
                form = "null" if connector.nullable(table.name, f.name) else "star"
            self._masks[key] = form
        return self._masks[key]

    def _row_changes(
        self,
        table: DatasetTable,
        row: Row,
        holds: Collection[tuple[str, str]],
        mask_form: Callable[[DatasetField], MaskForm],
    ) -> tuple[dict[str, Any], list[str], int, int]:
        changes: dict[str, Any] = {}
        kept: list[str] = []
        nulled = masked = 0
        for f in table.fields:
            if f.name == table.key:
                continue
            value = row.get(f.name)
            strategy = table.strategy(f)
            held = self._hold([f.category], holds)
            if held:
                if value is not None:
                    kept.append(held)
                continue
            if strategy == "keep":
                if value is not None:
                    kept.append(self._reason(f.reason or table.reason))
            elif strategy == "null" and value is not None:
                changes[f.name] = None
                nulled = 1
            elif strategy == "mask" and value is not None and not _is_masked(value):
                changes[f.name] = _mask(value, mask_form(f))
                masked = 1
        return changes, kept, nulled, masked

    # --- correcting ------------------------------------------------------------------------

    def rectify(
        self,
        identities: Identities,
        datastore: str,
        table: str,
        field: str,
        value: str,
        *,
        actor: str,
    ) -> int:
        """Set a declared field of the person's rows in ``table``; returns rows changed.
        Identity fields, keys and reference columns are refused (they are how the person
        and their rows are found, not facts about them)."""
        connector = self._connector(datastore)
        declared = {t.name: t for t in connector.tables()}
        t = declared.get(table)
        if t is None:
            raise PolicyError(f"table '{table}' is not declared in datastore '{datastore}'")
        f = t.field(field)
        links = field == t.key or any(r.column == field for r in t.references)
        if f is None and not links:
            raise PolicyError(f"field '{field}' is not declared in table '{table}'")
        if links or (f is not None and f.identity):
            raise PolicyError(
                f"field '{field}' of table '{table}' identifies the person or links rows; "
                "it cannot be rectified through a request"
            )
        own_store = self.datasets.store(datastore).kind == "troth"  # its records refuse below
        if not own_store and not rectifiable(t, field):
            raise PolicyError(
                f"field '{field}' of table '{table}' is not open to correction (it is kept "
                "as recorded, or the annotations do not say 'rectify: true')"
            )
        stored = self.coerce_value(datastore, table, field, value)
        found = self.discover(identities)
        changed = 0
        for row in found.rows.get((datastore, table), []):
            if row.get(field) != stored:
                changed += connector.set_value(t, row[t.key], field, stored)
        return changed

    def coerce_value(self, datastore: str, table: str, field: str, value: str) -> Any:
        """The correction ``value`` as the column stores it; raises PolicyError naming the
        field (never the value) when the column cannot take it."""
        connector = self._connector(datastore)
        t = next((x for x in connector.tables() if x.name == table), None)
        if t is None:
            raise PolicyError(f"table '{table}' is not declared in datastore '{datastore}'")
        try:
            return connector.coerce_value(t, field, value)
        except ValueError as exc:
            raise PolicyError(f"{datastore}.{table}.{field}: {exc}") from None

    # --- proving ---------------------------------------------------------------------------

    def prove_erasure(
        self, identities: Identities, *, holds: Collection[tuple[str, str]] = ()
    ) -> ErasureProof:
        """Re-query every declared table for every identity: rows that an erasure would
        still change (``remaining``) and rows kept on purpose (``kept``, with reasons)."""
        found = self.discover(identities)
        remaining: dict[tuple[str, str], int] = {}
        kept: dict[tuple[str, str], int] = {}
        reasons: dict[tuple[str, str], list[str]] = {}
        for sid, connector in self.connectors.items():
            plan, report = self._plan(sid, connector, found, holds)
            for tp in plan.tables:
                where = (sid, tp.table.name)
                remaining[where] = len(set(tp.delete) | set(tp.update))
                outcome = report.tables.get(tp.table.name)
                if outcome is not None and outcome.kept:
                    kept[where] = outcome.kept
                    reasons[where] = list(outcome.reasons)
        return ErasureProof(remaining, kept, reasons)

    def verify_erasure(
        self, identities: Identities, *, holds: Collection[tuple[str, str]] = ()
    ) -> dict[tuple[str, str], int]:
        """Rows remaining per (datastore, table): zero everywhere proves the erasure."""
        return self.prove_erasure(identities, holds=holds).remaining


def rectifiable(table: DatasetTable, name: str) -> bool:
    """Whether a request may correct ``table.name``: the annotations open it to correction
    (``rectify: true``), and it is no key, identity or reference (those find the person
    rather than describe them) nor a field erasure keeps (records kept by law stay as
    recorded)."""
    f = table.field(name)
    if f is None or not f.rectify or f.identity or name == table.key:
        return False
    if any(r.column == name for r in table.references):
        return False
    return table.strategy(f) != "keep"


def _erasure_order(connector: Connector) -> tuple[list[DatasetTable], list[tuple[str, str]]]:
    """Tables so that rows referring to others are erased before the rows they refer to;
    where references form a cycle, one reference column (a nullable one, if any) is cut:
    it is set to NULL on the rows about to be deleted, before anything is deleted."""
    tables = list(connector.tables())
    names = {t.name for t in tables}
    # parent -> children referring to it (self references need no order)
    children: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for t in tables:
        for ref in t.owning_references():
            if ref.to_table in names and ref.to_table != t.name:
                children[ref.to_table].append((t.name, ref.column))
    by_name = {t.name: t for t in tables}
    remaining = [t.name for t in tables]
    done: set[str] = set()
    order: list[DatasetTable] = []
    cut: list[tuple[str, str]] = []

    def ready(name: str) -> bool:
        return all(c in done or c == name for c, _ in children[name])

    while remaining:
        pick = next((n for n in remaining if ready(n)), None)
        if pick is None:  # a cycle: erase first a table whose waiting referrers can be cut

            def blockers(name: str) -> Sequence[tuple[str, str]]:
                return [(c, col) for c, col in children[name] if c not in done and c != name]

            pick = next(
                (n for n in remaining if all(connector.nullable(c, col) for c, col in blockers(n))),
                remaining[0],
            )
            cut.extend(blockers(pick))
        remaining.remove(pick)
        done.add(pick)
        order.append(by_name[pick])
    return order, cut
