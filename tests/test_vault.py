"""The vault: purpose-bound, audited, encrypted per subject, crypto-shredded on erasure."""

from __future__ import annotations

import os
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update

from troth.audit.log import AuditLog
from troth.consent.ledger import ConsentChange, ConsentLedger
from troth.consent.receipts import ReceiptSigner
from troth.consent.versions import publish
from troth.errors import KeyringError, PurposeDenied
from troth.keyring.kek import LocalKEK, load_kek
from troth.keyring.keys import Keyring
from troth.keyring.subjects import SubjectHasher
from troth.policy.compiled import compile_policy
from troth.store.engine import make_engine, writing
from troth.store.migrate import upgrade
from troth.store.tables import audit_entries, subject_keys, vault_values
from troth.vault.vault import Vault


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


class World:
    def __init__(self, engine, policy, tmp_path, kek: LocalKEK | None = None):
        self.kek = kek or LocalKEK(os.urandom(32))
        self.hasher = SubjectHasher(b"s" * 32)
        self.keyring = Keyring(self.kek)
        self.audit = AuditLog(self.keyring, Ed25519PrivateKey.generate(), tmp_path / "heads.jsonl")
        self.ledger = ConsentLedger(
            engine, policy, publish(engine, policy), self.hasher,
            ReceiptSigner(Ed25519PrivateKey.generate()), self.audit,
        )  # fmt: skip

        def consents(subject):
            state = self.ledger.effective(subject)
            return {c for c, s in state.categories.items() if s.allowed}

        self.vault = Vault(
            engine, compile_policy(policy), self.hasher, self.keyring, self.audit, consents
        )


@pytest.fixture
def world(engine, seed, tmp_path):
    return World(engine, seed.policy, tmp_path)


def someone() -> str:
    return "acct:" + secrets.token_hex(8)


def test_contract_purpose_can_write_and_read(world):
    s = someone()
    world.vault.put(s, "bandwidth_usage", "123 GB", purpose="provide_service")
    assert world.vault.get(s, ["bandwidth_usage"], purpose="provide_service") == {
        "bandwidth_usage": "123 GB"
    }


def test_consent_purpose_needs_consent(world):
    s = someone()
    with pytest.raises(PurposeDenied) as denied:
        world.vault.put(
            s, "usage", "pages: /plans", purpose="analytics", activity="usage_analytics"
        )
    assert denied.value.rule == "consent"
    assert "analytics" in str(denied.value)
    world.ledger.record(ConsentChange(s, {"analytics": "given"}, "api", "en", "1.1.0"))
    world.vault.put(s, "usage", "pages: /plans", purpose="analytics", activity="usage_analytics")
    world.ledger.record(ConsentChange(s, {"analytics": "refused"}, "api", "en", "1.1.0"))
    with pytest.raises(PurposeDenied, match="consent"):
        world.vault.get(s, ["usage"], purpose="analytics", activity="usage_analytics")


@pytest.mark.parametrize(
    ("purpose", "category"),
    [("profiling", "account"), ("provide_service", "feedback"), ("provide_service", "shoe_size")],
)
def test_undeclared_purpose_or_category_is_denied_by_policy(world, purpose, category):
    with pytest.raises(PurposeDenied) as denied:
        world.vault.get(someone(), [category], purpose=purpose)
    assert denied.value.rule == "policy"


def test_restriction_allows_only_legal_obligations(world):
    s = someone()
    world.vault.put(s, "billing", "plan: plus", purpose="provide_service")
    world.vault.limit(s, "restriction", "*", "accuracy contested", actor="officer")
    with pytest.raises(PurposeDenied) as denied:
        world.vault.get(s, ["billing"], purpose="provide_service")
    assert denied.value.rule == "restriction"
    kept = world.vault.get(s, ["billing"], purpose="legal_compliance", activity="record_keeping")
    assert kept == {"billing": "plan: plus"}
    with pytest.raises(PurposeDenied) as legal_claims:  # legitimate interest: restricted too
        world.vault.get(s, ["billing"], purpose="legal_compliance", activity="legal_claims")
    assert legal_claims.value.rule == "restriction"
    assert world.vault.release(s, "restriction", "*", actor="officer") == 1
    assert world.vault.get(s, ["billing"], purpose="provide_service")["billing"] == "plan: plus"


