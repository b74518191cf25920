"""Erasure by the declared strategies, in one transaction per datastore: what goes, what
is nulled, masked or kept (and why), idempotency, legal holds, a crash and a resume, the
proof that nothing is left — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from rights.conftest import ALEX, World, make_db
from troth.consent.ledger import ConsentChange
from troth.rights.connectors import SqlConnector
from troth.store.tables import (
    consent_events,
    subject_keys,
    tracking_events,
    vault_values,
)
from troth.store.tables_transfers import disclosures

ALEX_IDS = {"email": [ALEX["email"]]}
TABLES = (
    "accounts",
    "subscriptions",
    "devices",
    "usage_records",
    "threat_events",
    "invoices",
    "support_tickets",
    "prospects",
)


def snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: sorted(tuple(r) for r in world.sql(f"SELECT * FROM {t} ORDER BY id")) for t in TABLES
    }


def others(world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Everything that is not Alex's (account 1, its devices, its ticket and prospect)."""
    return {
        "accounts": world.sql("SELECT * FROM accounts WHERE id <> 1 ORDER BY id"),
        "devices": world.sql("SELECT * FROM devices WHERE account_id <> 1 ORDER BY id"),
        "invoices": world.sql("SELECT * FROM invoices WHERE id <> 1 ORDER BY id"),
        "threats": world.sql(
            "SELECT * FROM threat_events WHERE device_uid NOT LIKE 'dev-alex%' ORDER BY id"
        ),
        "prospects": world.sql("SELECT * FROM prospects WHERE id <> 1 ORDER BY id"),
    }


def test_erasure_applies_each_declared_strategy(world: World) -> None:
    engine = world.engine()
    untouched = others(world)

    report = engine.erase(ALEX_IDS, "lumen", actor="officer")

    counts = {name: t.as_dict() for name, t in report.tables.items()}
    for table, n in [("accounts", 1), ("subscriptions", 1), ("devices", 2),
                     ("usage_records", 4), ("threat_events", 2), ("prospects", 1)]:  # fmt: skip
        assert counts[table]["deleted"] == n, table
    assert world.sql("SELECT COUNT(*) FROM accounts WHERE email = :e", e=ALEX["email"])[0][0] == 0
    assert world.sql("SELECT COUNT(*) FROM devices WHERE account_id = 1")[0][0] == 0
    assert (
        world.sql("SELECT COUNT(*) FROM threat_events WHERE device_uid LIKE 'dev-alex%'")[0][0] == 0
    )

    # invoices: kept for tax law, but no longer linked to the person's e-mail or account
    assert counts["invoices"] == {
        "deleted": 0,
        "nulled": 1,
        "masked": 0,
        "kept": 1,
        "reasons": ["Invoices are kept for ten years, as tax law requires."],
    }
    invoice = world.sql("SELECT account_id, email, customer_name FROM invoices WHERE id = 1")[0]
    assert tuple(invoice) == (None, None, "Alex Example")

    # support ticket: e-mail nulled, subject and body masked, nothing of them left
    assert counts["support_tickets"]["nulled"] == 1
    assert counts["support_tickets"]["masked"] == 1
    email, subject, body = world.sql(
        "SELECT email, subject, body FROM support_tickets WHERE account_id IS NULL"
    )[0]
    assert email is None
    assert subject != "Cannot connect"
    assert "Alex" not in body
    assert body.startswith("erased-")

    assert others(world) == untouched


def test_erasure_is_idempotent(world: World) -> None:
    engine = world.engine()
    engine.erase(ALEX_IDS, "lumen", actor="officer")
    after_first = snapshot(world)

    again = engine.erase(ALEX_IDS, "lumen", actor="officer")

    assert again.total("deleted") == again.total("nulled") == again.total("masked") == 0
    assert snapshot(world) == after_first


def test_verify_erasure_reports_zero_rows_only_after_erasure(world: World) -> None:
    engine = world.engine()
    identities = engine.discover(ALEX_IDS).identities
    before = engine.verify_erasure(identities)
    assert before[("lumen", "accounts")] == 1
    assert before[("lumen", "threat_events")] == 2

    engine.erase(identities, "lumen", actor="officer")

    after = engine.verify_erasure(identities)
    assert set(after) >= {("lumen", t) for t in TABLES}
    assert all(n == 0 for (store, _), n in after.items() if store == "lumen"), after
    proof = engine.prove_erasure(identities)
    assert proof.remaining[("lumen", "invoices")] == 0


def test_a_legal_hold_on_everything_keeps_everything_with_its_reason(world: World) -> None:
    engine = world.engine()
    before = snapshot(world)
    hold = ("*", "court order 12 O 345/26")

    report = engine.erase(ALEX_IDS, "lumen", holds=[hold], actor="officer")

    assert snapshot(world) == before
    assert report.total("deleted") == 0
    assert report.tables["accounts"].kept == 1
    assert report.tables["accounts"].reasons == ["legal hold: court order 12 O 345/26"]
    proof = engine.prove_erasure(ALEX_IDS, holds=[hold])
    assert proof.proven
    assert proof.kept[("lumen", "devices")] == 2


