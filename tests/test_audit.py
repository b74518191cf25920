"""The audit log detects every edit, removal, reordering, insertion and truncation."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update

from troth.audit.log import AuditEvent, AuditLog, entry_bytes, read_heads
from troth.audit.merkle import Frontier, inclusion_path, leaf_hash, root_of, verify_inclusion
from troth.errors import AuditError
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.store.engine import make_engine, writing
from troth.store.migrate import upgrade
from troth.store.tables import audit_entries


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def log(tmp_path):
    return AuditLog(
        Keyring(LocalKEK(os.urandom(32))), Ed25519PrivateKey.generate(), tmp_path / "heads.jsonl"
    )


def fill(engine, log, batches=5, per=4):
    for b in range(batches):
        log.record(
            engine,
            [
                AuditEvent("consent.changed", "api", f"{b:02d}{i:02d}" * 16, {"n": b * per + i})
                for i in range(per)
            ],
        )


def rewrite(engine, seq, **values):
    with writing(engine).begin() as conn:
        conn.execute(update(audit_entries).where(audit_entries.c.seq == seq).values(**values))


def test_untouched_log_verifies(engine, log):
    fill(engine, log)
    report = log.verify(engine)
    assert report.ok, report.problem
    assert report.size == 20
    assert report.signed_size == 20
    assert report.heads == 5


def test_edited_entry_is_named(engine, log):
    fill(engine, log)
    rewrite(engine, 7, details='{"n":700}')
    report = log.verify(engine)
    assert not report.ok
    assert report.first_bad_index == 7
    assert "altered" in report.problem


def test_edit_with_recomputed_hash_is_caught_by_the_signed_heads(engine, log):
    fill(engine, log)
    with engine.connect() as conn:
        row = conn.execute(select(audit_entries).where(audit_entries.c.seq == 9)).one()
    details = '{"n":900}'
    leaf = leaf_hash(entry_bytes(9, row.at, row.actor, row.action, row.subject_ref, details))
    rewrite(engine, 9, details=details, leaf_hash=leaf.hex())
    report = log.verify(engine)
    assert not report.ok
    assert report.first_bad_index == 8  # the first index after the last head that still matches
    assert "do not match the head" in report.problem


def test_removed_entry_is_named(engine, log):
    fill(engine, log)
    with writing(engine).begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq == 5))
    report = log.verify(engine)
    assert report.first_bad_index == 5
    assert "missing" in report.problem


def test_swapped_entries_are_named(engine, log):
    fill(engine, log)
    with engine.connect() as conn:
        a, b = conn.execute(
            select(audit_entries)
            .where(audit_entries.c.seq.in_([3, 4]))
            .order_by(audit_entries.c.seq)
        ).all()
    fields = ("at", "actor", "action", "subject_ref", "details", "leaf_hash")
    rewrite(engine, 3, **{f: getattr(b, f) for f in fields})
    rewrite(engine, 4, **{f: getattr(a, f) for f in fields})
    report = log.verify(engine)
    assert report.first_bad_index == 3


def test_truncation_is_detected(engine, log):
    fill(engine, log)
    with writing(engine).begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq >= 15))
    report = log.verify(engine)
    assert not report.ok
    assert report.first_bad_index == 15
    assert "truncated" in report.problem


def test_inserted_entry_without_a_signed_head_is_detected(engine, log):
    fill(engine, log)
    details = '{"n":"forged"}'
    at = "2026-01-01T00:00:00.000000Z"
    leaf = leaf_hash(entry_bytes(20, at, "api", "consent.changed", None, details))
    with writing(engine).begin() as conn:
        conn.execute(
            audit_entries.insert().values(
                seq=20, at=at, actor="api", action="consent.changed", subject_ref=None,
                details=details, leaf_hash=leaf.hex(),
            )
        )  # fmt: skip
    report = log.verify(engine)
    assert not report.ok
    assert report.first_bad_index == 20
    assert "no signed head" in report.problem


def test_altered_heads_file_is_refused(engine, log):
    fill(engine, log)
    lines = log.heads_path.read_text().splitlines()
    head = json.loads(lines[2])
    head["root"] = "00" * 32
    lines[2] = json.dumps(head)
    log.heads_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match=r"heads.jsonl:3: the signature .* does not verify"):
        log.verify(engine)


def test_inclusion_proof_verifies_and_a_forged_one_does_not(engine, log):
    fill(engine, log)
    proof = log.prove(engine, 11)
    head = proof["tree_head"]
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    leaf = bytes.fromhex(proof["leaf_hash"])
    root = bytes.fromhex(head["root"])
    assert verify_inclusion(leaf, 11, head["size"], path, root)
    assert read_heads(log.heads_path, log.public)[-1].root == head["root"]
    assert not verify_inclusion(leaf, 12, head["size"], path, root)
    with pytest.raises(AuditError, match=r"does not exist|covers"):
        log.prove(engine, 500)


def test_subjects_are_pseudonymous_and_unlinkable_after_shredding(engine, log):
    subject = "ab" * 32
    log.record(engine, [AuditEvent("vault.read", "service", subject)])
    log.record(engine, [AuditEvent("vault.read", "service", subject)])
    with writing(engine).begin() as conn:
        log.keyring.shred(conn, subject)
    log.record(engine, [AuditEvent("vault.read", "service", subject)])
    with engine.connect() as conn:
        refs = [
            r.subject_ref for r in conn.execute(select(audit_entries).order_by(audit_entries.c.seq))
        ]
        dump = repr(conn.execute(text("SELECT * FROM audit_entries")).all())
    assert refs[0] == refs[1]
    assert refs[2] != refs[0]
    assert subject not in dump
    assert log.verify(engine).ok


def test_recover_signs_a_tail_left_by_a_crash(engine, log):
    fill(engine, log, batches=2)
    with writing(engine).begin() as conn:
        log.append(conn, [AuditEvent("consent.changed", "api")])
        log.take_head(conn)
    # the process "died" before publish() wrote the head
    assert not log.verify(engine).ok
    head = log.recover(engine)
    assert head is not None
    assert head.recovered
    report = log.verify(engine)
    assert report.ok
    assert report.recovered_heads == 1


# --- properties of the Merkle tree ----------------------------------------------------------

leaf_lists = st.lists(st.binary(min_size=0, max_size=16), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies(data_items, data):
    leaves = [leaf_hash(d) for d in data_items]
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = root_of(leaves)
    path = inclusion_path(leaves, index)
    assert verify_inclusion(leaves[index], index, len(leaves), path, root)
    assert not verify_inclusion(
        leaf_hash(b"other" + data_items[index]), index, len(leaves), path, root
    )
    if len(leaves) > 1:
        other = data.draw(st.integers(0, len(leaves) - 1).filter(lambda i: i != index))
        assert not verify_inclusion(leaves[index], other, len(leaves), path, root) or (
            leaves[other] == leaves[index]
        )


@settings(max_examples=100, deadline=None)
@given(leaf_lists)
def test_frontier_root_equals_the_tree_root_at_every_size(data_items):
    leaves = [leaf_hash(d) for d in data_items]
    frontier = Frontier()
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.root() == root_of(leaves[: i + 1])
    assert Frontier.from_json(frontier.to_json()).root() == frontier.root()


def test_a_failed_transaction_leaves_nothing_for_the_next(engine, log):
    fill(engine, log, batches=1)

    def failing_action() -> None:
        with writing(engine).begin() as conn:
            log.append(conn, [AuditEvent("consent.changed", "api", None, {"lost": True})])
            raise RuntimeError("the action failed after its audit entry was appended")

    for _ in range(3):  # whichever pooled connection comes next
        with pytest.raises(RuntimeError):
            failing_action()
    log.record(engine, [AuditEvent("consent.changed", "api")])
    report = log.verify(engine)
    assert report.ok, report.problem
    assert report.size == 5
