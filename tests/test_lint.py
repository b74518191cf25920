"""Lint rules: each fires on the defect it names, at the right place, and not on a clean policy."""

from __future__ import annotations

from typing import Any

import pytest

from troth.policy.lint import lint
from troth.render.i18n import available_locales


def codes(loaded) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in lint(loaded, available_locales()):
        out.setdefault(f.code, []).append(f.severity)
    return out


def activity(data: dict[str, Any], aid: str) -> dict[str, Any]:
    for p in data["purposes"]:
        for a in p["activities"]:
            if a["id"] == aid:
                return a
    raise KeyError(aid)


def test_minimal_policy_is_clean(minimal):
    assert lint(minimal, available_locales()) == []


def test_seed_policy_has_no_lint_errors(seed):
    errors = [str(f) for f in lint(seed, available_locales()) if f.severity == "error"]
    assert errors == []


def test_seed_policy_is_translated_completely(seed):
    missing = [str(f) for f in lint(seed, available_locales()) if f.code == "T050"]
    assert missing == []


def _li_without_interest(d):
    activity(d, "run_account").update(basis="legitimate_interest")


def _consent_without_category(d):
    activity(d, "usage_analytics").pop("consent")


def _consent_on_contract(d):
    activity(d, "run_account").update(consent="analytics")


def _no_retention(d):
    activity(d, "run_account").pop("retention")


def _obligation_unnamed(d):
    activity(d, "run_account").update(basis="legal_obligation")


def _tracking_without_consent_activity(d):
    d["tracking"][1]["purposes"] = ["provide_service"]


def _necessary_on_consent_purpose(d):
    d["tracking"][0]["purposes"] = ["analytics"]


def _third_party_without_vendor(d):
    d["tracking"][1].pop("vendor")


def _cookie_without_expiry(d):
    d["tracking"][0].pop("expiry")


def _transfer_missing(d):
    d["recipients"][0].pop("transfer")


def _scc_without_module(d):
    d["recipients"][0]["transfer"].pop("scc_module")


def _transfer_expired(d):
    d["recipients"][0]["transfer"]["valid_until"] = "2025-01-01"


def _unused_category(d):
    d["categories"].append({"id": "shoe_size", "name": "Shoe size"})


def _third_party_source_unexplained(d):
    d["categories"][1]["source"] = "third_party"


def _right_missing(d):
    d["rights"] = [r for r in d["rights"] if r["right"] != "erasure"]


def _no_authority(d):
    d["jurisdictions"][0].pop("authority")


def _required_without_reason(d):
    d["consent_categories"][1]["required"] = True


def _missing_translation(d):
    d["languages"] = ["en", "de"]


def _example_value(d):
    d["example_values"] = ["controller.name"]


def _unknown_locale(d):
    d["languages"] = ["en", "fr"]


@pytest.mark.parametrize(
    ("edit", "code", "severity"),
    [
        (_li_without_interest, "T001", "error"),
        (_consent_without_category, "T002", "error"),
        (_consent_on_contract, "T003", "error"),
        (_obligation_unnamed, "T004", "warning"),
        (_no_retention, "T042", "error"),
        (_tracking_without_consent_activity, "T010", "error"),
        (_necessary_on_consent_purpose, "T010", "error"),
        (_third_party_without_vendor, "T011", "error"),
        (_cookie_without_expiry, "T012", "error"),
        (_transfer_missing, "T020", "error"),
        (_scc_without_module, "T021", "error"),
        (_transfer_expired, "T022", "error"),
        (_unused_category, "T030", "error"),
        (_third_party_source_unexplained, "T043", "error"),
        (_right_missing, "T040", "error"),
        (_no_authority, "T041", "error"),
        (_required_without_reason, "T047", "error"),
        (_missing_translation, "T050", "warning"),
        (_example_value, "T051", "warning"),
        (_unknown_locale, "T053", "error"),
    ],
)
def test_rule_fires(minimal_variant, edit, code, severity):
    found = codes(minimal_variant(edit))
    assert code in found, found
    assert severity in found[code]


def test_findings_point_at_the_offending_line(minimal_variant):
    loaded = minimal_variant(_transfer_missing)
    finding = next(f for f in lint(loaded) if f.code == "T020")
    with open(loaded.source.path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert finding.location is not None
    assert lines[finding.location.line - 1].strip() in ("- US", "countries: [US]")
    assert "stats_co" in finding.message
    assert "US" in finding.message


def test_recipient_inside_the_eea_needs_no_transfer(minimal_variant):
    def edit(d):
        d["recipients"][0]["countries"] = ["IE", "FR"]
        d["recipients"][0].pop("transfer")

    assert "T020" not in codes(minimal_variant(edit))


def test_missing_translation_names_the_field(minimal_variant):
    loaded = minimal_variant(_missing_translation)
    messages = [f.message for f in lint(loaded) if f.code == "T050"]
    assert any(m.startswith("purposes[0].title has no de translation") for m in messages)