def test_a_hold_on_one_category_keeps_that_data_and_what_it_needs(world: World) -> None:
    engine = world.engine()
    hold = ("billing", "payment dispute")

    report = engine.erase(ALEX_IDS, "lumen", holds=[hold], actor="officer")

    # subscriptions hold billing data: kept; the account they refer to stays with them
    assert world.sql("SELECT COUNT(*) FROM subscriptions WHERE account_id = 1")[0][0] == 1
    assert world.sql("SELECT COUNT(*) FROM accounts WHERE id = 1")[0][0] == 1
    assert report.tables["subscriptions"].reasons == ["legal hold: payment dispute"]
    assert report.tables["accounts"].kept == 1
    # the kept account still names its primary device: that stays too; the other goes
    devices = world.sql("SELECT device_uid FROM devices WHERE account_id = 1")
    assert [d[0] for d in devices] == [ALEX["devices"][0]]
    assert report.tables["devices"].reasons == ["legal hold: payment dispute"]
    # what the hold does not cover is gone
    assert (
        world.sql("SELECT COUNT(*) FROM threat_events WHERE device_uid LIKE 'dev-alex%'")[0][0] == 0
    )
    assert world.sql("SELECT COUNT(*) FROM prospects WHERE email = :e", e=ALEX["email"])[0][0] == 0
    invoice = world.sql("SELECT email, billing_address FROM invoices WHERE id = 1")[0]
    assert invoice[1] is not None  # billing: held
    assert engine.prove_erasure(ALEX_IDS, holds=[hold]).proven


