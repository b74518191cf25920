"""The disclosure log on both databases: allowed disclosures are recorded and audited with a
hashed subject; refused ones record nothing; reports per recipient and country."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from transfers.transfers_world import World, someone
from troth.errors import PurposeDenied
from troth.policy.loader import load_policy
from troth.store.tables_transfers import disclosures


def count(world: World) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(disclosures)).scalar_one())


def test_an_allowed_disclosure_is_recorded_with_its_mechanism(world):
    d = world.disclosures.record(
        recipient="service_providers",
        purpose="provide_service",
        categories=["account", "billing"],
        actor="user:1",
        subject=someone(),
        country="US",
    )
    assert (d.recipient, d.country, d.purpose) == ("service_providers", "US", "provide_service")
    assert d.categories == ["account", "billing"]
    assert d.mechanism == "eu-gdpr:A46-2-c"
    assert d.mechanism_detail == "SCC 2021/914 module 2"
    assert [x.id for x in world.disclosures.recent()] == [d.id]


def test_a_disclosure_inside_the_eea_needs_no_mechanism(world):
    d = world.disclosures.record(
        recipient="service_providers",
        purpose="provide_service",
        categories=["account"],
        actor="user:1",
        country="DE",
    )
    assert d.mechanism is None


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"recipient": "nobody"}, "recipient_undeclared"),
        ({"purpose": "advertising"}, "purpose_undeclared"),
        ({"categories": ["payment_fraud_signals"]}, "category_undeclared"),
        ({"country": "JP"}, "country_undeclared"),
    ],
)
def test_undeclared_disclosures_are_refused_and_nothing_is_recorded(world, change, rule):
    request: dict[str, Any] = {
        "recipient": "service_providers",
        "purpose": "provide_service",
        "categories": ["account"],
        "actor": "user:1",
        **change,
    }
    with pytest.raises(PurposeDenied) as denied:
        world.disclosures.record(**request)
    assert denied.value.rule == rule
    assert count(world) == 0
    assert world.audit_rows()[-1]["action"] == "disclosure.denied"


def _uncertified(tmp_path: Path, seed_variant) -> Any:
    def edit(d: dict[str, Any]) -> None:
        for r in d["recipients"]:
            if r["id"] == "google_analytics":
                r["transfer"].pop("adequacy_scope")

    return load_policy(seed_variant(edit)).policy


def test_a_disclosure_without_a_valid_mechanism_is_refused(engine, tmp_path, seed_variant):
    world = World(engine, _uncertified(tmp_path, seed_variant), tmp_path)
    with pytest.raises(PurposeDenied) as denied:
        world.disclosures.record(
            recipient="google_analytics",
            purpose="analytics",
            categories=["usage"],
            actor="user:1",
            country="US",
        )
    assert denied.value.rule == "no_mechanism"
    assert "Data Privacy Framework" in str(denied.value)
    assert count(world) == 0
    # the same recipient in Ireland receives data without a transfer
    world.disclosures.record(
        recipient="google_analytics",
        purpose="analytics",
        categories=["usage"],
        actor="user:1",
        country="IE",
    )
    assert count(world) == 1


def test_audit_entries_carry_no_identity_in_clear(world):
    subject = someone()
    world.disclosures.record(
        recipient="group_companies",
        purpose="provide_service",
        categories=["account"],
        actor="user:1",
        subject=subject,
        country="SG",
    )
    with pytest.raises(PurposeDenied):
        world.disclosures.record(
            recipient="group_companies",
            purpose="advertising",
            categories=["account"],
            actor="user:1",
            subject=subject,
            country="SG",
        )
    rows = world.audit_rows()
    assert [r["action"] for r in rows[-2:]] == ["disclosure", "disclosure.denied"]
    assert all(r["subject_ref"] for r in rows[-2:])
    dumped = json.dumps(rows, default=str)
    assert subject not in dumped
    assert subject.split(":")[1] not in dumped
    with world.engine.connect() as conn:
        stored = json.dumps(
            [dict(r._mapping) for r in conn.execute(select(disclosures))], default=str
        )
    assert subject not in stored
    assert world.hasher(subject) in stored  # kept as its keyed hash
    assert world.audit.verify(world.engine).ok


def test_reports_per_recipient_and_per_country(world):
    a, b = someone(), someone()
    for subject, country in ((a, "US"), (b, "US"), (a, "DE")):
        world.disclosures.record(
            recipient="service_providers",
            purpose="provide_service",
            categories=["account"],
            actor="user:1",
            subject=subject,
            country=country,
        )
    world.disclosures.record(
        recipient="group_companies",
        purpose="prevent_harm",
        categories=["threat_events"],
        actor="user:1",
        subject=a,
        country="SG",
    )
    world.disclosures.record(
        recipient="authorities", purpose="legal_compliance", categories=["billing"], actor="u"
    )
    per_recipient = {r.key: r for r in world.disclosures.report("recipient")}
    assert sorted(per_recipient) == ["authorities", "group_companies", "service_providers"]
    sp = per_recipient["service_providers"]
    assert (sp.disclosures, sp.subjects, sp.categories) == (3, 2, ["account"])
    assert per_recipient["authorities"].subjects == 0
    per_country = {r.key: (r.disclosures, r.subjects) for r in world.disclosures.report("country")}
    assert per_country == {"DE": (2, 1), "SG": (1, 1), "US": (2, 2)}
    # authorities are declared only in DE: the country is the declared one
    later = world.disclosures.report("country", since=dt.date(2027, 3, 2))
    assert later == []


def test_vault_disclosure_reads_and_records_in_one_transaction(world):
    subject = someone()
    world.vault.put(subject, "account", "alex@example.org", purpose="provide_service")
    values = world.disclosures.disclose_from_vault(
        subject=subject,
        recipient="service_providers",
        purpose="provide_service",
        categories=["account"],
        actor="svc",
        country="US",
    )
    assert values == {"account": "alex@example.org"}
    [d] = world.disclosures.recent()
    assert (d.source, d.mechanism) == ("vault", "eu-gdpr:A46-2-c")
    actions = [r["action"] for r in world.audit_rows()]
    assert actions[-2:] == ["vault.disclose", "disclosure"]
    assert "alex@example.org" not in json.dumps(world.audit_rows(), default=str)


def test_vault_disclosure_refused_by_the_vault_records_nothing(world):
    subject = someone()
    world.vault.put(subject, "account", "alex@example.org", purpose="provide_service")
    world.vault.limit(subject, "restriction", "*", "contested", actor="dpo")
    with pytest.raises(PurposeDenied) as denied:
        world.disclosures.disclose_from_vault(
            subject=subject,
            recipient="service_providers",
            purpose="provide_service",
            categories=["account"],
            actor="svc",
            country="DE",
        )
    assert denied.value.rule == "restriction"
    assert count(world) == 0


def test_a_subjects_disclosures_for_access_and_unlinking_after_erasure(world):
    subject, other = someone(), someone()
    for s in (subject, other):
        world.disclosures.record(
            recipient="group_companies",
            purpose="provide_service",
            categories=["account"],
            actor="svc",
            subject=s,
            country="US",
        )
    [mine] = world.disclosures.for_subject(subject)
    assert mine.recipient == "group_companies"
    with world.engine.begin() as conn:
        assert world.disclosures.forget_in(conn, world.hasher(subject)) == 1
    assert world.disclosures.for_subject(subject) == []
    assert len(world.disclosures.for_subject(other)) == 1
    assert world.disclosures.report("recipient")[0].disclosures == 2  # still counted


@pytest.mark.parametrize("recipient", ["service_providers", "group_companies"])
def test_a_recipient_in_several_countries_needs_the_country(world, recipient):
    with pytest.raises(PurposeDenied) as denied:
        world.disclosures.record(
            recipient=recipient, purpose="provide_service", categories=["account"], actor="u"
        )
    assert denied.value.rule == "country_required"
    assert count(world) == 0
    d = world.disclosures.record(
        recipient=recipient, purpose="provide_service", categories=["account"], actor="u",
        country="us",
    )  # fmt: skip
    assert d.country == "US"


def test_the_country_report_has_one_row_per_country(world):
    for country in ("US", "DE", "US"):
        world.disclosures.record(recipient="service_providers", purpose="provide_service",
                                 categories=["account"], actor="u", country=country)  # fmt: skip
    world.disclosures.record(recipient="authorities", purpose="legal_compliance",
                             categories=["account"], actor="u")  # fmt: skip
    rows = world.disclosures.report("country")
    assert [(r.key, r.disclosures) for r in rows] == [("DE", 2), ("US", 2)]


def _long_categories(d: dict[str, Any]) -> None:
    # 20 declared categories with 60-character ids: 1,219 characters as a list
    ids = [f"category_{i:02d}_" + "x" * 47 for i in range(20)]
    d["categories"] += [{"id": i, "name": i} for i in ids]
    d["purposes"][0]["activities"][0]["categories"] += ids
    sp = next(r for r in d["recipients"] if r["id"] == "service_providers")
    sp["categories"] += ids
    sp["transfer"]["mechanism"] = "bcr"
    sp["transfer"]["reference"] = "R" * 200  # the longest the policy allows


def test_long_category_lists_and_references_fit_the_log(engine, tmp_path, seed_variant):
    policy = load_policy(seed_variant(_long_categories)).policy
    world = World(engine, policy, tmp_path)
    cats = [c.id for c in policy.categories if c.id.startswith("category_")]
    d = world.disclosures.record(recipient="service_providers", purpose="provide_service",
                                 categories=cats, actor="u", country="US")  # fmt: skip
    [stored] = world.disclosures.recent()
    assert stored.categories == sorted(cats) == d.categories
    assert stored.mechanism_detail == "R" * 200
