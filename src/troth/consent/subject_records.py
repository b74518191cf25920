"""A subject's consent records, for data subject rights: found by keyed hash, and erased."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from troth.store.tables import consent_current, consent_events

__all__ = ["RECORD_COLUMNS", "erase_records", "records_of"]

# What a person gets back about each of their consent records (besides the choices).
RECORD_COLUMNS = (
    "receipt_id",
    "created_at",
    "policy_version",
    "language",
    "method",
    "jurisdiction",
)


def records_of(conn: Connection, subject_hashes: Sequence[str]) -> list[dict[str, Any]]:
    """Every consent record of these subjects: the columns above, ``choices`` and
    ``subject_hash`` (one indexed query)."""
    columns = [consent_events.c[c] for c in RECORD_COLUMNS]
    query = select(*columns, consent_events.c.choices, consent_events.c.subject_hash).where(
        consent_events.c.subject_hash.in_(list(subject_hashes))
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def erase_records(
    conn: Connection, receipt_ids: Sequence[str], subject_hashes: Sequence[str]
) -> int:
    """Delete these records and the subjects' current state, in the caller's transaction."""
    deleted = 0
    for start in range(0, len(receipt_ids), 500):
        chunk = list(receipt_ids[start : start + 500])
        deleted += conn.execute(
            delete(consent_events).where(consent_events.c.receipt_id.in_(chunk))
        ).rowcount
    conn.execute(
        delete(consent_current).where(consent_current.c.subject_hash.in_(list(subject_hashes)))
    )
    return int(deleted)
