"""The disclosure log: every disclosure of personal data to a recipient, decided against the
policy, recorded and audited in one transaction.

A disclosure records who disclosed, to which recipient and country, which categories, for
which purpose, under which transfer mechanism, and when. The subject, when there is one, is
kept only as its keyed hash; the audit entry carries the same hash, never the identifier.
A refused disclosure records nothing but the audited refusal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, select, update

from troth.audit.log import AuditEvent, AuditLog
from troth.errors import PurposeDenied
from troth.keyring.subjects import SubjectHasher
from troth.policy.model import Policy
from troth.store.engine import reading, writing
from troth.store.tables_transfers import disclosures
from troth.transfers.decide import TransferDecision, decide_disclosure
from troth.vault.vault import Vault

__all__ = [
    "DISCLOSED_COLUMNS",
    "Disclosure",
    "DisclosureLog",
    "ReportRow",
    "disclosures_of",
    "forget_subject",
    "join_ids",
    "split_ids",
]

Source = Literal["api", "vault", "legal"]


def join_ids(ids: Sequence[str]) -> str:
    return ",".join(sorted(set(ids)))


def split_ids(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


@dataclass(frozen=True)
class Disclosure:
    id: int
    at: dt.datetime
    recipient: str
    country: str
    purpose: str
    categories: list[str]
    mechanism: str | None
    mechanism_detail: str
    actor: str
    source: str
    legal_request_id: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "recipient": self.recipient,
            "country": self.country,
            "purpose": self.purpose,
            "categories": self.categories,
            "mechanism": self.mechanism,
            "mechanism_detail": self.mechanism_detail,
            "actor": self.actor,
            "source": self.source,
            "legal_request_id": self.legal_request_id,
        }


@dataclass(frozen=True)
class ReportRow:
    key: str  # a recipient id or a country
    disclosures: int
    subjects: int
    categories: list[str]
    first: dt.datetime
    last: dt.datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "disclosures": self.disclosures,
            "subjects": self.subjects,
            "categories": self.categories,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
        }


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def forget_subject(conn: Connection, subject_hash: str) -> int:
    """Unlink an erased subject from the log in the caller's transaction: the disclosures
    stay counted, without the subject's keyed hash. Returns how many were unlinked."""
    result = conn.execute(
        update(disclosures)
        .where(disclosures.c.subject_hash == subject_hash)
        .values(subject_hash=None)
    )
    return int(result.rowcount)


# What a person gets back about each disclosure of their data (Art. 15(1)(c)).
DISCLOSED_COLUMNS = ("id", "at", "recipient", "country", "purpose", "categories", "mechanism")