def test_objection_stops_legitimate_interest_only(world):
    s = someone()
    world.vault.put(s, "feedback", "more servers in Asia", purpose="develop_services")
    world.vault.put(s, "account", "Alex", purpose="provide_service")
    world.vault.limit(s, "objection", "develop_services", "objected by e-mail", actor="officer")
    with pytest.raises(PurposeDenied) as denied:
        world.vault.get(s, ["feedback"], purpose="develop_services")
    assert denied.value.rule == "objection"
    assert world.vault.get(s, ["account"], purpose="provide_service") == {"account": "Alex"}


def test_every_decision_is_audited_without_personal_data(world, engine):
    s = someone()
    world.vault.put(s, "account", "Alex Example", purpose="provide_service")
    with pytest.raises(PurposeDenied):
        world.vault.get(s, ["account"], purpose="advertising")
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entries).order_by(audit_entries.c.seq)).all()
    assert [r.action for r in rows] == ["vault.write", "vault.denied"]
    assert '"rule":"policy"' in rows[1].details
    dump = repr(rows)
    assert s not in dump
    assert "Alex" not in dump
    assert world.audit.verify(engine).ok


def test_values_are_encrypted_and_bound_to_their_subject(world, engine):
    a, b = someone(), someone()
    world.vault.put(a, "account", "Alice Secret", purpose="provide_service")
    world.vault.put(b, "account", "Bob Secret", purpose="provide_service")
    with engine.connect() as conn:
        stored = {r.subject_hash: r.ciphertext for r in conn.execute(select(vault_values))}
    assert all(b"Secret" not in c for c in stored.values())
    ha, hb = world.hasher(a), world.hasher(b)
    with writing(engine).begin() as conn:  # move Bob's ciphertext onto Alice
        conn.execute(
            update(vault_values)
            .where(vault_values.c.subject_hash == ha)
            .values(ciphertext=stored[hb])
        )
    with pytest.raises(KeyringError, match="does not belong to this subject"):
        world.vault.get(a, ["account"], purpose="provide_service")


def test_corrupted_ciphertext_is_a_clear_error(world, engine):
    s = someone()
    world.vault.put(s, "account", "Alex", purpose="provide_service")
    with writing(engine).begin() as conn:
        conn.execute(update(vault_values).values(ciphertext=os.urandom(40)))
    with pytest.raises(KeyringError, match="cannot be decrypted"):
        world.vault.get(s, ["account"], purpose="provide_service")


def test_wrong_kek_is_a_clear_error(engine, seed, tmp_path):
    first = World(engine, seed.policy, tmp_path)
    s = someone()
    first.vault.put(s, "account", "Alex", purpose="provide_service")
    other = World(engine, seed.policy, tmp_path / "other")
    with pytest.raises(KeyringError, match=r"not loaded|does not open"):
        other.vault.get(s, ["account"], purpose="provide_service")


def test_missing_or_malformed_kek_file(tmp_path):
    with pytest.raises(KeyringError, match="does not exist"):
        load_kek(tmp_path / "nope.key", None)
    (tmp_path / "short.key").write_bytes(b"x" * 5)
    with pytest.raises(KeyringError, match="32 bytes"):
        load_kek(tmp_path / "short.key", None)
    with pytest.raises(KeyringError, match="base64"):
        load_kek(None, "not base64!!")


