"""The consent ledger: append-only events, the current state per category, effective consent.

Every change is one row in ``consent_events`` (never updated or deleted) and an upsert of
``consent_current`` in the same transaction, so reading a person's consent is one indexed
lookup. Subjects are stored only as keyed hashes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from troth.audit.log import AuditEvent, AuditLog
from troth.consent.receipts import RECEIPT_FIELDS, ReceiptSigner
from troth.consent.versions import PolicyHistory
from troth.errors import ConsentError
from troth.keyring.subjects import SubjectHasher
from troth.policy.model import Jurisdiction, Policy
from troth.store.engine import reading, writing
from troth.store.tables import consent_current, consent_events

__all__ = [
    "METHODS",
    "ConsentChange",
    "ConsentLedger",
    "Effective",
    "Method",
]

Method = Literal[
    "banner_accept_all", "banner_reject_all", "banner_custom", "preference_centre", "api", "gpc"
]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]
Choice = Literal["given", "refused"]


@dataclass(frozen=True)
class ConsentChange:
    """A validated request to change someone's consent."""

    subject: str
    choices: dict[str, Choice]
    method: Method
    language: str
    policy_version: str
    jurisdiction: str | None = None
    gpc: bool = False


@dataclass(frozen=True)
class CategoryState:
    status: str  # given | refused | withdrawn | expired | undecided
    allowed: bool
    required: bool = False
    policy_version: str | None = None
    since: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "allowed": self.allowed,
            "required": self.required,
            "policy_version": self.policy_version,
            "since": self.since,
        }


@dataclass(frozen=True)
class Effective:
    jurisdiction: str
    categories: dict[str, CategoryState] = field(default_factory=dict)

    def allowed(self, category: str) -> bool:
        state = self.categories.get(category)
        return state is not None and state.allowed

    def as_dict(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "categories": {k: v.as_dict() for k, v in self.categories.items()},
        }


