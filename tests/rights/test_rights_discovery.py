"""Finding a person's data: identities followed across tables and stores, reference
cycles, unknown people, and the access package — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from rights.conftest import ALEX, World, write_datasets
from troth.consent.ledger import ConsentChange
from troth.policy.datasets import load_datasets
from troth.rights.connectors import open_connectors
from troth.rights.engine import RightsEngine
from troth.rights.requests_model import check_identities


def test_an_email_leads_to_everything_the_person_has(world: World) -> None:
    found = world.engine().discover({"email": [ALEX["email"]]})

    # identities found on the way: account id and ref, both device ids; not the phone
    # number (a column several accounts may share leads nowhere beyond its row)
    assert found.identities["account_id"] == {"1"}
    assert found.identities["account_ref"] == {ALEX["ref"]}
    assert "phone" not in found.identities
    assert found.identities["device_id"] == set(ALEX["devices"])
    counts = {table: len(rows) for (store, table), rows in found.rows.items()}
    assert counts == {
        "accounts": 1,
        "subscriptions": 1,
        "devices": 2,
        "usage_records": 4,  # via subscription and via device, counted once
        "threat_events": 2,  # by device id, a table with no reference at all
        "invoices": 1,
        "support_tickets": 1,  # written before signing up: found by e-mail only
        "prospects": 1,
    }
    # only Alex's rows: nobody else's e-mail in anything found
    emails = {r["email"] for rows in found.rows.values() for r in rows if r.get("email")}
    assert emails == {ALEX["email"]}


def test_a_device_id_alone_finds_only_what_hangs_off_that_device(world: World) -> None:
    phone = ALEX["devices"][1]  # not the account's primary device
    found = world.engine().discover({"device_id": [phone]})
    tables = {t for (_, t) in found.rows}
    # references are followed from the referenced row to the rows that refer to it, so a
    # device does not reveal the account it belongs to (nor the account's other data)
    assert tables == {"devices", "threat_events", "usage_records"}
    assert [r["device_uid"] for r in found.rows[("lumen", "threat_events")]] == [phone]
    assert len(found.rows[("lumen", "usage_records")]) == 2


def test_the_primary_device_leads_to_its_account_as_declared(world: World) -> None:
    # accounts.primary_device_id: devices.id says the account row belongs to whoever
    # the device belongs to
    found = world.engine().discover({"device_id": [ALEX["devices"][0]]})
    assert found.identities["email"] == {ALEX["email"]}
    assert len(found.rows[("lumen", "devices")]) == 2


def test_a_reference_cycle_ends(world: World) -> None:
    # accounts.primary_device_id -> devices.id and devices.account_id -> accounts.id
    account = world.sql("SELECT primary_device_id FROM accounts WHERE id = 1")[0]
    assert account[0] is not None
    found = world.engine().discover({"account_id": ["1"]})
    assert len(found.rows[("lumen", "accounts")]) == 1
    assert len(found.rows[("lumen", "devices")]) == 2


def test_an_unknown_person_gets_an_empty_package_not_an_error(world: World) -> None:
    engine = world.engine()
    found = engine.discover({"email": ["nobody@example.invalid"], "account_id": ["no-such-id"]})
    assert found.is_empty()
    with zipfile.ZipFile(io.BytesIO(engine.package(found, "en"))) as archive:
        assert sorted(archive.namelist()) == ["README.md", "identities.json"]
        assert "We hold no personal data" in archive.read("README.md").decode()


def test_package_has_json_and_csv_per_table_and_a_readme_from_the_policy(world: World) -> None:
    engine = world.engine()
    found = engine.access({"email": [ALEX["email"]]})
    data = engine.package(found, "en")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        for table in ("accounts", "devices", "threat_events", "invoices", "support_tickets"):
            assert f"lumen/{table}.json" in names
            assert f"lumen/{table}.csv" in names
        devices = json.loads(archive.read("lumen/devices.json"))
        assert sorted(d["device_uid"] for d in devices) == sorted(ALEX["devices"])
        rows = list(csv.DictReader(io.StringIO(archive.read("lumen/accounts.csv").decode())))
        assert rows[0]["email"] == ALEX["email"]
        assert rows[0]["name"] == "Alex Example"
        # undeclared columns are not exported (plans are not personal data)
        assert "lumen/plans.json" not in names
        readme = archive.read("README.md").decode()
    # each category by its policy name, and the purposes that use it
    assert "Account information: Your name, e-mail address" in readme
    assert "Threat information" in readme
    assert "Used for: To provide, maintain, troubleshoot and support our services" in readme
    assert "Art 6(1-b) contract" in readme
    assert "Bandwidth usage" in readme


def test_package_readme_in_german(world: World) -> None:
    engine = world.engine()
    found = engine.access({"email": [ALEX["email"]]})
    with zipfile.ZipFile(io.BytesIO(engine.package(found, "de"))) as archive:
        readme = archive.read("README.md").decode()
    assert "Ihre personenbezogenen Daten" in readme
    assert "Kontodaten" in readme
    # the legal basis and how long data is kept read as in the German policy, not as codes
    assert "Art. 6 Abs. 1 lit. b DSGVO" in readme
    assert "6 Monate" in readme
    assert "P6M" not in readme


def test_package_readme_states_bases_and_periods_in_words(world: World) -> None:
    engine = world.engine()
    found = engine.access({"email": [ALEX["email"]]})
    with zipfile.ZipFile(io.BytesIO(engine.package(found, "en"))) as archive:
        readme = archive.read("README.md").decode()
    assert "Art. 6(1)(b) GDPR" in readme
    assert "6 months" in readme
    assert "P6M" not in readme
    assert "P2Y" not in readme


def test_troth_own_store_is_searched_by_the_account_ref_found_on_the_way(world: World) -> None:
    world.services.ledger.record(
        ConsentChange(ALEX["ref"], {"analytics": "given"}, "api", "en", "1.1.0")
    )
    world.services.vault.put(ALEX["ref"], "bandwidth_usage", "5 GB", purpose="provide_service")
    found = world.engine().discover({"email": [ALEX["email"]]})
    consent = found.rows[("troth", "consent_events")]
    assert len(consent) == 1
    assert consent[0]["subject_account_ref"] == ALEX["ref"]
    assert [r["category"] for r in found.rows[("troth", "vault_values")]] == ["bandwidth_usage"]
    # the person gets the value itself back (Art. 15), opened from the vault
    assert [r["value"] for r in found.rows[("troth", "vault_values")]] == ["5 GB"]
    # the data key under which the values are sealed
    assert [r["subject_account_ref"] for r in found.rows[("troth", "subject_keys")]] == [
        ALEX["ref"]
    ]


def test_a_phone_number_two_accounts_share_does_not_lead_to_the_other(world: World) -> None:
    phone = world.sql("SELECT phone FROM accounts WHERE id = 5")[0][0]
    assert phone is not None
    world.sql("UPDATE accounts SET phone = :phone WHERE id = 6", phone=phone)

    found = world.engine().discover({"email": ["user5@example.net"]})

    assert [r["id"] for r in found.rows[("lumen", "accounts")]] == [5]
    assert found.identities["account_id"] == {"5"}
    emails = {r["email"] for rows in found.rows.values() for r in rows if r.get("email")}
    assert emails == {"user5@example.net"}


def test_follow_true_makes_a_shared_column_lead_on(world: World, tmp_path: Path) -> None:
    # the annotation can say a column identifies one person even where the schema does not
    phone = world.sql("SELECT phone FROM accounts WHERE id = 5")[0][0]
    world.sql("UPDATE accounts SET phone = :phone WHERE id = 6", phone=phone)

    def follow_phone(data: dict[str, Any]) -> None:
        data["datastores"][0]["kind"] = world.kind
        data["datastores"][0]["tables"]["accounts"]["fields"]["phone"]["follow"] = True

    datasets = load_datasets(write_datasets(tmp_path, follow_phone), world.policy)
    connectors = open_connectors(datasets, troth=world.services, urls={"lumen": world.url})
    world.opened.append(connectors)
    found = RightsEngine(world.policy, datasets, connectors).discover(
        {"email": ["user5@example.net"]}
    )
    assert sorted(r["id"] for r in found.rows[("lumen", "accounts")]) == [5, 6]


def test_a_ticket_from_one_address_about_another_account(world: World) -> None:
    # person 7 wrote (from their own address) about account 8. The ticket belongs to the
    # account's person: 8's request finds it; 7's request finds it too (7's own address is
    # on it), but never account 8 or anything else of 8's.
    world.sql(
        "INSERT INTO support_tickets (id, account_id, email, subject, body, opened_at) "
        "VALUES (9001, 8, 'user7@example.net', 'Help', 'About my partner''s account', "
        "'2026-01-02T10:00:00')"
    )
    engine = world.engine()

    of_7 = engine.discover({"email": ["user7@example.net"]})
    assert [r["id"] for r in of_7.rows[("lumen", "accounts")]] == [7]
    assert 9001 in {r["id"] for r in of_7.rows[("lumen", "support_tickets")]}
    assert of_7.identities["account_id"] == {"7"}
    assert all(r.get("account_id") in (None, 7) for r in of_7.rows[("lumen", "invoices")])

    of_8 = engine.discover({"account_id": ["8"]})
    assert [r["id"] for r in of_8.rows[("lumen", "accounts")]] == [8]
    assert 9001 in {r["id"] for r in of_8.rows[("lumen", "support_tickets")]}
    assert "user7@example.net" not in of_8.identities["email"]
    assert ("lumen", "prospects") not in of_8.rows or all(
        r["email"] != "user7@example.net" for r in of_8.rows[("lumen", "prospects")]
    )


def test_an_email_is_found_however_it_was_typed(world: World) -> None:
    world.sql(
        "INSERT INTO support_tickets (id, account_id, email, subject, body, opened_at) "
        "VALUES (9002, NULL, 'Sam.Mixed@Example.org', 'Hi', 'x', '2026-01-02T10:00:00')"
    )
    engine = world.engine()
    # stored in lower case, typed in mixed case
    found = engine.discover(check_identities({"email": ["User5@Example.NET"]}))
    assert [r["id"] for r in found.rows[("lumen", "accounts")]] == [5]
    # stored as typed: the request keeps the case, so the row is found and, while it
    # remains, the erasure is not proven
    typed = check_identities({"email": ["Sam.Mixed@Example.org"]})
    assert typed == {"email": ["Sam.Mixed@Example.org"]}
    proof = engine.prove_erasure(typed)
    assert proof.remaining[("lumen", "support_tickets")] == 1
    assert not proof.proven
    engine.erase(typed, "lumen", actor="test")
    assert engine.prove_erasure(typed).proven
    assert world.sql("SELECT email FROM support_tickets WHERE id = 9002") == [(None,)]
