"""Dataset annotations: where a service keeps personal data, and what to do with it on request.

``datasets.yaml`` sits beside ``policy.yaml``. For each connected datastore it names the
tables and fields that hold personal data, the policy's data category of each field, the
fields that identify a person (an *identity kind*: e-mail, account id, device id, ...), the
references between tables, and how each is erased::

    troth: 1
    identities: [email, account_id, device_id]
    datastores:
      - id: lumen
        kind: postgresql
        url: ${LUMEN_DATABASE_URL}          # credentials come from the environment
        tables:
          accounts:
            key: id
            erasure: delete
            fields:
              id: {identity: account_id}
              email: {category: account, identity: email}
          invoices:
            erasure: keep
            reason: Invoices are kept ten years (tax law).
            fields:
              billing_address: {category: billing}
            references:
              account_id: accounts.id         # invoices.account_id -> accounts.id
      - id: troth
        kind: troth                           # troth's own consent, tracking and vault stores
        subjects: [account_id]                # identity kinds whose values are troth subjects

A reference ``column: table.column`` says that a row of this table belongs to whoever the
referenced row belongs to: the rights engine walks references from the referenced rows to
the rows that refer to them. A reference to someone else's row (a prospect's
``referred_by``) is written ``column: {to: table.column, erasure: "null"}``: such rows are
not the person's, and erasing the referenced row sets the column to NULL.

An identity found in a row joins the search only if the live schema keeps its column
unique (or it is the key); ``follow: true`` on the field follows it anyway, ``follow:
false`` never. A field a data subject request may correct says ``rectify: true``.

Erasure strategies: ``delete`` the row, set the field to ``null``, ``mask`` it, or ``keep``
it with a stated ``reason``. A table's ``erasure`` is the default of its fields; in a table
whose rows are deleted the fields carry no strategy of their own.

Pure: reading the file is the only I/O. Every problem reads ``file:LINE:COL: message``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from troth.errors import Location, PolicyFileError, Problem
from troth.policy.loader import (
    SourceMap,
    compose_mapping,
    read_limited,
    validation_problems,
)
from troth.policy.model import Policy
from troth.policy.types import Identifier, Text, quote

__all__ = [
    "DATASTORE_KINDS",
    "STRATEGIES",
    "DatasetField",
    "DatasetTable",
    "Datasets",
    "Datastore",
    "ErasureStrategy",
    "IdentityKind",
    "Reference",
    "StoreKind",
    "datasets_beside",
    "expand_url",
    "load_datasets",
    "parse_datasets",
]

IdentityKind = str


def datasets_beside(policy_path: Path | None) -> Path | None:
    """``datasets.yaml`` beside the policy file, if there is one (the default everywhere)."""
    if policy_path is None:
        return None
    beside = policy_path.parent / "datasets.yaml"
    return beside if beside.is_file() else None


ErasureStrategy = Literal["delete", "null", "mask", "keep"]
StoreKind = Literal["sqlite", "postgresql", "mysql", "troth"]
STRATEGIES: tuple[str, ...] = ("delete", "null", "mask", "keep")
DATASTORE_KINDS: tuple[str, ...] = ("sqlite", "postgresql", "mysql", "troth")

_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _sql_name(value: str) -> str:
    if not _SQL_NAME.match(value):
        raise ValueError(
            f"{quote(value)} is not a plain table or column name (letters, digits and '_', "
            "starting with a letter or '_')"
        )
    return value


SqlName = Annotated[str, AfterValidator(_sql_name)]


# --- the public model ----------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetField:
    name: str
    category: str | None = None
    identity: IdentityKind | None = None
    erasure: ErasureStrategy | None = None
    reason: str | dict[str, str] | None = None
    # whether a value found in this field joins the search for the person: None = only if
    # the live schema keeps the column unique (no one else can hold the value there)
    follow: bool | None = None
    rectify: bool = False  # a request may correct it (opt-in)


@dataclass(frozen=True)
class Reference:
    """``column`` of the declaring table refers to ``to_table.to_column``.

    ``erasure`` None: the row belongs to whoever the referenced row belongs to. ``"null"``:
    the row is someone else's and only points at the person's row (a prospect referred by
    an account): it is never part of the person's data, and erasing the referenced row sets
    ``column`` to NULL."""

    column: str
    to_table: str
    to_column: str
    erasure: Literal["null"] | None = None

    @property
    def owns(self) -> bool:
        return self.erasure is None


@dataclass(frozen=True)
class DatasetTable:
    name: str
    key: str
    erasure: ErasureStrategy
    reason: str | dict[str, str] | None
    fields: list[DatasetField]
    references: list[Reference]

    def field(self, name: str) -> DatasetField | None:
        return next((f for f in self.fields if f.name == name), None)

    def strategy(self, f: DatasetField) -> ErasureStrategy:
        """What erasure does to ``f``: its own strategy, else the table's."""
        if self.erasure == "delete":
            return "delete"
        return f.erasure or self.erasure

    def identity_fields(self) -> list[DatasetField]:
        return [f for f in self.fields if f.identity]

    def owning_references(self) -> list[Reference]:
        """References saying this table's rows belong to the referenced rows' person."""
        return [r for r in self.references if r.owns]

    def links(self) -> list[Reference]:
        """References to other people's rows, set to NULL when those rows are erased."""
        return [r for r in self.references if not r.owns]

    def columns(self) -> list[str]:
        """Every column the annotations name: key, fields, reference columns (in order)."""
        seen = dict.fromkeys(
            [self.key, *(f.name for f in self.fields), *(r.column for r in self.references)]
        )
        return list(seen)