def test_a_crash_inside_the_transaction_changes_nothing_and_a_rerun_finishes(
    world: World,
) -> None:
    engine = world.engine()
    identities = engine.discover(ALEX_IDS).identities
    before = snapshot(world)
    lumen = engine.connectors["lumen"]
    sql_engine = lumen.engine  # type: ignore[attr-defined]

    def crash(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM ACCOUNTS"):
            raise RuntimeError("power cut")

    event.listen(sql_engine, "before_cursor_execute", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        engine.erase(identities, "lumen", actor="officer")
    event.remove(sql_engine, "before_cursor_execute", crash)

    assert snapshot(world) == before  # devices, usage... deleted before the crash: rolled back

    report = engine.erase(identities, "lumen", actor="officer")
    assert report.tables["accounts"].deleted == 1
    assert report.tables["devices"].deleted == 2
    assert all(n == 0 for (s, _), n in engine.verify_erasure(identities).items() if s == "lumen")


def _troth_traces(world: World) -> None:
    services = world.services
    services.ledger.record(ConsentChange(ALEX["ref"], {"analytics": "given"}, "api", "en", "1.1.0"))
    services.vault.put(ALEX["ref"], "bandwidth_usage", "5 GB", purpose="provide_service")
    h = services.vault.hash(ALEX["ref"])
    now = dt.datetime.now(dt.UTC)
    with services.engine.begin() as conn:
        # a page view with analytics consent, and an open of an e-mail sent to them
        for visitor, kind in (("c:" + h[:40], "view"), ("s:" + h[:40], "open")):
            conn.execute(
                insert(tracking_events).values(
                    tech_id="web_analytics", kind=kind, name="page", campaign="", visitor=visitor,
                    page="/pricing", ip_prefix="203.0.113.0/24", props={}, day=now.date(), at=now,
                )
            )  # fmt: skip
        conn.execute(
            insert(disclosures).values(
                at=now, recipient="payment_provider", country="DE", purpose="provide_service",
                categories="billing", mechanism=None, mechanism_detail="", actor="service",
                subject_hash=services.vault.hash(ALEX["ref"]), source="api",
            )
        )  # fmt: skip


def _troth_counts(world: World) -> tuple[int, ...]:
    h = world.services.vault.hash(ALEX["ref"])
    queries = [
        select(consent_events.c.id).where(consent_events.c.subject_hash == h),
        select(tracking_events.c.id).where(
            tracking_events.c.visitor.in_(["c:" + h[:40], "s:" + h[:40]])
        ),
        select(vault_values.c.category).where(vault_values.c.subject_hash == h),
        select(subject_keys.c.kek_id).where(subject_keys.c.subject_hash == h),
        select(disclosures.c.id).where(disclosures.c.subject_hash == h),
    ]
    with world.services.engine.connect() as conn:
        return tuple(len(conn.execute(q).all()) for q in queries)


def test_erasure_across_datastores_resumes_after_a_crash_between_them(world: World) -> None:
    _troth_traces(world)
    engine = world.engine()
    identities = engine.discover(ALEX_IDS).identities
    assert _troth_counts(world) == (1, 2, 1, 1, 1)

    engine.erase(identities, "lumen", actor="officer")
    # ... the worker dies here; the troth store is untouched, the job is run again
    assert _troth_counts(world) == (1, 2, 1, 1, 1)
    engine = world.engine()
    for store in ("lumen", "troth"):  # the whole request again: same end state
        engine.erase(identities, store, actor="officer")

    # consent, tracking, values, data key gone; the disclosure stays, unlinked
    assert _troth_counts(world) == (0, 0, 0, 0, 0)
    with world.services.engine.connect() as conn:
        assert len(conn.execute(select(disclosures.c.id)).all()) == 1
    assert all(n == 0 for n in engine.verify_erasure(identities).values())
    # the vault audited its erasure, with the keyed hash only
    log = world.services.engine
    with log.connect() as conn:
        from troth.store.tables import audit_entries

        rows = conn.execute(
            select(audit_entries.c.action, audit_entries.c.details, audit_entries.c.subject_ref)
        ).all()
    assert any(r.action == "erasure" for r in rows)
    assert not any(ALEX["ref"] in (r.details + (r.subject_ref or "")) for r in rows)
    assert not any(ALEX["email"] in r.details for r in rows)


def test_a_legal_hold_in_the_vault_keeps_the_troth_store(world: World) -> None:
    _troth_traces(world)
    world.services.vault.limit(ALEX["ref"], "legal_hold", "*", "tax audit", actor="dpo")
    engine = world.engine()
    identities = engine.discover(ALEX_IDS).identities
    holds = world.services.vault.holds(ALEX["ref"])

    report = engine.erase(identities, "troth", holds=holds, actor="officer")

    assert _troth_counts(world) == (1, 2, 1, 1, 1)
    assert report.tables["vault_values"].reasons == ["legal hold: tax audit"]


def test_erasing_someone_who_referred_prospects_unlinks_them_and_keeps_them(
    world: World,
) -> None:
    # prospects 2-5 were referred by account 2: their rows are theirs, not account 2's
    referred = world.sql("SELECT id FROM prospects WHERE referred_by = 2 ORDER BY id")
    assert [r[0] for r in referred] == [2, 3, 4, 5]
    engine = world.engine()
    found = engine.discover({"email": ["user2@example.net"]})
    assert ("lumen", "prospects") not in found.rows

    engine.erase(found.identities, "lumen", actor="test")
    engine.erase(found.identities, "troth", actor="test")

    assert world.sql("SELECT id FROM accounts WHERE id = 2") == []
    rows = world.sql("SELECT id, referred_by FROM prospects WHERE id IN (2, 3, 4, 5) ORDER BY id")
    assert [tuple(r) for r in rows] == [(2, None), (3, None), (4, None), (5, None)]
    assert engine.prove_erasure(found.identities).proven


def test_a_short_value_is_masked_not_mistaken_for_a_mask(world: World) -> None:
    # 'er' and 'erased' look like the start of a mask; they are someone's words
    world.sql(
        "INSERT INTO support_tickets (id, account_id, email, subject, body, opened_at) "
        "VALUES (9003, NULL, :e, 'er', 'erased', '2026-01-02T10:00:00')",
        e=ALEX["email"],
    )
    engine = world.engine()
    found = engine.discover(ALEX_IDS)
    engine.erase(found.identities, "lumen", actor="test")
    [(subject, body)] = world.sql("SELECT subject, body FROM support_tickets WHERE id = 9003")
    assert re.fullmatch(r"erased-[0-9a-f]{12}", subject), subject
    assert re.fullmatch(r"erased-[0-9a-f]{12}", body), body
    assert engine.prove_erasure(found.identities).proven


def test_a_row_added_between_finding_and_erasing_cannot_slip_in(world: World) -> None:
    # while the erasure runs, another connection tries to give Alex's account a new
    # device: the rows found are locked until the erasure commits, so the insert waits
    # and fails (else it would land, and the erasure would then fail on it)
    engine = world.engine()
    lumen = engine.connectors["lumen"]
    assert isinstance(lumen, SqlConnector)
    found = engine.discover(ALEX_IDS)
    outcome: list[str] = []

    def add_device() -> None:
        other = make_db.engine_for(world.url)
        try:
            with other.begin() as conn:
                if world.kind == "postgresql":
                    conn.exec_driver_sql("SET lock_timeout = '1s'")
                elif world.kind == "mysql":
                    conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
                else:
                    conn.exec_driver_sql("PRAGMA busy_timeout = 1000")
                conn.execute(
                    text(
                        "INSERT INTO devices (id, account_id, device_uid, os) "
                        "VALUES (9100, 1, 'dev-new-9100', 'Linux')"
                    )
                )
            outcome.append("inserted")
        except SQLAlchemyError as exc:
            outcome.append(type(exc).__name__)
        finally:
            other.dispose()

    def before_writing(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not outcome and statement.lstrip().upper().startswith(("UPDATE", "DELETE")):
            thread = threading.Thread(target=add_device)
            thread.start()
            thread.join(timeout=30)

    event.listen(lumen.engine, "before_cursor_execute", before_writing)
    engine.erase(found.identities, "lumen", actor="test")

    assert len(outcome) == 1
    assert outcome[0] != "inserted", outcome
    assert world.sql("SELECT id FROM devices WHERE account_id = 1") == []
    assert world.sql("SELECT id FROM accounts WHERE id = 1") == []
