"""Everything the web app needs at run time, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from troth.config import Settings
from troth.consent.ledger import ConsentLedger
from troth.consent.receipts import ReceiptSigner
from troth.consent.versions import PolicyHistory, publish
from troth.keyring.subjects import SubjectHasher
from troth.policy.compiled import CompiledPolicy, compile_policy
from troth.policy.model import Policy
from troth.store.engine import make_engine
from troth.store.migrate import upgrade
from troth.store.secrets import Secrets

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    policy: Policy
    compiled: CompiledPolicy
    engine: Engine
    history: PolicyHistory
    ledger: ConsentLedger

    @classmethod
    def open(cls, policy: Policy, settings: Settings) -> Services:
        """Migrate the database, publish the policy version, load keys. Raises TrothError."""
        engine = make_engine(settings.database_url)
        upgrade(engine)
        history = publish(engine, policy)
        secrets = Secrets(settings.keys_dir)
        ledger = ConsentLedger(
            engine,
            policy,
            history,
            SubjectHasher(secrets.key("subject")),
            ReceiptSigner(secrets.signing_key("receipt")),
        )
        return cls(settings, policy, compile_policy(policy), engine, history, ledger)
