"""Everything the web app needs at run time, opened once per process."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from sqlalchemy import Engine

from troth.audit.log import AuditLog
from troth.config import Settings
from troth.consent.ledger import ConsentLedger
from troth.consent.receipts import ReceiptSigner
from troth.consent.versions import PolicyHistory, publish
from troth.keyring.keys import Keyring
from troth.keyring.open import open_keyring
from troth.keyring.subjects import SubjectHasher
from troth.policy.compiled import CompiledPolicy, compile_policy
from troth.policy.model import Policy
from troth.store.engine import make_engine
from troth.store.migrate import upgrade
from troth.store.secrets import Secrets
from troth.tracking.identity import DailySalts
from troth.tracking.links import LinkSigner
from troth.vault.vault import Vault

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    policy: Policy
    compiled: CompiledPolicy
    engine: Engine
    history: PolicyHistory
    keyring: Keyring
    audit: AuditLog
    ledger: ConsentLedger
    vault: Vault
    links: LinkSigner
    salts: DailySalts

    @classmethod
    def open(cls, policy: Policy, settings: Settings) -> Services:
        """Migrate the database, publish the policy version, load keys. Raises TrothError."""
        engine = make_engine(settings.database_url, pool_size=settings.threads + 4)
        upgrade(engine)
        history = publish(engine, policy)
        secrets = Secrets(settings.keys_dir)
        keyring = open_keyring(settings)
        audit = AuditLog(keyring, secrets.signing_key("audit"), settings.audit_heads)
        recovered = audit.recover(engine)
        if recovered is not None:
            print(
                f"troth: audit entries up to {recovered.size} had no signed head (an earlier "
                "crash?); signed now and marked 'recovered' — `troth audit verify` lists them",
                file=sys.stderr,
            )
        hasher = SubjectHasher(secrets.key("subject"))
        ledger = ConsentLedger(
            engine, policy, history, hasher, ReceiptSigner(secrets.signing_key("receipt")), audit
        )
        compiled = compile_policy(policy)

        def consents(subject: str) -> set[str]:
            state = ledger.effective(subject)
            return {c for c, s in state.categories.items() if s.allowed}

        vault = Vault(engine, compiled, hasher, keyring, audit, consents, settings.erasures)
        return cls(
            settings,
            policy,
            compiled,
            engine,
            history,
            keyring,
            audit,
            ledger,
            vault,
            LinkSigner(secrets.key("tracking-links")),
            DailySalts(engine),
        )
