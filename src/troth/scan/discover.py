"""`troth discover`: find personal data in a database's columns and compare with the dataset
annotations (``datasets.yaml``).

The schema is read with SQLAlchemy's inspector; each text (and integer) column is sampled
with one bounded query for its non-empty values (a column empty in its first rows is still
seen), and every sampled value goes through the detectors of
:mod:`troth.scan.detectors`. A column is classified as the kind most of its non-empty values
agree on. Evidence carries the hit ratio and at most three *masked* examples: a report never
shows a whole value.

Findings: ``undeclared_column`` (personal data in a column the annotations do not name; a
warning for free text, a violation otherwise) and ``category_mismatch`` (a warning: the
column is annotated with a data category whose ``maps_to`` does not cover what was found).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.types import NullType

from troth.errors import TrothError
from troth.policy.datasets import Datasets, Datastore
from troth.policy.model import Policy
from troth.policy.vocabulary import vocabulary
from troth.scan.detectors import DETECTORS, Detector, mask
from troth.scan.errors import ScanError
from troth.scan.suggest import yaml_str

__all__ = [
    "ColumnEvidence",
    "DiscoverFinding",
    "DiscoverReport",
    "choose_store",
    "discover_database",
    "safe_url",
]

MIN_RATIO = 0.5  # share of a column's non-empty sampled values that must agree
MIN_HITS = 2
EXAMPLES = 3
DEFAULT_SAMPLE = 200
MAX_SAMPLE = 10_000
SCAN_ROWS = 100_000  # rows looked through per column for its sample of non-empty values
MAX_JSON = 100_000  # characters of JSON kept as text that are parsed
MAX_LEAVES = 200  # strings looked at in one JSON value
MAX_DEPTH = 20


@dataclass(frozen=True)
class ColumnEvidence:
    """Personal data recognised in one column."""

    table: str
    column: str
    sql_type: str
    kind: str
    label: str
    hits: int
    sampled: int  # non-empty values looked at
    examples: tuple[str, ...]  # masked
    personal_data: str | None

    @property
    def ratio(self) -> float:
        return self.hits / self.sampled if self.sampled else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "type": self.sql_type,
            "kind": self.kind,
            "hits": self.hits,
            "sampled": self.sampled,
            "ratio": round(self.ratio, 3),
            "examples": list(self.examples),
        }

    def evidence(self) -> str:
        return (
            f"{self.label}: {self.hits}/{self.sampled} sampled values ({self.ratio:.0%}), "
            f"e.g. {', '.join(self.examples)}"
        )


@dataclass(frozen=True)
class DiscoverFinding:
    kind: Literal["undeclared_column", "category_mismatch"]
    severity: Literal["violation", "warning"]
    evidence: ColumnEvidence
    message: str
    suggestion: str | None = None

    @property
    def subject(self) -> str:
        return f"{self.evidence.table}.{self.evidence.column}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "evidence": self.evidence.as_dict(),
            "suggestion": self.suggestion,
        }


@dataclass
class DiscoverReport:
    url: str  # without the password
    store: str | None  # the annotated datastore compared with
    tables: int = 0
    columns: int = 0
    evidence: list[ColumnEvidence] = field(default_factory=list)
    findings: list[DiscoverFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said once, not findings

    @property
    def violations(self) -> list[DiscoverFinding]:
        return [f for f in self.findings if f.severity == "violation"]

    def summary(self) -> str:
        against = f"datastore {self.store}" if self.store else "no annotations"
        return (
            f"{self.url}: {self.tables} table(s), {self.columns} column(s) sampled, "
            f"{len(self.evidence)} with personal data, compared with {against} — "
            f"{len(self.violations)} violation(s), "
            f"{len(self.findings) - len(self.violations)} warning(s)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "datastore": self.store,
            "tables": self.tables,
            "columns": self.columns,
            "violations": len(self.violations),
            "notes": self.notes,
            "findings": [f.as_dict() for f in self.findings],
            "personal_data": [e.as_dict() for e in self.evidence],
        }

    def render_text(self) -> str:
        """The report for a terminal or a CI log: findings with their suggestions, then the
        summary."""
        lines: list[str] = []
        for f in self.findings:
            lines.append(f"{f.severity:9} {f.kind:18} {f.message}")
            if f.suggestion:
                lines.extend("    " + line for line in f.suggestion.splitlines())
        lines.extend(f"note      {n}" for n in self.notes)
        lines.append(self.summary())
        return "\n".join(lines)


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<database URL>"


def _driver(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "?"
    return f"{parsed.get_backend_name()}+{parsed.get_driver_name()}"


def _store_url(store: Datastore) -> str | None:
    """The datastore's URL, None when it has none or needs an environment variable not set."""
    try:
        return store.resolved_url()
    except TrothError:
        return None


def _same_database(annotated: str | None, url: str) -> bool:
    """Both URLs name the same database (drivers and passwords aside)."""
    if annotated is None:
        return False
    try:
        a, b = make_url(annotated), make_url(url)
    except ArgumentError:
        return annotated == url
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        return _sqlite_path(a.database) == _sqlite_path(b.database)
    return (a.host, a.port, a.database, a.username) == (b.host, b.port, b.database, b.username)


