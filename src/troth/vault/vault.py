"""Purpose-bound access to personal data.

``vault.put(subject, category, value, purpose=...)`` and ``vault.get(subject, categories,
purpose=...)`` are allowed only when the compiled policy declares that purpose for those
categories and its legal basis holds now: consent present for consent-based activities,
no restriction, no objection to a legitimate-interest activity. Every decision, allowed or
denied, is an audit entry; a denial raises :class:`PurposeDenied` naming the rule.

Values are encrypted with AES-256-GCM under a key derived from the subject's data key,
with the subject and category bound in as associated data; erasing the subject destroys
the data key (crypto-shredding).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from troth.audit.log import AuditEvent, AuditLog
from troth.errors import KeyringError, PurposeDenied
from troth.keyring.keys import Keyring
from troth.keyring.subjects import SubjectHasher
from troth.policy.compiled import CompiledPolicy
from troth.store.engine import reading, writing
from troth.store.tables import processing_limits, vault_values

__all__ = ["LimitKind", "Vault", "VaultDecision"]

LimitKind = Literal["restriction", "objection", "legal_hold"]
ConsentLookup = Callable[[str], Collection[str]]


@dataclass(frozen=True)
class VaultDecision:
    allowed: bool
    rule: str
    reason: str
    activities: tuple[str, ...] = ()


def _aad(subject_hash: str, category: str) -> bytes:
    return f"{subject_hash}\x1f{category}".encode()


class Vault:
    def __init__(
        self,
        engine: Engine,
        compiled: CompiledPolicy,
        hasher: SubjectHasher,
        keyring: Keyring,
        audit: AuditLog,
        consents: ConsentLookup,
        erasures: Path | None = None,
    ) -> None:
        """``consents(subject)`` returns the consent categories the subject allows now.

        ``erasures`` is an append-only file, kept apart from the database like the audit
        heads, that lists every erased subject (as its keyed hash) so that restoring an
        older backup can erase them again (:func:`troth.store.backup.replay_erasures`)."""
        self.erasures = erasures
        self.engine = engine
        self.compiled = compiled
        self.hash = hasher
        self.keyring = keyring
        self.audit = audit
        self.consents = consents
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # --- deciding ----------------------------------------------------------------------

    def _limits(self, conn: Connection, subject_hash: str) -> list[tuple[str, str, str]]:
        rows = conn.execute(
            select(
                processing_limits.c.kind, processing_limits.c.scope, processing_limits.c.reason
            ).where(
                processing_limits.c.subject_hash == subject_hash,
                processing_limits.c.released_at.is_(None),
            )
        ).all()
        return [(r.kind, r.scope, r.reason) for r in rows]

    def decide(
        self,
        conn: Connection,
        subject: str,
        subject_hash: str,
        purpose: str,
        categories: Sequence[str],
        activity: str | None = None,
    ) -> VaultDecision:
        decision = self.compiled.decide(purpose, categories, self.consents(subject), activity)
        if not decision.allowed:
            return VaultDecision(False, decision.rule, decision.reason)
        bases = {self.compiled.activities[a].basis_kind for a in decision.activities}
        for kind, scope, _reason in self._limits(conn, subject_hash):
            if scope not in ("*", purpose):
                continue
            if kind == "restriction" and bases - {"legal_obligation"}:
                return VaultDecision(
                    False,
                    "restriction",
                    f"processing for '{purpose}' is restricted for this subject (GDPR Art. 18)",
                )
            if kind == "objection" and "legitimate_interest" in bases:
                return VaultDecision(
                    False,
                    "objection",
                    f"the subject objected to '{purpose}', which rests on legitimate interest "
                    "(GDPR Art. 21)",
                )
        return VaultDecision(True, "allowed", "", decision.activities)

    def _audit_decision(
        self,
        conn: Connection,
        action: str,
        actor: str,
        subject_hash: str,
        purpose: str,
        categories: Sequence[str],
        decision: VaultDecision,
        details: dict[str, object] | None = None,
    ) -> None:
        self.audit.append(
            conn,
            [
                AuditEvent(
                    action if decision.allowed else "vault.denied",
                    actor,
                    subject_hash,
                    {
                        "operation": action,
                        "purpose": purpose,
                        "categories": sorted(categories),
                        "rule": decision.rule,
                        "activities": list(decision.activities),
                        **(details or {}),
                    },
                )
            ],
        )

    def _deny(self, decision: VaultDecision) -> PurposeDenied:
        return PurposeDenied(decision.rule, decision.reason)

    # --- the two operations ------------------------------------------------------------

    def put(
        self,
        subject: str,
        category: str,
        value: str,
        *,
        purpose: str,
        actor: str = "service",
        activity: str | None = None,
    ) -> None:
        subject_hash = self.hash(subject)
        with writing(self.engine).begin() as conn:
            decision = self.decide(conn, subject, subject_hash, purpose, [category], activity)
            self._audit_decision(
                conn, "vault.write", actor, subject_hash, purpose, [category], decision
            )
            if decision.allowed:
                dek = self.keyring.data_key(conn, subject_hash, create=True)
                assert dek is not None
                nonce = os.urandom(12)
                sealed = nonce + AESGCM(self.keyring.value_key(dek)).encrypt(
                    nonce, value.encode(), _aad(subject_hash, category)
                )
                stmt = self._insert(vault_values).values(
                    subject_hash=subject_hash,
                    category=category,
                    ciphertext=sealed,
                    updated_at=dt.datetime.now(dt.UTC),
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["subject_hash", "category"],
                        set_={
                            "ciphertext": stmt.excluded.ciphertext,
                            "updated_at": stmt.excluded.updated_at,
                        },
                    )
                )
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        if not decision.allowed:
            raise self._deny(decision)

    def get(
        self,
        subject: str,
        categories: Sequence[str],
        *,
        purpose: str,
        actor: str = "service",
        activity: str | None = None,
    ) -> dict[str, str | None]:
        subject_hash = self.hash(subject)
        with writing(self.engine).begin() as conn:
            decision, values = self.read_in(
                conn, subject, subject_hash, categories, purpose, actor, activity
            )
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        if not decision.allowed:
            raise self._deny(decision)
        return values

    def read_in(
        self,
        conn: Connection,
        subject: str,
        subject_hash: str,
        categories: Sequence[str],
        purpose: str,
        actor: str,
        activity: str | None = None,
        *,
        action: str = "vault.read",
        details: dict[str, object] | None = None,
    ) -> tuple[VaultDecision, dict[str, str | None]]:
        """Decide and, when allowed, read inside the caller's transaction; the decision is
        audited either way (``details`` are added to the audit entry). The caller takes the
        audit head. Used by :meth:`get` and by disclosures to recipients, which record the
        disclosure in the same transaction."""
        values: dict[str, str | None] = dict.fromkeys(categories)
        decision = self.decide(conn, subject, subject_hash, purpose, categories, activity)
        self._audit_decision(
            conn, action, actor, subject_hash, purpose, categories, decision, details
        )
        if decision.allowed:
            rows = conn.execute(
                select(vault_values.c.category, vault_values.c.ciphertext).where(
                    vault_values.c.subject_hash == subject_hash,
                    vault_values.c.category.in_(list(categories)),
                )
            ).all()
            dek = self.keyring.data_key(conn, subject_hash, create=False) if rows else None
            for row in rows:
                if dek is None:
                    break
                values[row.category] = self._open(dek, subject_hash, row.category, row.ciphertext)
        return decision, values

    def _open(self, dek: bytes, subject_hash: str, category: str, sealed: bytes) -> str:
        try:
            plain = AESGCM(self.keyring.value_key(dek)).decrypt(
                sealed[:12], sealed[12:], _aad(subject_hash, category)
            )
        except InvalidTag:
            raise KeyringError(
                f"the stored value for category '{category}' cannot be decrypted: it was "
                "altered, or it does not belong to this subject"
            ) from None
        return plain.decode()

    # --- limits and erasure ------------------------------------------------------------

    def limit(self, subject: str, kind: LimitKind, scope: str, reason: str, *, actor: str) -> int:
        """Record a restriction, objection ('*' or a purpose id) or legal hold ('*' or a data
        category id); returns the limit's id."""
        subject_hash = self.hash(subject)
        with writing(self.engine).begin() as conn:
            limit_id = self.limit_in(conn, subject_hash, kind, scope, reason, actor=actor)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        return limit_id

    def limit_in(
        self,
        conn: Connection,
        subject_hash: str,
        kind: LimitKind,
        scope: str,
        reason: str,
        *,
        actor: str,
        details: dict[str, object] | None = None,
    ) -> int:
        """:meth:`limit` inside the caller's transaction (the caller takes the audit head)."""
        result = conn.execute(
            insert(processing_limits)
            .values(
                subject_hash=subject_hash,
                kind=kind,
                scope=scope,
                reason=reason,
                created_at=dt.datetime.now(dt.UTC),
            )
            .returning(processing_limits.c.id)
        )
        limit_id = int(result.scalar_one())
        self.audit.append(
            conn,
            [AuditEvent(f"limit.{kind}", actor, subject_hash, {"scope": scope, **(details or {})})],
        )
        return limit_id

    def release_in(
        self,
        conn: Connection,
        limit_id: int,
        *,
        actor: str,
        details: dict[str, object] | None = None,
    ) -> bool:
        """Release one limit by id inside the caller's transaction; False if it was not
        active. The caller takes the audit head."""
        row = conn.execute(
            select(
                processing_limits.c.subject_hash,
                processing_limits.c.kind,
                processing_limits.c.scope,
            ).where(processing_limits.c.id == limit_id, processing_limits.c.released_at.is_(None))
        ).first()
        if row is None:
            return False
        conn.execute(
            update(processing_limits)
            .where(processing_limits.c.id == limit_id)
            .values(released_at=dt.datetime.now(dt.UTC))
        )
        self.audit.append(
            conn,
            [
                AuditEvent(
                    f"limit.{row.kind}.released",
                    actor,
                    row.subject_hash,
                    {"scope": row.scope, **(details or {})},
                )
            ],
        )
        return True

    def release(self, subject: str, kind: LimitKind, scope: str, *, actor: str) -> int:
        subject_hash = self.hash(subject)
        with writing(self.engine).begin() as conn:
            result = conn.execute(
                update(processing_limits)
                .where(
                    processing_limits.c.subject_hash == subject_hash,
                    processing_limits.c.kind == kind,
                    processing_limits.c.scope == scope,
                    processing_limits.c.released_at.is_(None),
                )
                .values(released_at=dt.datetime.now(dt.UTC))
            )
            self.audit.append(
                conn, [AuditEvent(f"limit.{kind}.released", actor, subject_hash, {"scope": scope})]
            )
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        return int(result.rowcount)

    def holdings_of(
        self, conn: Connection, subject_hashes: Sequence[str], *, open_values: bool = False
    ) -> list[tuple[str, str, dt.datetime, str | None]]:
        """(subject hash, category, updated at, value) of every value these subjects have in
        the vault. Values are opened only with ``open_values`` — for the subject's own access
        request, which its caller audits — and are None otherwise or once the key is gone."""
        query = select(
            vault_values.c.subject_hash,
            vault_values.c.category,
            vault_values.c.updated_at,
            vault_values.c.ciphertext,
        ).where(vault_values.c.subject_hash.in_(list(subject_hashes)))
        out: list[tuple[str, str, dt.datetime, str | None]] = []
        for r in conn.execute(query):
            value = None
            if open_values:
                dek = self.keyring.data_key(conn, r.subject_hash, create=False)
                if dek is not None:
                    value = self._open(dek, r.subject_hash, r.category, r.ciphertext)
            out.append((r.subject_hash, r.category, r.updated_at, value))
        return out

    def holds(self, subject: str) -> list[tuple[str, str]]:
        """The subject's active legal holds as (scope, reason); scope is '*' (all data) or a
        data category id. Erasure elsewhere (data subject rights) keeps what they cover."""
        with reading(self.engine).connect() as conn:
            limits = self._limits(conn, self.hash(subject))
        return [(scope, reason) for kind, scope, reason in limits if kind == "legal_hold"]

    def erase(self, subject: str, *, actor: str) -> dict[str, int]:
        """Delete the subject's values and destroy their data key, unless a legal hold says no."""
        subject_hash = self.hash(subject)
        with writing(self.engine).begin() as conn:
            holds = [r for k, s, r in self._limits(conn, subject_hash) if k == "legal_hold"]
            if holds:
                self.audit.append(
                    conn,
                    [AuditEvent("erasure.blocked", actor, subject_hash, {"holds": len(holds)})],
                )
                head = self.audit.take_head(conn)
            else:
                self.audit.append(
                    conn, [AuditEvent("erasure", actor, subject_hash, {"store": "vault"})]
                )
                values = conn.execute(
                    delete(vault_values).where(vault_values.c.subject_hash == subject_hash)
                ).rowcount
                shredded = self.keyring.shred(conn, subject_hash)
                head = self.audit.take_head(conn)
        self.audit.publish(head)
        if holds:
            raise PurposeDenied(
                "legal_hold", "erasure is blocked by a legal hold: " + "; ".join(holds)
            )
        self._tombstone(subject_hash)
        return {"values": int(values), "keys": int(shredded)}

    def erase_hashed(self, conn: Connection, subject_hash: str) -> dict[str, int]:
        """Erase by keyed hash inside the caller's transaction (used when replaying
        erasures after a restore: the subject's identifier is no longer known)."""
        values = conn.execute(
            delete(vault_values).where(vault_values.c.subject_hash == subject_hash)
        ).rowcount
        shredded = self.keyring.shred(conn, subject_hash)
        return {"values": int(values), "keys": int(shredded)}

    def _tombstone(self, subject_hash: str) -> None:
        if self.erasures is None:
            return
        line = json.dumps({"subject_hash": subject_hash, "at": dt.datetime.now(dt.UTC).isoformat()})
        self.erasures.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.erasures, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