def disclosures_of(conn: Connection, subject_hashes: Sequence[str]) -> list[dict[str, Any]]:
    """The disclosures of these subjects: the columns above and ``subject_hash``."""
    columns = [disclosures.c[c] for c in DISCLOSED_COLUMNS]
    query = select(*columns, disclosures.c.subject_hash).where(
        disclosures.c.subject_hash.in_(list(subject_hashes))
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _disclosure(r: Any) -> Disclosure:
    return Disclosure(
        r.id,
        _aware(r.at),
        r.recipient,
        r.country,
        r.purpose,
        split_ids(r.categories),
        r.mechanism,
        r.mechanism_detail,
        r.actor,
        r.source,
        r.legal_request_id,
    )


class DisclosureLog:
    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        hasher: SubjectHasher,
        audit: AuditLog,
        vault: Vault | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.hash = hasher
        self.audit = audit
        self.vault = vault
        self.clock = clock

    # --- deciding and recording --------------------------------------------------------

    def decide(
        self,
        recipient: str,
        purpose: str,
        categories: Sequence[str],
        country: str | None = None,
        on: dt.date | None = None,
    ) -> TransferDecision:
        day = on or self.clock().date()
        return decide_disclosure(self.policy, recipient, purpose, categories, day, country)

    def record(
        self,
        *,
        recipient: str,
        purpose: str,
        categories: Sequence[str],
        actor: str,
        subject: str | None = None,
        country: str | None = None,
        source: Source = "api",
        legal_request_id: int | None = None,
    ) -> Disclosure:
        """Record a disclosure made outside the vault; raises PurposeDenied (nothing recorded
        but the audited refusal) when the policy does not allow it today."""
        subject_hash = self.hash(subject) if subject is not None else None
        decision = self.decide(recipient, purpose, categories, country)
        with writing(self.engine).begin() as conn:
            if decision.allowed:
                found = self.record_in(
                    conn,
                    decision,
                    recipient=recipient,
                    purpose=purpose,
                    categories=categories,
                    actor=actor,
                    subject_hash=subject_hash,
                    source=source,
                    legal_request_id=legal_request_id,
                )
            else:
                self._refused(conn, decision, recipient, purpose, categories, actor, subject_hash)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        if not decision.allowed:
            raise PurposeDenied(decision.rule, decision.reason)
        return found

    def disclose_from_vault(
        self,
        *,
        subject: str,
        recipient: str,
        purpose: str,
        categories: Sequence[str],
        actor: str,
        country: str | None = None,
        activity: str | None = None,
    ) -> dict[str, str | None]:
        """Read the subject's values for a recipient and record the disclosure, in one
        transaction: both the vault's purpose rules and the transfer rules must allow it."""
        if self.vault is None:
            raise RuntimeError("this disclosure log has no vault")
        subject_hash = self.hash(subject)
        decision = self.decide(recipient, purpose, categories, country)
        with writing(self.engine).begin() as conn:
            if not decision.allowed:
                self._refused(conn, decision, recipient, purpose, categories, actor, subject_hash)
                values: dict[str, str | None] = {}
                denied: PurposeDenied | None = PurposeDenied(decision.rule, decision.reason)
            else:
                vault_decision, values = self.vault.read_in(
                    conn,
                    subject,
                    subject_hash,
                    categories,
                    purpose,
                    actor,
                    activity,
                    action="vault.disclose",
                    details={"recipient": recipient},
                )
                denied = (
                    None
                    if vault_decision.allowed
                    else PurposeDenied(vault_decision.rule, vault_decision.reason)
                )
                if denied is None:
                    self.record_in(
                        conn,
                        decision,
                        recipient=recipient,
                        purpose=purpose,
                        categories=categories,
                        actor=actor,
                        subject_hash=subject_hash,
                        source="vault",
                    )
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        if denied is not None:
            raise denied
        return values

    def record_in(
        self,
        conn: Connection,
        decision: TransferDecision,
        *,
        recipient: str,
        purpose: str,
        categories: Sequence[str],
        actor: str,
        subject_hash: str | None,
        source: Source,
        legal_request_id: int | None = None,
    ) -> Disclosure:
        """Write an allowed disclosure (to the decision's country) and its audit entry in the
        caller's transaction."""
        where = decision.country
        at = self.clock()
        row = {
            "at": at,
            "recipient": recipient,
            "country": where,
            "purpose": purpose,
            "categories": join_ids(categories),
            "mechanism": decision.mechanism,
            "mechanism_detail": decision.detail,
            "subject_hash": subject_hash,
            "actor": actor,
            "source": source,
            "legal_request_id": legal_request_id,
        }
        new_id = conn.execute(insert(disclosures).values(**row).returning(disclosures.c.id))
        disclosure_id = int(new_id.scalar_one())
        self.audit.append(
            conn,
            [
                AuditEvent(
                    "disclosure",
                    actor,
                    subject_hash,
                    {
                        "disclosure": disclosure_id,
                        "recipient": recipient,
                        "country": where,
                        "purpose": purpose,
                        "categories": sorted(set(categories)),
                        "mechanism": decision.mechanism,
                        "source": source,
                    },
                )
            ],
        )
        return Disclosure(
            disclosure_id,
            at,
            recipient,
            where,
            purpose,
            sorted(set(categories)),
            decision.mechanism,
            decision.detail,
            actor,
            source,
            legal_request_id,
        )

    def _refused(
        self,
        conn: Connection,
        decision: TransferDecision,
        recipient: str,
        purpose: str,
        categories: Sequence[str],
        actor: str,
        subject_hash: str | None,
    ) -> None:
        self.audit.append(
            conn,
            [
                AuditEvent(
                    "disclosure.denied",
                    actor,
                    subject_hash,
                    {
                        "recipient": recipient,
                        "purpose": purpose,
                        "categories": sorted(set(categories)),
                        "rule": decision.rule,
                    },
                )
            ],
        )

    # --- reading -----------------------------------------------------------------------

    def recent(self, *, recipient: str | None = None, limit: int = 200) -> list[Disclosure]:
        query = select(disclosures).order_by(disclosures.c.id.desc()).limit(limit)
        if recipient is not None:
            query = query.where(disclosures.c.recipient == recipient)
        with reading(self.engine).connect() as conn:
            rows = conn.execute(query).all()
        return [_disclosure(r) for r in rows]

    def for_subject(self, subject: str) -> list[Disclosure]:
        """Every disclosure of the subject's data, newest first (for an access request:
        GDPR Art. 15(1)(c), the recipients the data was disclosed to)."""
        query = (
            select(disclosures)
            .where(disclosures.c.subject_hash == self.hash(subject))
            .order_by(disclosures.c.id.desc())
        )
        with reading(self.engine).connect() as conn:
            return [_disclosure(r) for r in conn.execute(query).all()]

    def forget_in(self, conn: Connection, subject_hash: str) -> int:
        return forget_subject(conn, subject_hash)

    def report(
        self,
        by: Literal["recipient", "country"],
        *,
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> list[ReportRow]:
        """Disclosures per recipient or per country (each disclosure goes to exactly one),
        with distinct subjects and categories."""
        key = disclosures.c.recipient if by == "recipient" else disclosures.c.country
        where = []
        if since is not None:
            where.append(disclosures.c.at >= dt.datetime.combine(since, dt.time(), dt.UTC))
        if until is not None:
            end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
            where.append(disclosures.c.at < end)
        counts = (
            select(
                key.label("key"),
                func.count().label("n"),
                func.count(disclosures.c.subject_hash.distinct()).label("subjects"),
                func.min(disclosures.c.at).label("first"),
                func.max(disclosures.c.at).label("last"),
            )
            .where(*where)
            .group_by(key)
            .order_by(key)
        )
        cats = select(key.label("key"), disclosures.c.categories).where(*where).distinct()
        with reading(self.engine).connect() as conn:
            rows = conn.execute(counts).all()
            seen: dict[str, set[str]] = {}
            for k, text in conn.execute(cats).all():
                seen.setdefault(k, set()).update(split_ids(text))
        return [
            ReportRow(
                r.key,
                int(r.n),
                int(r.subjects),
                sorted(seen.get(r.key, set())),
                _aware(r.first),
                _aware(r.last),
            )
            for r in rows
        ]