def _sqlite_path(database: str | None) -> str:
    return str(Path(database).resolve()) if database else ""


def choose_store(datasets: Datasets, url: str, store_id: str | None) -> Datastore:
    """The annotated datastore that describes the database at ``url``."""
    sql = [s for s in datasets.datastores if s.kind != "troth"]
    if store_id is not None:
        found = next((s for s in sql if s.id == store_id), None)
        if found is None:
            raise ScanError(
                f"--store: {datasets.path} has no datastore {store_id!r}; it has "
                + ", ".join(s.id for s in sql)
            )
        return found
    same = [s for s in sql if _same_database(_store_url(s), url)]
    if len(same) == 1:
        return same[0]
    if len(sql) == 1:
        return sql[0]
    raise ScanError(
        f"--store: say which datastore of {datasets.path} this database is: "
        + ", ".join(s.id for s in sql)
    )


def discover_database(
    url: str,
    *,
    policy: Policy | None = None,
    store: Datastore | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> DiscoverReport:
    """Sample every table of the database at ``url`` and compare with ``store``'s annotations."""
    if not 1 <= sample <= MAX_SAMPLE:
        raise ScanError(f"--sample: must be between 1 and {MAX_SAMPLE}, not {sample}")
    shown = safe_url(url)
    try:
        engine = sa.create_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ScanError(f"DATABASE_URL: {shown!r} is not a database URL troth can use") from None
    except ImportError as exc:  # the dialect is known, its driver package is not installed
        driver = _driver(url)
        missing = f" (Python module {exc.name!r})" if exc.name else ""
        raise ScanError(
            f"DATABASE_URL: {shown!r}: driver {driver} is not installed{missing}"
        ) from None
    database = engine.url.database or ""
    if engine.url.get_backend_name() == "sqlite":
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            engine.dispose()
            raise ScanError(
                f"DATABASE_URL: {shown!r} is a new in-memory SQLite database, empty by "
                "definition; give the database file, e.g. sqlite:////srv/app/app.db"
            )
        if not Path(database).is_file():  # never create an empty database
            engine.dispose()
            raise ScanError(f"{shown}: no such database file")
    report = DiscoverReport(shown, store.id if store else None)
    if store is not None and not _same_database(_store_url(store), url):
        annotated = _store_url(store)
        report.notes.append(
            f"the datastore {store.id} is annotated with "
            f"{safe_url(annotated) if annotated else 'no URL'}, not {shown}: check that its "
            "annotations describe this database"
        )
    try:
        _sample_all(engine, report, sample)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ScanError(f"{shown}: cannot read the database: {reason}") from None
    finally:
        engine.dispose()
    report.findings = _compare(report.evidence, policy, store)
    return report


def _sample_all(engine: Engine, report: DiscoverReport, sample: int) -> None:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in sorted(inspector.get_table_names()):
            columns = [
                (c["name"], c["type"])
                for c in inspector.get_columns(table)
                if _kind_of_type(c["type"]) is not None
            ]
            report.tables += 1
            report.columns += len(columns)
            for name, sql_type in columns:
                raw = _sample_column(conn, table, name, sql_type, sample)
                cells = [c for c in (_cell(name, v) for v in raw) if c]
                numeric = _kind_of_type(sql_type) == "integer"
                found = _classify_cells(table, cells, numeric=numeric)
                if found is not None:
                    detector, hits, examples, sampled = found
                    report.evidence.append(
                        ColumnEvidence(
                            table,
                            name,
                            str(sql_type),
                            detector.kind,
                            detector.label,
                            hits,
                            sampled,
                            examples,
                            detector.personal_data,
                        )
                    )


def _sample_column(
    conn: Connection, table: str, name: str, sql_type: Any, sample: int
) -> list[Any]:
    """Up to ``sample`` non-empty values of one column, so that a column empty in its first
    rows is still seen; the rows looked through are bounded (``SCAN_ROWS``) all the same."""
    source = sa.select(sa.column(name)).select_from(sa.table(table)).limit(SCAN_ROWS).subquery()
    value = source.c[name]
    query = sa.select(value).where(value.is_not(None))
    if _kind_of_type(sql_type) == "text" and isinstance(sql_type, sa.String):
        query = query.where(value != "")
    return list(conn.execute(query.limit(sample)).scalars())


def _kind_of_type(sql_type: Any) -> Literal["text", "integer", "json"] | None:
    if isinstance(sql_type, sa.Integer):
        return "integer"
    if isinstance(sql_type, sa.String | NullType):
        return "text"
    if isinstance(sql_type, sa.JSON):
        return "json"
    if type(sql_type).__name__ in ("INET", "CIDR", "CITEXT"):  # PostgreSQL
        return "text"
    return None


Cell = list[tuple[str, str]]  # one sampled value: (field name, text) pairs


def _cell(column: str, value: Any) -> Cell:
    """A sampled value as the strings to look at: itself, or the leaves of a JSON document
    (a JSON column's, or JSON kept as text), each under the key that holds it."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "[") and len(text) <= MAX_JSON:
            try:
                value = json.loads(text)
            except ValueError:
                return [(column, text)]
        else:
            return [(column, text)] if text else []
    if isinstance(value, dict | list):
        leaves: Cell = []
        _leaves(value, column, leaves, 0)
        return leaves
    text = str(value).strip()
    return [(column, text)] if text else []


def _leaves(node: Any, key: str, out: Cell, depth: int) -> None:
    if len(out) >= MAX_LEAVES or depth > MAX_DEPTH:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            _leaves(v, str(k), out, depth + 1)
    elif isinstance(node, list):
        for v in node:
            _leaves(v, key, out, depth + 1)
    elif isinstance(node, str | int) and not isinstance(node, bool):
        text = str(node).strip()
        if text:
            out.append((key, text))


def classify_column(
    table: str, column: str, values: list[str], *, numeric: bool = False
) -> tuple[Detector, int, tuple[str, ...], int] | None:
    """The detector most values agree on, with its hits, masked examples and sample size."""
    return _classify_cells(table, [[(column, v)] for v in values if v], numeric=numeric)


def _classify_cells(
    table: str, cells: list[Cell], *, numeric: bool = False
) -> tuple[Detector, int, tuple[str, ...], int] | None:
    """A value counts for a detector when it, or a leaf of its JSON, matches in a field the
    detector looks at (names only under a key that says it holds one)."""
    if not cells:
        return None
    best: tuple[Detector, int, tuple[str, ...], int] | None = None
    for detector in DETECTORS:
        if numeric and not detector.numeric:
            continue
        hits: list[str] = []
        for cell in cells:
            hit = next(
                (v for f, v in cell if detector.applies(table, f) and detector.matches(v)), None
            )
            if hit is not None:
                hits.append(hit)
        if len(hits) < MIN_HITS or len(hits) / len(cells) < MIN_RATIO:
            continue
        if best is None or len(hits) > best[1]:
            examples = tuple(dict.fromkeys(mask(detector.kind, v) for v in hits))[:EXAMPLES]
            best = (detector, len(hits), examples, len(cells))
    return best


def _compare(
    evidence: Iterable[ColumnEvidence], policy: Policy | None, store: Datastore | None
) -> list[DiscoverFinding]:
    out: list[DiscoverFinding] = []
    for ev in evidence:
        detector = next(d for d in DETECTORS if d.kind == ev.kind)
        table = store.table(ev.table) if store else None
        annotated = table.field(ev.column) if table else None
        if annotated is None or (annotated.category is None and annotated.identity is None):
            where = "" if table or store is None else f" (table {ev.table} is not annotated)"
            out.append(
                DiscoverFinding(
                    "undeclared_column",
                    "violation" if detector.severity == "violation" else "warning",
                    ev,
                    f"{ev.table}.{ev.column} holds {ev.evidence()}; it is not in the dataset "
                    f"annotations{where}",
                    _suggest(ev, policy, store),
                )
            )
            continue
        if policy is None or annotated.category is None or ev.personal_data is None:
            continue
        category = next((c for c in policy.categories if c.id == annotated.category), None)
        if category is not None and not _covers(category.maps_to, ev.personal_data):
            out.append(
                DiscoverFinding(
                    "category_mismatch",
                    "warning",
                    ev,
                    f"{ev.table}.{ev.column} holds {ev.label} ({ev.personal_data}) but its "
                    f"category {category.id} maps to {', '.join(category.maps_to) or 'nothing'}",
                )
            )
    order = {"violation": 0, "warning": 1}
    return sorted(out, key=lambda f: (order[f.severity], f.kind, f.subject))


def _lineage(key: str) -> set[str]:
    """``key`` and every broader personal-data term above it."""
    vocab = vocabulary()
    seen: set[str] = set()
    todo = [key]
    while todo:
        term = vocab.lookup("personal_data", todo.pop())
        if term is None or term.key in seen:
            continue
        seen.add(term.key)
        todo.extend(term.broader)
    return seen


def _covers(maps_to: Iterable[str], detected: str) -> bool:
    detected_line = _lineage(detected)
    for entry in maps_to:
        term = vocabulary().lookup("personal_data", entry)
        if term is None:
            continue
        if term.key in detected_line or detected in _lineage(term.key):
            return True
    return False


def _suggest(ev: ColumnEvidence, policy: Policy | None, store: Datastore | None) -> str:
    category, note = "TODO", "  # a data category of the policy"
    if policy is not None and ev.personal_data is not None:
        for c in policy.categories:
            if _covers(c.maps_to, ev.personal_data):
                category, note = c.id, ""
                break
    head = f"# datasets.yaml, datastore {store.id}:" if store else "# datasets.yaml:"
    return "\n".join(
        [
            head,
            "tables:",
            f"  {yaml_str(ev.table)}:",
            "    fields:",
            f"      {yaml_str(ev.column)}: {{category: {category}}}{note}",
        ]
    )