@dataclass(frozen=True)
class Datastore:
    id: str
    kind: StoreKind
    url: str | None
    tables: list[DatasetTable]
    subjects: list[IdentityKind] = field(default_factory=list)  # kind troth only

    def table(self, name: str) -> DatasetTable | None:
        return next((t for t in self.tables if t.name == name), None)

    def resolved_url(self, env: Mapping[str, str] | None = None) -> str | None:
        return None if self.url is None else expand_url(self.url, env)


@dataclass(frozen=True)
class Datasets:
    troth: Literal[1]
    identities: list[IdentityKind]
    datastores: list[Datastore]
    path: str = "<datasets>"
    source: SourceMap | None = field(default=None, compare=False, repr=False)

    def store(self, id: str) -> Datastore:
        for s in self.datastores:
            if s.id == id:
                return s
        raise KeyError(id)

    def identity_kinds(self) -> list[IdentityKind]:
        return list(self.identities)

    def location(
        self,
        store: str,
        table: str | None = None,
        column: str | None = None,
        *,
        reference: bool = False,
    ) -> Location:
        """Where a datastore, table or column was declared (as a field, or as a reference
        column: ``reference`` prefers that place when it is both)."""
        if self.source is None:
            return Location(self.path, 1, 1)
        index = next((i for i, s in enumerate(self.datastores) if s.id == store), 0)
        loc: tuple[str | int, ...] = ("datastores", index)
        if table is not None:
            loc = (*loc, "tables", table)
            if column is not None:
                t = self.datastores[index].table(table)
                if reference and t is not None and any(r.column == column for r in t.references):
                    return self.source.location((*loc, "references", column), key=True)
                if t is not None and t.field(column) is not None:
                    return self.source.location((*loc, "fields", column), key=True)
                if t is not None and any(r.column == column for r in t.references):
                    return self.source.location((*loc, "references", column), key=True)
                if (*loc, "key") in self.source.values:
                    return self.source.location((*loc, "key"))
            return self.source.location(loc, key=True)
        return self.source.location(loc)


def expand_url(url: str, env: Mapping[str, str] | None = None) -> str:
    """``${NAME}`` and ``${NAME:-default}`` from the environment; an unset variable without a
    default is an error naming the variable (never its value)."""
    values = os.environ if env is None else env

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = values.get(name)
        if value is None or value == "":
            if default is None:
                raise KeyError(name)
            return default
        return value

    try:
        return _ENV.sub(one, url)
    except KeyError as exc:
        from troth.errors import StoreError

        raise StoreError(
            f"the datastore URL needs the environment variable {exc.args[0]}, which is not set"
        ) from None


# --- the file's shape (validated with pydantic, then checked against the policy) -----------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _FieldSpec(_Model):
    category: Identifier | None = None
    identity: Identifier | None = None
    erasure: ErasureStrategy | None = None
    reason: Text | None = None
    follow: bool | None = None
    rectify: bool = False


class _LinkSpec(_Model):
    to: str
    erasure: Literal["null"]


class _TableSpec(_Model):
    key: SqlName = "id"
    erasure: ErasureStrategy = "delete"
    reason: Text | None = None
    fields: dict[SqlName, _FieldSpec] = Field(default_factory=dict)
    references: dict[SqlName, str | _LinkSpec] = Field(default_factory=dict)