def test_erasure_shreds_the_key_and_legal_hold_blocks_it(world, engine):
    s = someone()
    world.vault.put(s, "account", "Alex", purpose="provide_service")
    world.vault.limit(s, "legal_hold", "*", "court order 2026/17", actor="officer")
    with pytest.raises(PurposeDenied, match="court order 2026/17") as blocked:
        world.vault.erase(s, actor="officer")
    assert blocked.value.rule == "legal_hold"
    assert world.vault.get(s, ["account"], purpose="provide_service") == {"account": "Alex"}
    world.vault.release(s, "legal_hold", "*", actor="officer")
    assert world.vault.erase(s, actor="officer") == {"values": 1, "keys": 1}
    with engine.connect() as conn:
        h = world.hasher(s)
        assert (
            conn.execute(
                select(func.count())
                .select_from(vault_values)
                .where(vault_values.c.subject_hash == h)
            ).scalar()
            == 0
        )
    assert world.vault.get(s, ["account"], purpose="provide_service") == {"account": None}
    assert world.audit.verify(engine).ok


def test_rotation_rewraps_keys_without_touching_values(world, engine, seed, tmp_path):
    subjects = [someone() for _ in range(25)]
    for s in subjects:
        world.vault.put(s, "account", f"name of {s}", purpose="provide_service")
    with engine.connect() as conn:
        before = {r.subject_hash: r.ciphertext for r in conn.execute(select(vault_values))}
    new = LocalKEK(os.urandom(32))
    rotated = Keyring(new, {world.kek.id: world.kek})
    assert rotated.rotate(engine, batch=10) >= 25
    with engine.connect() as conn:
        assert {r.kek_id for r in conn.execute(select(subject_keys))} == {new.id}
        after = {r.subject_hash: r.ciphertext for r in conn.execute(select(vault_values))}
    assert before == after
    again = World(engine, seed.policy, tmp_path / "after", kek=new)
    assert again.vault.get(subjects[3], ["account"], purpose="provide_service") == {
        "account": f"name of {subjects[3]}"
    }


def test_troth_never_chooses_a_legal_basis_for_the_caller(world):
    """Where one purpose uses a category on several bases, the caller names the activity."""
    s = someone()
    world.vault.put(
        s, "contact", "alex@example.org", purpose="communicate", activity="service_communications"
    )
    with pytest.raises(PurposeDenied) as ambiguous:
        world.vault.get(s, ["contact"], purpose="communicate")
    assert ambiguous.value.rule == "ambiguous"
    assert "marketing_prospects" in str(ambiguous.value)
    with pytest.raises(PurposeDenied) as no_consent:
        world.vault.get(s, ["contact"], purpose="communicate", activity="marketing_prospects")
    assert no_consent.value.rule == "consent"
    world.vault.limit(s, "objection", "communicate", "no news, thanks", actor="officer")
    with pytest.raises(PurposeDenied) as objected:
        world.vault.get(s, ["contact"], purpose="communicate", activity="product_news_customers")
    assert objected.value.rule == "objection"
    notice = world.vault.get(
        s, ["contact"], purpose="communicate", activity="service_communications"
    )
    assert notice == {"contact": "alex@example.org"}


def test_a_named_activity_must_belong_to_the_purpose_and_use_the_category(world):
    for activity, message in [("metered_plan", "has no activity"), ("support", "does not use")]:
        with pytest.raises(PurposeDenied, match=message) as denied:
            world.vault.get(
                someone(),
                ["billing"],
                purpose="communicate" if activity == "metered_plan" else "provide_service",
                activity=activity,
            )
        assert denied.value.rule == "policy"


def test_a_subject_who_returns_after_erasure_gets_a_new_key(world, engine):
    s = someone()
    world.vault.put(s, "account", "first life", purpose="provide_service")
    world.vault.erase(s, actor="officer")
    for _ in range(3):  # every pooled connection must have forgotten the shredded key
        world.vault.put(s, "account", "second life", purpose="provide_service")
        assert world.vault.get(s, ["account"], purpose="provide_service") == {
            "account": "second life"
        }
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(subject_keys)).scalar() == 1
