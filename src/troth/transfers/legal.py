"""Requests from authorities: logged with the decision taken, the categories disclosed and
the legal basis; the legal holds they create; and their release, with a reason.

Subjects named in a request are stored only as keyed hashes. A hold is a vault limit of
kind ``legal_hold`` whose scope is ``'*'`` (all the subject's data) or one data category id
(the convention the rights engine reads through :meth:`Vault.holds`); it blocks erasure
until released. Creating a request, its disclosures and its holds is one transaction.

The subject hashes of legal requests and holds are kept after the subject's erasure, on
purpose (the disclosure log, by contrast, is unlinked from an erased subject): they are the
legal record of what an authority asked for, what was disclosed to it and what was held,
which the controller must be able to show for as long as the proceedings may need it (GDPR
Art. 5(2), Art. 17(3)(b) and (e)). A keyed hash identifies nobody by itself; it matches
only when the identifier is presented again, with the server's subject key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import Connection, Engine, func, insert, select, update

from troth.audit.log import AuditEvent, AuditLog
from troth.errors import PurposeDenied, RequestError
from troth.keyring.subjects import SubjectHasher
from troth.policy.model import Policy
from troth.policy.vocabulary import vocabulary
from troth.store.engine import reading, writing
from troth.store.tables_transfers import legal_holds, legal_request_subjects, legal_requests
from troth.transfers.disclosures import DisclosureLog, join_ids, split_ids
from troth.vault.vault import Vault

__all__ = ["DECISIONS", "Hold", "LegalDecision", "LegalRequest", "LegalRequests"]

LegalDecision = Literal["pending", "disclosed", "partial", "refused"]
DECISIONS: tuple[str, ...] = get_args(LegalDecision)
_DISCLOSING = ("disclosed", "partial")


@dataclass(frozen=True)
class Hold:
    id: int
    request_id: int
    scope: str
    reason: str
    created_at: dt.datetime
    created_by: str
    released_at: dt.datetime | None
    released_by: str | None
    release_reason: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "request_id": self.request_id,
            "scope": self.scope,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "active": self.active,
            "released_at": self.released_at.isoformat() if self.released_at else None,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
        }


@dataclass(frozen=True)
class LegalRequest:
    id: int
    authority: str
    country: str
    reference: str
    received: dt.date
    decision: str
    legal_basis: str
    categories: list[str]
    recipient: str | None
    note: str
    created_at: dt.datetime
    created_by: str
    subjects: int
    holds: list[Hold]

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "authority": self.authority,
            "country": self.country,
            "reference": self.reference,
            "received": self.received.isoformat(),
            "decision": self.decision,
            "legal_basis": self.legal_basis,
            "categories": self.categories,
            "recipient": self.recipient,
            "note": self.note,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "subjects": self.subjects,
            "holds": [h.as_dict() for h in self.holds],
        }


# The longest text each field may hold (the columns of tables_transfers).
_LIMITS = {
    "authority": 200,
    "reference": 200,
    "legal_basis": 500,
    "note": 2000,
    "actor": 128,
    "reason": 500,
}


def _invalid(field: str, message: str) -> RequestError:
    return RequestError(422, "Invalid request", f"{field}: {message}")


def _check_text(*, required: bool = True, **values: str) -> None:
    for field, value in values.items():
        if required and not value.strip():
            raise _invalid(field, "must not be empty")
        if len(value) > _LIMITS[field]:
            raise _invalid(field, f"at most {_LIMITS[field]} characters, got {len(value)}")


def _storable(row_id: int) -> bool:
    """Whether an id can be a row of these tables (32-bit keys); larger ones do not exist
    (and SQLite cannot even bind them)."""
    return 1 <= row_id <= 2**31 - 1


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _hold(r: object) -> Hold:
    row = r._mapping  # type: ignore[attr-defined]
    return Hold(
        row["id"],
        row["request_id"],
        row["scope"],
        row["reason"],
        _aware(row["created_at"]),
        row["created_by"],
        _aware(row["released_at"]) if row["released_at"] else None,
        row["released_by"],
        row["release_reason"],
    )


class LegalRequests:
    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        hasher: SubjectHasher,
        audit: AuditLog,
        vault: Vault,
        disclosures: DisclosureLog,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.hash = hasher
        self.audit = audit
        self.vault = vault
        self.disclosures = disclosures
        self.clock = clock

    def _check_categories(
        self, categories: Sequence[str], field: str, rule: str = "category_undeclared"
    ) -> None:
        declared = {c.id for c in self.policy.categories}
        unknown = [c for c in categories if c not in declared]
        if unknown:
            raise PurposeDenied(
                rule,
                f"{field}: {', '.join(unknown)} is not a data category the policy declares",
            )

    # --- requests ----------------------------------------------------------------------

    def add(
        self,
        *,
        authority: str,
        country: str,
        reference: str,
        received: dt.date,
        decision: LegalDecision,
        legal_basis: str,
        categories: Sequence[str],
        subjects: Sequence[str],
        actor: str,
        recipient: str | None = None,
        purpose: str | None = None,
        note: str = "",
    ) -> LegalRequest:
        """Log a request. A disclosed or partial decision names the recipient (a declared
        one) and purpose, and its disclosure to the authority's country is recorded for each
        subject (and must be allowed by the policy) in the same transaction; a pending or
        refused one names no categories, recipient or purpose.

        Raises RequestError (422, the message starts with the field) for content that cannot
        be stored, PurposeDenied naming the rule for what the policy does not allow,
        VocabularyError for an unknown country. Nothing is stored when any is raised."""
        if decision not in DECISIONS:
            raise PurposeDenied("decision", f"decision: expected one of {', '.join(DECISIONS)}")
        _check_text(authority=authority, reference=reference, legal_basis=legal_basis)
        _check_text(note=note, actor=actor, required=False)
        if decision in _DISCLOSING:
            if recipient is None:
                raise _invalid(
                    "recipient", f"a {decision} decision must name the recipient the data went to"
                )
            if purpose is None:
                raise _invalid("purpose", "name the purpose the disclosure serves")
            if not categories:
                raise _invalid("categories", f"a {decision} decision must name what was disclosed")
        else:
            for field, value in (
                ("categories", categories), ("recipient", recipient), ("purpose", purpose)
            ):  # fmt: skip
                if value:
                    raise _invalid(field, f"a {decision} request disclosed nothing: leave it out")
        country = vocabulary().country(country).key
        self._check_categories(categories, "categories")
        hashes = sorted({self.hash(s) for s in subjects})
        transfer = None
        if recipient is not None and purpose is not None:
            transfer = self.disclosures.decide(recipient, purpose, categories, country)
            if not transfer.allowed:
                raise PurposeDenied(transfer.rule, transfer.reason)
        with writing(self.engine).begin() as conn:
            request_id = int(
                conn.execute(
                    insert(legal_requests)
                    .values(
                        authority=authority,
                        country=country,
                        reference=reference,
                        received=received,
                        decision=decision,
                        legal_basis=legal_basis,
                        categories=join_ids(categories),
                        recipient=recipient,
                        note=note,
                        created_at=self.clock(),
                        created_by=actor,
                    )
                    .returning(legal_requests.c.id)
                ).scalar_one()
            )
            if hashes:
                conn.execute(
                    insert(legal_request_subjects),
                    [{"request_id": request_id, "subject_hash": h} for h in hashes],
                )
            details = {
                "legal_request": request_id,
                "authority": authority,
                "country": country,
                "decision": decision,
                "categories": sorted(set(categories)),
            }
            self.audit.append(
                conn,
                [AuditEvent("legal.request", actor, h, details) for h in hashes]
                or [AuditEvent("legal.request", actor, None, details)],
            )
            if transfer is not None:
                assert recipient is not None
                assert purpose is not None
                subject_hashes: list[str | None] = list(hashes) or [None]
                for h in subject_hashes:
                    self.disclosures.record_in(
                        conn,
                        transfer,
                        recipient=recipient,
                        purpose=purpose,
                        categories=categories,
                        actor=actor,
                        subject_hash=h,
                        source="legal",
                        legal_request_id=request_id,
                    )
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        found = self.get(request_id)
        assert found is not None
        return found

    def get(self, request_id: int) -> LegalRequest | None:
        if not _storable(request_id):
            return None
        found = self._load([request_id])
        return found[0] if found else None

    def recent(self, limit: int = 200) -> list[LegalRequest]:
        with reading(self.engine).connect() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    select(legal_requests.c.id).order_by(legal_requests.c.id.desc()).limit(limit)
                ).scalars()
            ]
        return self._load(ids)

    def _load(self, ids: list[int]) -> list[LegalRequest]:
        if not ids:
            return []
        with reading(self.engine).connect() as conn:
            rows = conn.execute(
                select(legal_requests)
                .where(legal_requests.c.id.in_(ids))
                .order_by(legal_requests.c.id.desc())
            ).all()
            counts: dict[int, int] = dict(
                conn.execute(
                    select(legal_request_subjects.c.request_id, func.count())
                    .where(legal_request_subjects.c.request_id.in_(ids))
                    .group_by(legal_request_subjects.c.request_id)
                ).all()
            )
            holds: dict[int, list[Hold]] = {}
            for h in conn.execute(
                select(legal_holds)
                .where(legal_holds.c.request_id.in_(ids))
                .order_by(legal_holds.c.id)
            ).all():
                hold = _hold(h)
                holds.setdefault(hold.request_id, []).append(hold)
        return [
            LegalRequest(
                r.id,
                r.authority,
                r.country,
                r.reference,
                r.received,
                r.decision,
                r.legal_basis,
                split_ids(r.categories),
                r.recipient,
                r.note,
                _aware(r.created_at),
                r.created_by,
                int(counts.get(r.id, 0)),
                holds.get(r.id, []),
            )
            for r in rows
        ]

    def names(self, request_id: int, subject: str) -> bool:
        """Whether the request names ``subject`` (compared by keyed hash)."""
        if not _storable(request_id):
            return False
        with reading(self.engine).connect() as conn:
            return (
                conn.execute(
                    select(legal_request_subjects.c.subject_hash).where(
                        legal_request_subjects.c.request_id == request_id,
                        legal_request_subjects.c.subject_hash == self.hash(subject),
                    )
                ).first()
                is not None
            )

    # --- holds -------------------------------------------------------------------------

    def hold(
        self,
        request_id: int,
        *,
        scope: str,
        reason: str,
        actor: str,
        subjects: Sequence[str] | None = None,
    ) -> list[Hold]:
        """Put the request's subjects (or the named ones among them) under a legal hold of
        ``scope`` ('*' or a data category id). Erasure is blocked until it is released.

        Idempotent: a subject already under an active hold of this request and scope keeps
        that hold, which is returned with the new ones."""
        _check_text(reason=reason, actor=actor)
        if not _storable(request_id):
            raise PurposeDenied("unknown_request", f"there is no legal request {request_id}")
        if scope != "*":
            self._check_categories([scope], "scope", rule="scope_undeclared")
        with writing(self.engine).begin() as conn:
            # the request's row lock serialises holds on it (SQLite: the write lock at BEGIN)
            request = conn.execute(
                select(legal_requests.c.authority, legal_requests.c.reference)
                .where(legal_requests.c.id == request_id)
                .with_for_update()
            ).first()
            if request is None:
                raise PurposeDenied("unknown_request", f"there is no legal request {request_id}")
            named = set(
                conn.execute(
                    select(legal_request_subjects.c.subject_hash).where(
                        legal_request_subjects.c.request_id == request_id
                    )
                ).scalars()
            )
            if subjects is None:
                targets = sorted(named)
            else:
                targets = sorted({self.hash(s) for s in subjects})
                if not set(targets) <= named:
                    raise PurposeDenied(
                        "subject_not_in_request",
                        f"subjects: a subject is not named in legal request {request_id}",
                    )
            if not targets:
                raise PurposeDenied(
                    "no_subjects", f"subjects: legal request {request_id} names no subjects"
                )
            text = (
                f"legal request {request_id} ({request.authority}, {request.reference}): {reason}"
            )
            now = self.clock()
            active: dict[str, int] = {
                h: int(i)
                for h, i in conn.execute(
                    select(legal_holds.c.subject_hash, legal_holds.c.id).where(
                        legal_holds.c.request_id == request_id,
                        legal_holds.c.scope == scope,
                        legal_holds.c.released_at.is_(None),
                    )
                ).all()
            }
            created: list[int] = []
            for h in targets:
                if h in active:  # the same hold again: it already holds
                    created.append(active[h])
                    continue
                limit_id = self.vault.limit_in(
                    conn,
                    h,
                    "legal_hold",
                    scope,
                    text,
                    actor=actor,
                    details={"legal_request": request_id},
                )
                created.append(
                    int(
                        conn.execute(
                            insert(legal_holds)
                            .values(
                                request_id=request_id,
                                limit_id=limit_id,
                                subject_hash=h,
                                scope=scope,
                                reason=reason,
                                created_at=now,
                                created_by=actor,
                            )
                            .returning(legal_holds.c.id)
                        ).scalar_one()
                    )
                )
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        return self._holds(created)

    def release(self, hold_id: int, *, reason: str, actor: str) -> Hold:
        """Release one hold, recording why; raises PurposeDenied when it is unknown or was
        already released."""
        _check_text(reason=reason, actor=actor)
        with writing(self.engine).begin() as conn:
            self._release_in(conn, hold_id, reason, actor)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        return self._holds([hold_id])[0]

    def release_request(self, request_id: int, *, reason: str, actor: str) -> list[Hold]:
        """Release every active hold of a request."""
        _check_text(reason=reason, actor=actor)
        if not _storable(request_id):
            raise PurposeDenied("no_active_hold", f"legal request {request_id} has no active hold")
        with writing(self.engine).begin() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    select(legal_holds.c.id).where(
                        legal_holds.c.request_id == request_id,
                        legal_holds.c.released_at.is_(None),
                    )
                ).scalars()
            ]
            if not ids:
                raise PurposeDenied(
                    "no_active_hold", f"legal request {request_id} has no active hold"
                )
            for hold_id in ids:
                self._release_in(conn, hold_id, reason, actor)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        return self._holds(ids)

    def _release_in(self, conn: Connection, hold_id: int, reason: str, actor: str) -> None:
        if not _storable(hold_id):
            raise PurposeDenied("unknown_hold", f"there is no legal hold {hold_id}")
        row = conn.execute(
            select(legal_holds.c.limit_id, legal_holds.c.request_id, legal_holds.c.released_at)
            .where(legal_holds.c.id == hold_id)
        ).first()  # fmt: skip
        if row is None:
            raise PurposeDenied("unknown_hold", f"there is no legal hold {hold_id}")
        if row.released_at is not None:
            raise PurposeDenied("already_released", f"legal hold {hold_id} was already released")
        self.vault.release_in(
            conn,
            row.limit_id,
            actor=actor,
            details={"legal_request": row.request_id, "hold": hold_id},
        )
        conn.execute(
            update(legal_holds)
            .where(legal_holds.c.id == hold_id)
            .values(released_at=self.clock(), released_by=actor, release_reason=reason)
        )

    def _holds(self, ids: Sequence[int]) -> list[Hold]:
        with reading(self.engine).connect() as conn:
            rows = conn.execute(
                select(legal_holds)
                .where(legal_holds.c.id.in_(list(ids)))
                .order_by(legal_holds.c.id)
            ).all()
        return [_hold(r) for r in rows]