class _StoreSpec(_Model):
    id: Identifier
    kind: StoreKind
    url: str | None = None
    tables: dict[SqlName, _TableSpec] = Field(default_factory=dict)
    subjects: list[Identifier] = Field(default_factory=list)


class _DatasetsSpec(_Model):
    troth: Literal[1]
    identities: list[Identifier] = Field(min_length=1)
    datastores: list[_StoreSpec] = Field(min_length=1)


# --- loading ---------------------------------------------------------------------------------


def load_datasets(path: str | Path, policy: Policy) -> Datasets:
    """Read and validate an annotations file against ``policy``; raises PolicyFileError."""
    return parse_datasets(read_limited(path), policy, str(path))


def parse_datasets(data: bytes | str, policy: Policy, name: str = "<datasets>") -> Datasets:
    raw, source = compose_mapping(data, name)
    try:
        spec = _DatasetsSpec.model_validate(raw)
    except ValidationError as exc:
        raise PolicyFileError(validation_problems(exc, source, _DatasetsSpec)) from None
    problems = _Checker(spec, policy, source).problems()
    if problems:
        raise PolicyFileError(problems[:50])
    return _build(spec, name, source)


_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
# user:password@ in a URL, where the password is not a ${VARIABLE}
_CREDENTIAL = re.compile(r"^[A-Za-z0-9+.-]+://[^/@]*:(?!\$\{[^}]*\}@)[^/@]+@")
# a password, passphrase or key in the query (?password=..., &sslpassword=...), not a ${VARIABLE}
_QUERY_SECRET = re.compile(
    r"[?&][A-Za-z_]*(?:password|passwd|pwd|passphrase|secret|token|sslkey)[A-Za-z_]*"
    r"=(?!\$\{[^}]*\}(?:&|$))[^&]+",
    re.IGNORECASE,
)


def _has_credentials(url: str) -> bool:
    return bool(_CREDENTIAL.match(url) or _QUERY_SECRET.search(url))


