"""The 'troth' datastore: what troth itself holds about a subject.

Consent choices (the ledger), tracking events recorded under the subject's first-party id,
disclosures to recipients (unlinked on erasure: the register keeps the record), and vault
values with the subject's data key. Subjects are stored only as keyed hashes, so the
connector hashes the identities named in the annotations' ``subjects`` and looks those up;
erasure deletes the consent and tracking rows and unlinks the disclosures in one
transaction, then calls :meth:`troth.vault.vault.Vault.erase`, which deletes the values and
shreds the data key in its own (audited) transaction — a crash in between leaves work that
a re-run finishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from troth.consent.subject_records import RECORD_COLUMNS, erase_records, records_of
from troth.errors import PolicyError, PurposeDenied, StoreError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.policy.datasets import DatasetField, DatasetTable, Datastore
from troth.rights.connectors import TrothParts, register
from troth.rights.types import Key, Row, StorePlan
from troth.store.engine import reading, writing
from troth.tracking.subject_events import EVENT_COLUMNS, erase_events, events_of, visitors_of
from troth.transfers.disclosures import DISCLOSED_COLUMNS, disclosures_of, forget_subject

__all__ = ["TrothConnector"]

_CONSENT = RECORD_COLUMNS
_DISCLOSED = DISCLOSED_COLUMNS
_REGISTER = {
    "en": "Disclosures stay in the register of disclosures, no longer linked to the person.",
    "de": "Offenlegungen bleiben im Verzeichnis der Offenlegungen, ohne Bezug zur Person.",
}
_TRACKING = EVENT_COLUMNS


@register("troth")
class TrothConnector:
    def __init__(self, datastore: Datastore, _url: str | None, troth: TrothParts | None) -> None:
        if troth is None:
            raise StoreError(
                f"datastore '{datastore.id}' (kind troth) needs troth's own database and vault"
            )
        self.datastore = datastore
        self.engine = troth.engine
        self.vault = troth.vault
        self.hash = troth.vault.hash
        subjects = [
            DatasetField(f"subject_{kind}", None, kind, None, None) for kind in datastore.subjects
        ]
        self._tables = [
            DatasetTable(
                "consent_events",
                "receipt_id",
                "delete",
                None,
                [
                    *subjects,
                    *(DatasetField(c, "consent_records") for c in _CONSENT[1:]),
                    DatasetField("choices", "consent_records"),
                ],
                [],
            ),
            DatasetTable(
                "tracking_events",
                "id",
                "delete",
                None,
                [*subjects, *(DatasetField(c, "usage") for c in _TRACKING[1:])],
                [],
            ),
            DatasetTable(
                "disclosures",
                "id",
                "null",  # unlinked (the subject's hash set to NULL), the record stays
                None,
                [
                    *subjects,
                    *(DatasetField(c, None, None, "keep", _REGISTER) for c in _DISCLOSED[1:]),
                ],
                [],
            ),
            # "entry": the subject and the category, unique across the subjects asked for
            DatasetTable(
                "vault_values",
                "entry",
                "delete",
                None,
                [
                    *subjects,
                    DatasetField("category", None),
                    DatasetField("value", None),
                    DatasetField("updated_at", None),
                ],
                [],
            ),
            # the data key: shredded by the vault's erasure; a key left is an erasure not done
            DatasetTable(
                "subject_keys",
                "entry",
                "delete",
                None,
                [*subjects, DatasetField("created_at", None)],
                [],
            ),
        ]

    def tables(self) -> Sequence[DatasetTable]:
        return self._tables

    def session(self, *, write: bool = False) -> AbstractContextManager[None]:
        """troth's own writes are short transactions of their own (the vault's is audited)."""
        return nullcontext()

    def nullable(self, table: str, column: str) -> bool:
        return False

    def unique(self, table: str, column: str) -> bool:
        return False

    def _hashes(self, where: Mapping[str, Sequence[Any]]) -> dict[str, tuple[str, str]]:
        """subject hash -> (identity column, subject) for every value that can be a subject."""
        out: dict[str, tuple[str, str]] = {}
        for name, values in where.items():
            for value in values:
                if isinstance(value, str) and SUBJECT_PATTERN.match(value):
                    out[self.hash(value)] = (name, value)
        return out

    def fetch(self, table: DatasetTable, where: Mapping[str, Sequence[Any]]) -> list[Row]:
        subjects = self._hashes(where)
        if not subjects:
            return []
        hashes = list(subjects)
        rows: list[Row] = []
        with reading(self.engine).connect() as conn:
            if table.name == "consent_events":
                for record in records_of(conn, hashes):
                    rows.append(self._row(record, subjects, record["subject_hash"]))
            elif table.name == "tracking_events":
                by_visitor = {v: h for h in hashes for v in visitors_of(h)}
                for event in events_of(conn, list(by_visitor)):
                    rows.append(self._row(event, subjects, by_visitor[event.pop("visitor")]))
            elif table.name == "disclosures":
                for disclosed in disclosures_of(conn, hashes):
                    rows.append(self._row(disclosed, subjects, disclosed["subject_hash"]))
            elif table.name == "vault_values":
                held_values = self.vault.holdings_of(conn, hashes, open_values=True)
                for subject_hash, category, updated_at, value in held_values:
                    held = {"category": category, "value": value, "updated_at": updated_at}
                    row = self._row(held, subjects, subject_hash)
                    row["entry"] = f"{subjects[subject_hash][1]}/{category}"
                    rows.append(row)
            elif table.name == "subject_keys":
                for subject_hash, created_at in self.vault.keyring.keys_of(conn, hashes).items():
                    row = self._row({"created_at": created_at}, subjects, subject_hash)
                    row["entry"] = subjects[subject_hash][1]
                    rows.append(row)
        return rows

    @staticmethod
    def _row(row: Row, subjects: dict[str, tuple[str, str]], subject_hash: str) -> Row:
        row.pop("subject_hash", None)
        name, value = subjects[subject_hash]
        return {name: value, **row}

    def apply(self, plan: StorePlan) -> None:
        by_name = {tp.table.name: tp for tp in plan.tables}
        subjects = sorted(
            {
                value
                for kind in self.datastore.subjects
                for value in plan.identities.get(kind, ())
                if SUBJECT_PATTERN.match(value)
            }
        )
        consent = by_name.get("consent_events")
        tracking = by_name.get("tracking_events")
        with writing(self.engine).begin() as conn:
            if consent is not None and not consent.held:
                erase_records(conn, consent.delete, [self.hash(s) for s in subjects])
            disclosed = by_name.get("disclosures")
            if disclosed is not None and disclosed.update:
                for subject in subjects:
                    forget_subject(conn, self.hash(subject))
            if tracking is not None:
                erase_events(conn, tracking.delete)
        vault = by_name.get("vault_values")
        key = by_name.get("subject_keys")
        if (vault is not None and vault.held) or (key is not None and key.held):
            return
        for subject in subjects:
            try:
                self.vault.erase(subject, actor=plan.actor)
            except PurposeDenied as denied:
                if denied.rule != "legal_hold":
                    raise

    def coerce_value(self, table: DatasetTable, column: str, value: str) -> Any:
        return value  # set_value refuses: troth's own records change through their APIs

    def set_value(self, table: DatasetTable, key: Key, column: str, value: Any) -> int:
        raise PolicyError(
            f"'{table.name}' in troth's own store cannot be rectified here: consent is changed "
            "through the preference centre or the consent API, vault values through the vault"
        )

    def close(self) -> None:
        """troth's engine belongs to troth; nothing to close here."""