_MANY_CHUNK = 1000  # subjects per IN (...) list of effective_many


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ConsentLedger:
    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        history: PolicyHistory,
        hasher: SubjectHasher,
        signer: ReceiptSigner,
        audit: AuditLog,
    ) -> None:
        self.engine = engine
        self._reader = reading(engine)
        self.audit = audit
        self.policy = policy
        self.history = history
        self.hash = hasher
        self.signer = signer
        self.required = {c.id for c in policy.consent_categories if c.required}
        self.optional = [c.id for c in policy.consent_categories if not c.required]
        self.jurisdictions = {j.id: j for j in policy.jurisdictions}
        self.default_jurisdiction = next(
            (j for j in policy.jurisdictions if j.default),
            policy.jurisdictions[0] if policy.jurisdictions else None,
        )
        self.revisions = {c: history.revision(c) for c in self.optional}
        insert_for = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        upsert = insert_for(consent_current)
        # Built once: SQLAlchemy then compiles each statement once and reuses it.
        self._upsert_current = upsert.on_conflict_do_update(
            index_elements=["subject_hash", "category"],
            set_={
                "status": upsert.excluded.status,
                "policy_version": upsert.excluded.policy_version,
                "event_id": upsert.excluded.event_id,
                "updated_at": upsert.excluded.updated_at,
            },
        )
        self._insert_event = insert(consent_events).returning(consent_events.c.id)
        self._current_of = select(
            consent_current.c.category,
            consent_current.c.status,
            consent_current.c.policy_version,
            consent_current.c.updated_at,
        ).where(consent_current.c.subject_hash == bindparam("h"))
        self._current_of_many = select(
            consent_current.c.subject_hash,
            consent_current.c.category,
            consent_current.c.status,
            consent_current.c.policy_version,
            consent_current.c.updated_at,
        ).where(consent_current.c.subject_hash.in_(bindparam("hs", expanding=True)))

    # --- validation --------------------------------------------------------------------

    def jurisdiction(self, jid: str | None) -> Jurisdiction | None:
        if jid is None:
            return self.default_jurisdiction
        if jid not in self.jurisdictions:
            raise ConsentError(
                f"jurisdiction: '{jid}' is not declared; use one of "
                + ", ".join(self.jurisdictions)
            )
        return self.jurisdictions[jid]

    def validate(self, change: ConsentChange) -> ConsentChange:
        if not change.choices:
            raise ConsentError("choices: give at least one category")
        for category in change.choices:
            if category in self.required:
                raise ConsentError(f"choices.{category}: this category cannot be refused or given")
            if category not in self.optional:
                raise ConsentError(
                    f"choices.{category}: not a consent category of this policy; use "
                    + ", ".join(self.optional)
                )
        if change.language not in self.policy.languages:
            raise ConsentError(f"language: '{change.language}' is not a language of this policy")
        if self.history.seq_of(change.policy_version) is None:
            raise ConsentError(f"policy_version: '{change.policy_version}' was never published")
        self.jurisdiction(change.jurisdiction)
        return change

    def _gpc_refuses(self, jurisdiction: Jurisdiction | None, gpc: bool) -> set[str]:
        if not gpc or jurisdiction is None or jurisdiction.gpc != "opt_out":
            return set()
        return set(jurisdiction.gpc_refuses)

    # --- writing -----------------------------------------------------------------------

    def prepare(self, change: ConsentChange) -> Any:
        """Work for a :class:`BatchWriter`: records ``change`` and returns its signed receipt."""
        change = self.validate(change)
        subject_hash = self.hash(change.subject)
        jurisdiction = self.jurisdiction(change.jurisdiction)
        forced = self._gpc_refuses(jurisdiction, change.gpc)
        choices: dict[str, str] = {
            c: ("refused" if c in forced else s) for c, s in change.choices.items()
        }
        for category in forced:
            choices.setdefault(category, "refused")
        receipt_id = str(uuid.uuid4())

        def work(conn: Connection) -> dict[str, Any]:
            now = dt.datetime.now(dt.UTC)
            before = {
                r.category: r.status for r in conn.execute(self._current_of, {"h": subject_hash})
            }
            final = {
                c: ("withdrawn" if s == "refused" and before.get(c) == "given" else s)
                for c, s in sorted(choices.items())
            }
            (audit_index,) = self.audit.append(
                conn,
                [
                    AuditEvent(
                        "consent.changed",
                        f"consent:{change.method}",
                        subject_hash,
                        {
                            "receipt_id": receipt_id,
                            "choices": final,
                            "policy_version": change.policy_version,
                            "jurisdiction": jurisdiction.id if jurisdiction else "",
                            "gpc": change.gpc,
                        },
                    )
                ],
            )
            payload = self._payload(
                receipt_id, subject_hash, change, jurisdiction, final, _iso(now), audit_index
            )
            signature = self.signer.sign(payload)
            event_id = conn.execute(
                self._insert_event,
                {
                    "receipt_id": receipt_id,
                    "subject_hash": subject_hash,
                    "policy_version": change.policy_version,
                    "language": change.language,
                    "method": change.method,
                    "jurisdiction": payload["jurisdiction"],
                    "gpc": change.gpc,
                    "choices": final,
                    "created_at": now,
                    "signature": signature,
                    "receipt": payload,
                },
            ).scalar_one()
            conn.execute(
                self._upsert_current,
                [
                    {
                        "subject_hash": subject_hash,
                        "category": c,
                        "status": s,
                        "policy_version": change.policy_version,
                        "event_id": event_id,
                        "updated_at": now,
                    }
                    for c, s in final.items()
                ],
            )
            return self.signer.receipt(payload, signature)

        return work

    def _payload(
        self,
        receipt_id: str,
        subject_hash: str,
        change: ConsentChange,
        jurisdiction: Jurisdiction | None,
        choices: dict[str, str],
        timestamp: str,
        audit_index: int,
    ) -> dict[str, Any]:
        payload = {
            "receipt_id": receipt_id,
            "receipt_version": 1,
            "controller": self.policy.controller.name,
            "service": self.policy.service,
            "subject": subject_hash,
            "policy_version": change.policy_version,
            "language": change.language,
            "method": change.method,
            "jurisdiction": jurisdiction.id if jurisdiction else "",
            "gpc": change.gpc,
            "choices": choices,
            "timestamp": timestamp,
            "audit_index": audit_index,
            "key_id": self.signer.key_id,
        }
        assert tuple(payload) == RECEIPT_FIELDS
        return payload

    def record(self, change: ConsentChange) -> dict[str, Any]:
        """Record synchronously (CLI, tests); the web API goes through a BatchWriter."""
        work = self.prepare(change)
        with writing(self.engine).begin() as conn:
            result: dict[str, Any] = work(conn)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        return result

    # --- reading -----------------------------------------------------------------------

    def effective(
        self, subject: str, jurisdiction: str | None = None, gpc: bool = False
    ) -> Effective:
        return self.effective_hashed(self.hash(subject), jurisdiction, gpc)

    def effective_hashed(
        self, subject_hash: str, jurisdiction: str | None = None, gpc: bool = False
    ) -> Effective:
        """Effective consent for a subject known only by its keyed hash (e-mail recipients)."""
        with self._reader.connect() as conn:
            rows = conn.execute(self._current_of, {"h": subject_hash}).all()
        return self.effective_from_rows(
            [(r.category, r.status, r.policy_version, r.updated_at) for r in rows],
            self.jurisdiction(jurisdiction),
            gpc,
        )

    def effective_many(
        self, subject_hashes: Iterable[str], jurisdiction: str | None = None, gpc: bool = False
    ) -> dict[str, Effective]:
        """:meth:`effective_hashed` for many subjects at once, in one query (per
        ``_MANY_CHUNK`` subjects); every subject asked for is in the answer."""
        hashes = list(dict.fromkeys(subject_hashes))
        where = self.jurisdiction(jurisdiction)
        rows_of: dict[str, list[tuple[str, str, str, dt.datetime]]] = {h: [] for h in hashes}
        if hashes:
            with self._reader.connect() as conn:
                for start in range(0, len(hashes), _MANY_CHUNK):
                    chunk = hashes[start : start + _MANY_CHUNK]
                    for r in conn.execute(self._current_of_many, {"hs": chunk}):
                        rows_of[r.subject_hash].append(
                            (r.category, r.status, r.policy_version, r.updated_at)
                        )
        return {h: self.effective_from_rows(rows, where, gpc) for h, rows in rows_of.items()}

    def effective_from_rows(
        self,
        rows: list[tuple[str, str, str, dt.datetime]],
        jurisdiction: Jurisdiction | None,
        gpc: bool,
    ) -> Effective:
        current = {c: (s, v, t) for c, s, v, t in rows}
        opt_in = jurisdiction is None or jurisdiction.consent_model == "opt_in"
        forced = self._gpc_refuses(jurisdiction, gpc)
        out: dict[str, CategoryState] = {
            c: CategoryState("given", True, required=True) for c in sorted(self.required)
        }
        for category in self.optional:
            if category in forced:
                out[category] = CategoryState("refused", False)
                continue
            if category not in current:
                out[category] = CategoryState("undecided", not opt_in)
                continue
            status, version, since = current[category]
            seq = self.history.seq_of(version) or 0
            if status == "given" and seq < self.revisions[category]:
                status = "expired"
            out[category] = CategoryState(
                status,
                status == "given" or (status == "expired" and not opt_in),
                policy_version=version,
                since=_iso(since),
            )
        return Effective(jurisdiction.id if jurisdiction else "", out)

    def history_of(self, subject: str, limit: int = 500) -> list[dict[str, Any]]:
        subject_hash = self.hash(subject)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(consent_events)
                .where(consent_events.c.subject_hash == subject_hash)
                .order_by(consent_events.c.id)
                .limit(limit)
            ).all()
        return [
            {
                "receipt_id": r.receipt_id,
                "timestamp": _iso(r.created_at),
                "policy_version": r.policy_version,
                "language": r.language,
                "method": r.method,
                "jurisdiction": r.jurisdiction,
                "gpc": r.gpc,
                "choices": r.choices,
            }
            for r in rows
        ]

    def receipt(self, subject: str, receipt_id: str) -> dict[str, Any] | None:
        subject_hash = self.hash(subject)
        with self.engine.connect() as conn:
            r = conn.execute(
                select(consent_events).where(
                    consent_events.c.subject_hash == subject_hash,
                    consent_events.c.receipt_id == receipt_id,
                )
            ).first()
        if r is None:
            return None
        payload = dict(r.receipt)
        return self.signer.receipt(payload, r.signature)
