"""Values the rights engine and its connectors pass between them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from troth.policy.datasets import DatasetTable

__all__ = ["Identities", "Key", "Row", "StorePlan", "TablePlan"]

Identities = Mapping[str, Collection[str]]
"""Identity kind (as declared in the annotations) -> the values a person is known by."""

Row = dict[str, Any]
Key = Any


@dataclass
class TablePlan:
    """What erasure does to one table: rows to delete, values to set, rows kept."""

    table: DatasetTable
    delete: list[Key] = field(default_factory=list)
    # key -> {column: new value}; applied before any delete of this datastore's tables
    update: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # key -> {reference column: None}: cuts a reference cycle before the rows are deleted
    unlink: dict[Key, dict[str, Any]] = field(default_factory=dict)
    held: bool = False  # a legal hold or a 'keep' covers every row found


@dataclass
class StorePlan:
    """A datastore's erasure, tables in dependency order (rows that refer to others first)."""

    datastore: str
    tables: list[TablePlan]
    identities: Mapping[str, frozenset[str]] = field(default_factory=dict)
    actor: str = "rights"
