"""`troth diff`: two versions of the seed policy, with known changes, reported exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SEED
from troth.policy.diff import diff_policies
from troth.policy.loader import load_policy

TROTH = str(Path(sys.executable).with_name("troth"))


def _activity(d, aid):
    return next(a for p in d["purposes"] for a in p["activities"] if a["id"] == aid)


def version_two(d):
    d["version"] = "1.1.0"
    # material: a new advertising cookie from a new recipient abroad
    d["recipients"].append(
        {
            "id": "social_network",
            "name": "Social Network Inc.",
            "type": "advertising_network",
            "role": "controller",
            "description": {"en": "Shows our ads.", "de": "Zeigt unsere Werbung."},
            "countries": ["US"],
            "purposes": ["advertising"],
            "transfer": {"mechanism": "scc", "scc_module": 1},
            "opt_out": "https://social.example/opt-out",
        }
    )
    d["tracking"].append(
        {
            "id": "social_pixel_cookie",
            "type": "cookie",
            "name": "_snp",
            "party": "third",
            "vendor": "social_network",
            "category": "advertising",
            "expiry": "P90D",
            "purposes": ["advertising"],
            "description": {"en": "Retargeting.", "de": "Retargeting."},
        }
    )
    # material: a wider legal basis (consent -> legitimate interest)
    prospects = _activity(d, "marketing_prospects")
    prospects["basis"] = "legitimate_interest"
    prospects.pop("consent")
    prospects["legitimate_interest"] = {"en": "Winning customers.", "de": "Kundengewinnung."}
    # material: a new data category, used by an existing activity
    d["categories"].append(
        {"id": "location", "name": {"en": "Location", "de": "Standort"}, "source": "observed"}
    )
    _activity(d, "fraud_and_abuse")["categories"].append("location")
    # not material: wording, and removing a technology
    develop = next(p for p in d["purposes"] if p["id"] == "develop_services")
    develop["title"] = {"en": "To build new services", "de": "Um neue Dienste zu entwickeln"}
    d["tracking"] = [t for t in d["tracking"] if t["id"] != "remember_user"]


def test_reports_exactly_the_material_changes(seed, seed_variant):
    new = load_policy(seed_variant(version_two)).policy
    result = diff_policies(seed.policy, new)
    material = {(c.kind, c.entity, c.id) for c in result.material}
    assert material == {
        ("added", "recipient", "social_network"),
        ("added", "transfer", "social_network"),
        ("added", "tracking", "social_pixel_cookie"),
        ("widened", "basis", "marketing_prospects"),
        ("added", "category", "location"),
        ("widened", "activity", "fraud_and_abuse"),
    }
    minor = {(c.kind, c.entity, c.id) for c in result.changes if not c.material}
    assert ("reworded", "purpose", "develop_services") in minor
    assert ("removed", "tracking", "remember_user") in minor
    assert result.reconsent == ["advertising"]


def test_no_changes_between_identical_versions(seed):
    result = diff_policies(seed.policy, seed.policy)
    assert result.changes == []
    assert result.reconsent == []


def test_wording_only_is_not_material(seed, seed_variant):
    def reword(d):
        d["version"] = "1.0.1"
        d["purposes"][0]["title"] = {
            "en": "To run our services",
            "de": "Um unsere Dienste zu betreiben",
        }

    result = diff_policies(seed.policy, load_policy(seed_variant(reword)).policy)
    assert result.material == []
    assert [(c.kind, c.entity) for c in result.changes] == [("reworded", "purpose")]


def test_longer_retention_and_expiry_are_material(seed, seed_variant):
    def lengthen(d):
        _activity(d, "usage_analytics")["retention"]["period"] = "P5Y"
        ga = next(t for t in d["tracking"] if t["id"] == "ga")
        ga["expiry"] = "P5Y"

    result = diff_policies(seed.policy, load_policy(seed_variant(lengthen)).policy)
    assert {(c.entity, c.id) for c in result.material} == {
        ("retention", "usage_analytics"),
        ("tracking", "ga"),
    }
    assert result.reconsent == ["analytics"]


def test_narrowing_is_not_material(seed, seed_variant):
    def narrow(d):
        d["tracking"] = [t for t in d["tracking"] if t["category"] != "advertising"]
        _activity(d, "metered_plan")["retention"]["period"] = "P1M"

    result = diff_policies(seed.policy, load_policy(seed_variant(narrow)).policy)
    assert result.material == []
    assert result.changes


def test_cli_exit_codes(seed_variant):
    v2 = seed_variant(version_two)
    r = subprocess.run(
        [TROTH, "diff", str(SEED), str(v2)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 1
    assert "ask again for: advertising" in r.stdout
    r = subprocess.run(
        [TROTH, "diff", str(SEED), str(v2), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1
    assert '"material": true' in r.stdout
