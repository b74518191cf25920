"""`troth discover` on SQLite and PostgreSQL: planted personal data is found with masked
evidence, decoys (integer ids, ids kept as text, numbers failing Luhn, dates, reference numbers,
prices, product names) are not."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import MINIMAL
from troth.policy.datasets import load_datasets
from troth.policy.loader import load_policy
from troth.scan.detectors import iban_valid, luhn_valid
from troth.scan.discover import DiscoverReport, choose_store, discover_database
from troth.scan.errors import ScanError

TROTH = str(Path(sys.executable).with_name("troth"))
ROWS = 20
FIRST = ["Ada", "Grace", "Alan", "Edsger"]
LAST = ["Lovelace", "Hopper", "Turing"]

DATASETS = """\
troth: 1
identities: [email, customer_id]
datastores:
  - id: shop
    kind: sqlite
    url: ${SHOP_DATABASE_URL:-sqlite:///shop.db}
    tables:
      customers:
        key: id
        erasure: delete
        fields:
          id: {identity: customer_id}
          email: {category: account, identity: email}
          referrer_email: {category: usage}
"""

DDL = [
    """CREATE TABLE customers (
        id INTEGER PRIMARY KEY, external_id BIGINT, email VARCHAR(254),
        referrer_email VARCHAR(254), contact_phone VARCHAR(32), last_login_ip VARCHAR(45),
        full_name VARCHAR(200), loyalty_number VARCHAR(19), created_at VARCHAR(32),
        member_code VARCHAR(12), renewal_date VARCHAR(12), ticket_ref VARCHAR(20),
        notes TEXT)""",
    """CREATE TABLE orders (
        id INTEGER PRIMARY KEY, customer_id INTEGER, backup_email VARCHAR(254),
        amount VARCHAR(12), card_number VARCHAR(19), payout_iban VARCHAR(34),
        status VARCHAR(12))""",
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name VARCHAR(80), sku VARCHAR(20))",
    "CREATE TABLE signups (id INTEGER PRIMARY KEY, late_email VARCHAR(254))",
    # personal data inside JSON: a JSON column, and JSON kept as text
    "CREATE TABLE events (id INTEGER PRIMARY KEY, payload JSON, meta TEXT, app_version TEXT)",
]
LATE = 300  # signups.late_email is NULL in its first rows, more of them than are sampled

# Hand-written: what the planted columns are, in the report's order.
EXPECTED = [
    ("violation", "undeclared_column", "customers.contact_phone", "phone"),
    ("violation", "undeclared_column", "customers.full_name", "name"),
    ("violation", "undeclared_column", "customers.last_login_ip", "ip"),
    ("violation", "undeclared_column", "events.meta", "ip"),
    ("violation", "undeclared_column", "events.payload", "email"),
    ("violation", "undeclared_column", "orders.backup_email", "email"),
    ("violation", "undeclared_column", "orders.card_number", "card"),
    ("violation", "undeclared_column", "orders.payout_iban", "iban"),
    ("violation", "undeclared_column", "signups.late_email", "email"),
    ("warning", "category_mismatch", "customers.referrer_email", "email"),
    ("warning", "undeclared_column", "customers.notes", "free_text"),
]


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def _iban(bban: str) -> str:
    for check in range(100):
        candidate = f"DE{check:02d}{bban}"
        if iban_valid(candidate):
            return candidate
    raise AssertionError("no check digits")


def planted_values() -> dict[str, list[dict[str, object]]]:
    rnd = random.Random(7)
    customers, orders, products = [], [], []
    for i in range(1, ROWS + 1):
        card = _with_check_digit("4" + "".join(rnd.choice("0123456789") for _ in range(14)))
        loyalty = _with_check_digit("5" + "".join(rnd.choice("0123456789") for _ in range(14)))
        loyalty = loyalty[:-1] + str((int(loyalty[-1]) + 1) % 10)  # fails Luhn
        customers.append({
            "id": i,
            "external_id": 9_000_000_000_000_000 + rnd.randrange(10**15),
            "email": f"person{i}@mail.example",
            "referrer_email": f"friend{i}@mail.example",
            # two of ten are not phone numbers: the hit ratio says so
            "contact_phone": "n/a" if i % 5 == 0 else f"+49 30 {1000000 + i * 7919}",
            "last_login_ip": f"198.51.100.{i}" if i % 2 else f"2001:db8::{i:x}",
            "full_name": f"{FIRST[i % 4]} {LAST[i % 3]}",
            "loyalty_number": loyalty,
            "created_at": f"2026-0{1 + i % 9}-1{i % 10}",
            # ids kept as text, US dates and reference numbers: none is a phone number
            "member_code": f"{i * 1000:08d}",
            "renewal_date": f"0{1 + i % 9}/1{i % 10}/2024".replace("/", "/" if i % 2 else "-"),
            "ticket_ref": f"0001-{2345 + i:04d}-{6789 + i:04d}",
            "notes": f"Called on Monday about the invoice {i}; will call back next week.",
        })  # fmt: skip
        orders.append({
            "id": i, "customer_id": i, "backup_email": f"backup{i}@post.example",
            "amount": f"{rnd.randrange(100, 99999) / 100:.2f}", "card_number": card,
            "payout_iban": _iban(f"{rnd.randrange(10**17, 10**18)}"), "status": "paid",
        })  # fmt: skip
        products.append({"id": i, "name": f"Plan {i}", "sku": f"{1000000 + i}"})
    signups = [
        {"id": i, "late_email": f"late{i}@mail.example" if i > LATE else None}
        for i in range(1, LATE + 21)
    ]
    events = [
        {
            "id": i,
            "payload": json.dumps({"type": "signup", "user": {"contact": f"ev{i}@mail.example"}}),
            "meta": json.dumps({"client": {"ip": f"198.51.100.{i}"}, "ok": True}),
            "app_version": f"1.{i % 3}.0.{i % 9}",  # a version string, not an address
        }
        for i in range(1, ROWS + 1)
    ]
    return {
        "customers": customers,
        "orders": orders,
        "products": products,
        "signups": signups,
        "events": events,
    }


def plant(url: str) -> dict[str, list[dict[str, object]]]:
    values = planted_values()
    engine = create_engine(url)
    with engine.begin() as conn:
        for ddl in DDL:
            conn.execute(text(ddl))
        for table, rows in values.items():
            columns = list(rows[0])
            conn.execute(
                text(f"INSERT INTO {table} ({', '.join(columns)}) "
                     f"VALUES ({', '.join(':' + c for c in columns)})"),
                rows,
            )  # fmt: skip
    engine.dispose()
    return values


@pytest.fixture
def planted(db_url: str, tmp_path: Path) -> tuple[str, Path, dict[str, list[dict[str, object]]]]:
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(DATASETS, encoding="utf-8")
    return db_url, datasets, plant(db_url)


def run_discover(url: str, datasets: Path) -> DiscoverReport:
    policy = load_policy(MINIMAL).policy
    store = choose_store(load_datasets(datasets, policy), url, None)
    return discover_database(url, policy=policy, store=store)


def test_planted_columns_found_and_decoys_left_alone(planted) -> None:
    url, datasets, _ = planted
    report = run_discover(url, datasets)
    found = [(f.severity, f.kind, f.subject, f.evidence.kind) for f in report.findings]
    assert found == EXPECTED
    with_data = {(e.table, e.column) for e in report.evidence}
    for decoy in ("id", "external_id", "loyalty_number", "created_at", "member_code",
                  "renewal_date", "ticket_ref"):  # fmt: skip
        assert ("customers", decoy) not in with_data
    for decoy in ("id", "customer_id", "amount", "status"):
        assert ("orders", decoy) not in with_data
    assert not any(table == "products" for table, _ in with_data)
    assert ("customers", "email") in with_data  # found, and declared: no finding


def test_evidence_has_hit_ratio_and_masked_examples(planted) -> None:
    url, datasets, values = planted
    report = run_discover(url, datasets)
    phone = next(e for e in report.evidence if e.column == "contact_phone")
    assert (phone.hits, phone.sampled) == (16, 20)
    payload = next(e for e in report.evidence if e.column == "payload")
    assert (payload.hits, payload.sampled) == (20, 20)
    assert payload.examples[0] == "e***@m***.example"
    assert ("events", "app_version") not in {(e.table, e.column) for e in report.evidence}
    late = next(e for e in report.evidence if e.column == "late_email")
    assert (late.hits, late.sampled) == (20, 20)  # the non-empty values, past the NULLs
    card = next(e for e in report.evidence if e.column == "card_number")
    assert (card.hits, card.sampled) == (20, 20)
    assert all(re.fullmatch(r"\*{12}\d{4}", x) for x in card.examples)
    dump = json.dumps(report.as_dict()) + "\n".join(f.message for f in report.findings)
    for rows in values.values():
        for row in rows:
            for column, value in row.items():
                if isinstance(value, str) and len(value) > 6 and column != "status":
                    assert value not in dump, f"{column} shown in full"


def test_cli_exit_codes_and_suggestion(planted, tmp_path: Path) -> None:
    url, datasets, _ = planted
    result = subprocess.run(
        [TROTH, "discover", url, "--datasets", str(datasets), "--policy", str(MINIMAL)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "customers.contact_phone holds phone numbers: 16/20 sampled values (80%)" in (
        result.stdout
    )
    assert "      backup_email: {category: account}" in result.stdout  # account maps e-mail
    assert "9 violation(s), 2 warning(s)" in result.stdout
    # the datasets.yaml says the shop is sqlite:///shop.db: the report asks to check
    assert "note      the datastore shop is annotated with sqlite:///shop.db, not " in (
        result.stdout
    )


def test_datasets_without_policy_and_unknown_store_exit_two(tmp_path: Path) -> None:
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(DATASETS, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    create_engine(url).dispose()
    no_policy = subprocess.run([TROTH, "discover", url, "--datasets", str(datasets)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert no_policy.returncode == 2
    assert "give --policy too" in no_policy.stderr
    policy = load_policy(MINIMAL).policy
    with pytest.raises(ScanError, match=r"--store: .* has no datastore 'warehouse'; it has shop"):
        choose_store(load_datasets(datasets, policy), url, "warehouse")


def test_a_datastore_annotated_with_this_url_needs_no_note(planted, monkeypatch) -> None:
    url, datasets, _ = planted
    assert len(run_discover(url, datasets).notes) == 1
    monkeypatch.setenv("SHOP_DATABASE_URL", url)
    assert run_discover(url, datasets).notes == []
