"""A transfers world on a real database: vault, audit log, disclosure log, legal requests."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select

from troth.audit.log import AuditLog
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.keyring.subjects import SubjectHasher
from troth.policy.compiled import compile_policy
from troth.policy.model import Policy
from troth.store.tables import audit_entries
from troth.transfers.disclosures import DisclosureLog
from troth.transfers.legal import LegalRequests
from troth.vault.vault import Vault

# A day on which every mechanism of the seed policy holds (after its effective date).
TODAY = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


class World:
    def __init__(self, engine: Engine, policy: Policy, tmp_path: Path) -> None:
        self.engine = engine
        self.policy = policy
        self.hasher = SubjectHasher(b"t" * 32)
        self.keyring = Keyring(LocalKEK(os.urandom(32)))
        self.audit = AuditLog(self.keyring, Ed25519PrivateKey.generate(), tmp_path / "heads.jsonl")
        # contract and legal-obligation purposes need no consent; none is given here
        self.vault = Vault(
            engine, compile_policy(policy), self.hasher, self.keyring, self.audit, lambda s: set()
        )
        self.disclosures = DisclosureLog(
            engine, policy, self.hasher, self.audit, self.vault, clock=lambda: TODAY
        )
        self.legal = LegalRequests(
            engine, policy, self.hasher, self.audit, self.vault, self.disclosures,
            clock=lambda: TODAY,
        )  # fmt: skip

    def audit_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_entries).order_by(audit_entries.c.seq)).all()
        return [{**r._mapping, "details": json.loads(r.details)} for r in rows]


def someone() -> str:
    return "acct:" + secrets.token_hex(8)
