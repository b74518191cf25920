"""The consent ledger and its store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text

from troth.audit.log import AuditLog
from troth.consent.ledger import ConsentChange, ConsentLedger
from troth.consent.receipts import ReceiptSigner, verify_receipt
from troth.consent.versions import load_history, publish
from troth.errors import ConsentError, PublishError, ReceiptError, StoreError
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.keyring.subjects import SubjectHasher
from troth.policy.loader import load_policy
from troth.store.batch import BatchWriter
from troth.store.engine import make_engine
from troth.store.migrate import check_current, upgrade
from troth.store.tables import consent_current, consent_events, policy_versions


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def ledger_for(engine, policy, heads=None) -> ConsentLedger:
    history = publish(engine, policy)
    audit = AuditLog(
        Keyring(LocalKEK(b"e" * 32)),
        Ed25519PrivateKey.generate(),
        heads or Path(tempfile.mkdtemp()) / "heads.jsonl",
    )
    return ConsentLedger(
        engine,
        policy,
        history,
        SubjectHasher(b"k" * 32),
        ReceiptSigner(Ed25519PrivateKey.generate()),
        audit,
    )


@pytest.fixture
def ledger(engine, seed):
    return ledger_for(engine, seed.policy)


def change(subject, **choices):
    return ConsentChange(
        subject=subject,
        choices=choices,
        method="api",
        language="en",
        policy_version="1.1.0",
    )


def visitor() -> str:
    return secrets.token_urlsafe(16)


def test_fresh_database_is_refused_until_migrated(db_url):
    eng = make_engine(db_url)
    with pytest.raises(StoreError, match="troth db upgrade"):
        check_current(eng)
    upgrade(eng)
    upgrade(eng)  # idempotent
    check_current(eng)
    eng.dispose()


def test_bad_database_url_is_a_clear_error():
    with pytest.raises(StoreError, match="unsupported database"):
        make_engine("mongodb://localhost/x")
    with pytest.raises(StoreError, match="not valid"):
        make_engine("::::")


def test_record_and_read_back(ledger):
    v = visitor()
    receipt = ledger.record(change(v, analytics="given", advertising="refused"))
    verify_receipt(receipt, ledger.signer.public)
    state = ledger.effective(v)
    assert state.allowed("analytics")
    assert not state.allowed("advertising")
    assert state.categories["necessary"].required
    assert state.allowed("necessary")
    assert state.categories["preferences"].status == "undecided"
    assert not state.allowed("preferences")


def test_refusing_what_was_given_is_a_withdrawal(ledger):
    v = visitor()
    ledger.record(change(v, analytics="given"))
    receipt = ledger.record(change(v, analytics="refused"))
    assert receipt["choices"] == {"analytics": "withdrawn"}
    assert ledger.effective(v).categories["analytics"].status == "withdrawn"
    history = ledger.history_of(v)
    assert [e["choices"]["analytics"] for e in history] == ["given", "withdrawn"]


def test_history_is_append_only_and_receipts_come_back_verbatim(ledger):
    v = visitor()
    first = ledger.record(change(v, analytics="given"))
    ledger.record(change(v, analytics="refused"))
    again = ledger.receipt(v, first["receipt_id"])
    assert again == first
    verify_receipt(again, ledger.signer.public)
    assert ledger.receipt(visitor(), first["receipt_id"]) is None


def test_tampered_receipt_does_not_verify(ledger):
    receipt = ledger.record(change(visitor(), analytics="refused"))
    forged = {**receipt, "choices": {"analytics": "given"}}
    with pytest.raises(ReceiptError, match="altered"):
        verify_receipt(forged, ledger.signer.public)
    with pytest.raises(ReceiptError, match="signed with key"):
        verify_receipt(receipt, Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({}, "at least one"),
        ({"necessary": "refused"}, "cannot be refused"),
        ({"marketing": "given"}, "not a consent category"),
    ],
)
def test_invalid_changes_are_refused_and_change_nothing(ledger, engine, choices, message):
    with pytest.raises(ConsentError, match=message):
        ledger.record(change(visitor(), **choices))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consent_events)).scalar() == 0


def test_unknown_language_version_and_jurisdiction_are_refused(ledger):
    base = change(visitor(), analytics="given")
    for field, value, message in [
        ("language", "fr", "language"),
        ("policy_version", "0.9", "never published"),
        ("jurisdiction", "mars", "jurisdiction"),
    ]:
        bad = ConsentChange(**{**base.__dict__, field: value})
        with pytest.raises(ConsentError, match=message):
            ledger.record(bad)


def test_gpc_refuses_advertising_where_the_law_makes_it_an_opt_out(ledger):
    v = visitor()
    us = ConsentChange(v, {"advertising": "given"}, "api", "en", "1.1.0", "us_ca", gpc=True)
    receipt = ledger.record(us)
    assert receipt["choices"]["advertising"] == "refused"
    assert not ledger.effective(v, "us_ca", gpc=True).allowed("advertising")
    eu = ConsentChange(visitor(), {"advertising": "given"}, "api", "en", "1.1.0", "eu", gpc=True)
    assert ledger.record(eu)["choices"]["advertising"] == "given"


def test_opt_out_regions_allow_until_refused(ledger):
    v = visitor()
    assert ledger.effective(v, "us_ca").allowed("analytics")
    assert not ledger.effective(v, "eu").allowed("analytics")
    ledger.record(ConsentChange(v, {"analytics": "refused"}, "api", "en", "1.1.0", "us_ca"))
    assert not ledger.effective(v, "us_ca").allowed("analytics")


def test_subjects_never_reach_the_database_in_clear(ledger, engine):
    v = visitor()
    ledger.record(change(v, analytics="given"))
    with engine.connect() as conn:
        for table in (consent_events, consent_current):
            for row in conn.execute(select(table)).all():
                assert v not in repr(tuple(row))


def test_publishing_is_immutable_and_ordered(engine, seed, seed_variant):
    publish(engine, seed.policy)
    publish(engine, seed.policy)  # same version, same content: nothing happens
    reworded = load_policy(
        seed_variant(lambda d: d["purposes"][0].update(title={"en": "Run", "de": "Betrieb"}))
    ).policy
    with pytest.raises(PublishError, match="already published with different content"):
        publish(engine, reworded)
    older = load_policy(seed_variant(lambda d: d.update(version="0.9.0"))).policy
    with pytest.raises(PublishError, match="not newer"):
        publish(engine, older)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(policy_versions)).scalar() == 1


def _add_ad_cookie(d):
    d["version"] = "1.2.0"
    d["tracking"].append(
        {
            "id": "social_cookie",
            "type": "cookie",
            "name": "_snp",
            "party": "third",
            "vendor": "google_ads",
            "category": "advertising",
            "expiry": "P90D",
            "purposes": ["advertising"],
            "description": {"en": "Retargeting.", "de": "Retargeting."},
        }
    )


def test_material_change_expires_consent_for_that_category_only(engine, seed, seed_variant):
    v1 = ledger_for(engine, seed.policy)
    v = visitor()
    v1.record(change(v, analytics="given", advertising="given"))
    v2_policy = load_policy(seed_variant(_add_ad_cookie)).policy
    v2 = ledger_for(engine, v2_policy)
    assert load_history(engine).current.reconsent == ("advertising",)
    assert v2.revisions["advertising"] == 2
    assert v2.revisions["analytics"] == 1
    state = v2.effective(v)
    assert state.categories["advertising"].status == "expired"
    assert not state.allowed("advertising")
    assert state.allowed("analytics")
    fresh = ConsentChange(v, {"advertising": "given"}, "api", "en", "1.2.0")
    v2.record(fresh)
    assert v2.effective(v).allowed("advertising")


def test_group_commit_acknowledges_every_write(ledger, engine):
    subjects = [visitor() for _ in range(150)]

    async def run() -> list[dict]:
        writer = BatchWriter(
            engine, max_batch=64, finish=ledger.audit.take_head, after_commit=ledger.audit.publish
        )
        writer.start()
        try:
            return await asyncio.gather(
                *(writer.submit(ledger.prepare(change(s, analytics="given"))) for s in subjects)
            )
        finally:
            await writer.stop()

    receipts = asyncio.run(run())
    assert len({r["receipt_id"] for r in receipts}) == 150
    assert sorted(r["audit_index"] for r in receipts) == list(range(150))
    assert ledger.audit.verify(engine).ok
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consent_events)).scalar() == 150
    assert all(ledger.effective(s).allowed("analytics") for s in subjects[:10])


def test_one_failing_write_does_not_sink_its_batch(ledger, engine):
    async def run():
        writer = BatchWriter(engine, max_batch=64)
        writer.start()

        def broken(conn):
            conn.execute(text("SELECT * FROM no_such_table"))

        try:
            return await asyncio.gather(
                writer.submit(ledger.prepare(change(visitor(), analytics="given"))),
                writer.submit(broken),
                writer.submit(ledger.prepare(change(visitor(), analytics="given"))),
                return_exceptions=True,
            )
        finally:
            await writer.stop()

    ok1, failed, ok2 = asyncio.run(run())
    assert isinstance(failed, Exception)
    assert ok1["receipt_id"] != ok2["receipt_id"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consent_events)).scalar() == 2


def test_effective_many_answers_as_effective_hashed_for_each_subject(engine, seed, seed_variant):
    v1 = ledger_for(engine, seed.policy)
    given, refused, withdrawn, expired, undecided = (visitor() for _ in range(5))
    v1.record(change(given, analytics="given", preferences="given"))
    v1.record(change(refused, analytics="refused", advertising="refused"))
    v1.record(change(withdrawn, advertising="given"))
    v1.record(change(withdrawn, advertising="refused"))
    v1.record(change(expired, advertising="given", analytics="given"))
    ledger = ledger_for(engine, load_policy(seed_variant(_add_ad_cookie)).policy)
    hashes = [ledger.hash(v) for v in (given, refused, withdrawn, expired, undecided)]
    statuses = set()
    for jurisdiction, gpc in [(None, False), ("eu", True), ("us_ca", False), ("us_ca", True)]:
        many = ledger.effective_many(hashes + hashes[:2], jurisdiction, gpc)
        assert list(many) == hashes  # each subject once, none missing
        for h in hashes:
            one = ledger.effective_hashed(h, jurisdiction, gpc)
            assert many[h] == one
            statuses.update(s.status for s in one.categories.values())
    assert statuses >= {"given", "refused", "withdrawn", "expired", "undecided"}
    assert not ledger.effective_many([hashes[3]], "us_ca", True)[hashes[3]].allowed(
        "advertising"
    )  # GPC refuses where the law makes it an opt-out
    assert ledger.effective_many([], "eu") == {}
    with pytest.raises(ConsentError, match="jurisdiction: 'mars' is not declared"):
        ledger.effective_many(hashes, "mars")


def test_effective_many_reads_in_one_query(ledger, engine):
    from sqlalchemy import event

    subjects = [visitor() for _ in range(40)]
    for v in subjects[:20]:
        ledger.record(change(v, analytics="given"))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if "consent_current" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        many = ledger.effective_many([ledger.hash(v) for v in subjects], "eu")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert [many[ledger.hash(v)].allowed("analytics") for v in subjects] == [True] * 20 + [
        False
    ] * 20