class _Checker:
    def __init__(self, spec: _DatasetsSpec, policy: Policy, source: SourceMap) -> None:
        self.spec = spec
        self.source = source
        self.categories = [c.id for c in policy.categories]
        self.out: list[Problem] = []

    def add(self, loc: tuple[str | int, ...], message: str, *, key: bool = False) -> None:
        self.out.append(Problem(self.source.location(loc, key=key), message))

    def problems(self) -> list[Problem]:
        identities = self.spec.identities
        for i, kind in enumerate(identities):
            if kind in identities[:i]:
                self.add(("identities", i), f"identity kind {quote(kind)} is listed twice")
        seen_ids: set[str] = set()
        troth_stores = 0
        for s, store in enumerate(self.spec.datastores):
            loc: tuple[str | int, ...] = ("datastores", s)
            if store.id in seen_ids:
                self.add((*loc, "id"), f"datastore id {quote(store.id)} is used twice")
            seen_ids.add(store.id)
            if store.kind == "troth":
                troth_stores += 1
                if troth_stores > 1:
                    self.add((*loc, "kind"), "only one datastore may be of kind 'troth'")
                self._troth_store(store, loc)
            else:
                self._sql_store(store, loc)
        return sorted(self.out, key=lambda p: (p.location.line, p.location.column))

    def _troth_store(self, store: _StoreSpec, loc: tuple[str | int, ...]) -> None:
        if store.tables:
            self.add(
                (*loc, "tables"),
                "a datastore of kind 'troth' has no tables to declare: troth knows its own "
                "(consent, tracking, vault); name the identity kinds of its subjects in 'subjects'",
                key=True,
            )
        if store.url is not None:
            self.add((*loc, "url"), "a datastore of kind 'troth' takes no url", key=True)
        if not store.subjects:
            self.add(
                loc,
                "a datastore of kind 'troth' needs 'subjects': the identity kinds whose values "
                "are troth subjects (e.g. [account_ref])",
            )
        for i, kind in enumerate(store.subjects):
            self._identity(kind, (*loc, "subjects", i))

    def _sql_store(self, store: _StoreSpec, loc: tuple[str | int, ...]) -> None:
        if store.subjects:
            self.add((*loc, "subjects"), "only a datastore of kind 'troth' has subjects", key=True)
        if store.url is None:
            self.add(loc, f"datastore {quote(store.id)} needs a url (e.g. ${{LUMEN_DATABASE_URL}})")
        elif _has_credentials(store.url):
            self.add(
                (*loc, "url"),
                "credentials must not be written in this file: use ${VARIABLE} for the password "
                "or the whole URL",
            )
        if not store.tables:
            self.add(loc, f"datastore {quote(store.id)} declares no tables")
        for tname, table in store.tables.items():
            self._table(store, tname, table, (*loc, "tables", tname))

    def _table(
        self, store: _StoreSpec, tname: str, table: _TableSpec, loc: tuple[str | int, ...]
    ) -> None:
        if table.erasure == "keep" and table.reason is None:
            self.add(
                (*loc, "erasure"), "erasure 'keep' needs a 'reason' (the law or duty that keeps it)"
            )
        if not table.fields:
            self.add(loc, f"table {quote(tname)} declares no fields")
        for fname, spec in table.fields.items():
            floc = (*loc, "fields", fname)
            if spec.category is not None and spec.category not in self.categories:
                close = difflib.get_close_matches(spec.category, self.categories, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.add(
                    (*floc, "category"),
                    f"unknown data category {quote(spec.category)}: the policy declares no such "
                    f"category{hint}",
                )
            if spec.identity is not None:
                self._identity(spec.identity, (*floc, "identity"))
            if spec.category is None and spec.identity is None:
                self.add(floc, f"field {quote(fname)} needs a 'category' or an 'identity'")
            if table.erasure == "delete" and spec.erasure not in (None, "delete"):
                self.add(
                    (*floc, "erasure"),
                    f"the rows of {quote(tname)} are deleted on erasure, so its fields take no "
                    f"strategy of their own; set the table's erasure to null, mask or keep",
                )
            elif spec.erasure == "keep" and spec.reason is None and table.reason is None:
                self.add(
                    (*floc, "erasure"),
                    "erasure 'keep' needs a 'reason' (the law or duty that keeps it)",
                )
            if spec.erasure in ("null", "mask") and fname == table.key:
                self.add(
                    (*floc, "erasure"),
                    f"the key column {quote(fname)} cannot be set to {spec.erasure}",
                )
        for column, ref in table.references.items():
            rloc = (*loc, "references", column)
            target = ref if isinstance(ref, str) else ref.to
            if not isinstance(ref, str):
                rloc = (*rloc, "to")
            match = _REF.match(target)
            if not match:
                self.add(rloc, f"reference {quote(target)} is not written as table.column")
                continue
            to_table, to_column = match.groups()
            other = store.tables.get(to_table)
            if other is None:
                close = difflib.get_close_matches(to_table, list(store.tables), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.add(
                    rloc,
                    f"reference to undeclared table {quote(to_table)} in datastore "
                    f"{quote(store.id)}{hint}",
                )
            elif to_column != other.key and to_column not in other.fields:
                self.add(
                    rloc,
                    f"reference to {quote(target)}: table {quote(to_table)} declares no column "
                    f"{quote(to_column)} (declare it as its key or one of its fields)",
                )

    def _identity(self, kind: str, loc: tuple[str | int, ...]) -> None:
        if kind not in self.spec.identities:
            close = difflib.get_close_matches(kind, self.spec.identities, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.add(
                loc,
                f"unknown identity kind {quote(kind)}: declare it in 'identities' at the top{hint}",
            )


def _build(spec: _DatasetsSpec, name: str, source: SourceMap) -> Datasets:
    stores: list[Datastore] = []
    for store in spec.datastores:
        tables: list[DatasetTable] = []
        for tname, table in store.tables.items():
            fields = [
                DatasetField(
                    fname, f.category, f.identity, f.erasure, f.reason, f.follow, f.rectify
                )
                for fname, f in table.fields.items()
            ]
            refs: list[Reference] = []
            for column, ref in table.references.items():
                target = ref if isinstance(ref, str) else ref.to
                to_table, to_column = target.split(".", 1)
                erasure = None if isinstance(ref, str) else ref.erasure
                refs.append(Reference(column, to_table, to_column, erasure))
            tables.append(DatasetTable(tname, table.key, table.erasure, table.reason, fields, refs))
        stores.append(Datastore(store.id, store.kind, store.url, tables, list(store.subjects)))
    return Datasets(1, list(spec.identities), stores, name, source)
