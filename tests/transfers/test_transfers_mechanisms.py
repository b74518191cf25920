"""Transfer mechanisms checked on the policy's effective date: adequacy decisions with their
dates and partial scopes, SCCs with their decision and module, derogations, and the age of
the shipped adequacy data set. Bad input in the new fields names file:line:col."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest

from troth.errors import PolicyFileError
from troth.policy.adequacy import adequacy_data
from troth.policy.lint import Finding, lint
from troth.policy.loader import LoadedPolicy, load_policy
from troth.transfers.decide import decide_disclosure
from troth.transfers.register import transfer_register

Edit = Callable[[dict[str, Any]], None]
# A day well inside the data set's review window, so that T029 stays quiet unless asked.
FRESH = adequacy_data().reviewed + dt.timedelta(days=1)


def transfer_findings(loaded: LoadedPolicy, today: dt.date = FRESH) -> list[Finding]:
    return [f for f in lint(loaded, today=today) if f.code[:3] == "T02"]


def recipient(
    countries: list[str], transfer: dict[str, Any] | None, effective: str = "2026-12-01"
) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        d["effective"] = dt.date.fromisoformat(effective)
        d["recipients"][0]["countries"] = countries
        if transfer is None:
            d["recipients"][0].pop("transfer", None)
        else:
            d["recipients"][0]["transfer"] = transfer

    return edit


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [str(f) for f in findings]
    return findings[0]


# --- expiry on the effective date ------------------------------------------------------------


def test_the_2021_uk_decision_holds_the_day_before_it_expires(minimal_variant):
    # Implementing Decision (EU) 2021/1772 as extended no longer applies from 2025-12-27.
    uk = {"mechanism": "adequacy", "adequacy": ["eu_gb_2021"]}
    assert transfer_findings(minimal_variant(recipient(["GB"], uk, "2025-12-26"))) == []


def test_the_2021_uk_decision_fails_on_the_day_it_expires(minimal_variant):
    uk = {"mechanism": "adequacy", "adequacy": ["eu_gb_2021"]}
    f = only(transfer_findings(minimal_variant(recipient(["GB"], uk, "2025-12-27"))))
    assert (f.code, f.severity) == ("T025", "error")
    assert "2021/1772" in f.message
    assert "2025-12-27" in f.message
    assert f.loc == ("recipients", 0, "transfer", "adequacy")


def test_the_uk_renewal_covers_transfers_until_2031(minimal_variant):
    renewed = {"mechanism": "adequacy"}  # no decision named: every UK decision is considered
    assert transfer_findings(minimal_variant(recipient(["GB"], renewed, "2031-12-26"))) == []
    f = only(transfer_findings(minimal_variant(recipient(["GB"], renewed, "2031-12-27"))))
    assert f.code == "T025"


def test_brazil_is_adequate_only_from_its_2026_decision(minimal_variant):
    brazil = {"mechanism": "adequacy"}
    f = only(transfer_findings(minimal_variant(recipient(["BR"], brazil, "2026-01-25"))))
    assert f.code == "T025"
    assert "2026/179" in f.message
    assert transfer_findings(minimal_variant(recipient(["BR"], brazil, "2026-01-26"))) == []


def test_own_validity_dates_of_a_mechanism(minimal_variant):
    scc = {"mechanism": "scc", "scc_module": 2, "valid_until": "2026-11-30"}
    f = only(transfer_findings(minimal_variant(recipient(["US"], scc))))
    assert (f.code, f.loc[-1]) == ("T022", "valid_until")
    scc["valid_until"] = "2026-12-01"  # valid through its last day, the effective date
    assert transfer_findings(minimal_variant(recipient(["US"], scc))) == []
    later = {"mechanism": "scc", "scc_module": 2, "valid_from": "2026-12-02"}
    f = only(transfer_findings(minimal_variant(recipient(["US"], later))))
    assert (f.code, f.loc[-1]) == ("T022", "valid_from")


def test_an_adequacy_decision_that_was_annulled(minimal_variant):
    shield = {"mechanism": "adequacy", "adequacy": ["eu_us_privacy_shield"]}
    f = only(transfer_findings(minimal_variant(recipient(["US"], shield))))
    assert f.code == "T025"
    assert "C-311/18" in f.message


# --- SCCs -----------------------------------------------------------------------------------


def test_scc_without_module(minimal_variant):
    f = only(transfer_findings(minimal_variant(recipient(["US"], {"mechanism": "scc"}))))
    assert (f.code, f.severity) == ("T021", "error")


def test_repealed_scc_decision(minimal_variant):
    old = {"mechanism": "scc", "scc": "2010/87"}
    f = only(transfer_findings(minimal_variant(recipient(["US"], old))))
    assert (f.code, f.loc[-1]) == ("T025", "scc")
    assert "2022-12-27" in f.message


# --- partial adequacy -----------------------------------------------------------------------


def test_dpf_needs_a_certified_recipient(minimal_variant):
    uncertified = {"mechanism": "adequacy", "adequacy": ["eu_us_dpf"]}
    f = only(transfer_findings(minimal_variant(recipient(["US"], uncertified))))
    assert (f.code, f.loc[-1]) == ("T026", "adequacy_scope")
    assert "Data Privacy Framework" in f.message
    certified = {**uncertified, "adequacy_scope": ["dpf_certified"]}
    assert transfer_findings(minimal_variant(recipient(["US"], certified))) == []


def test_us_recipient_without_the_dpf_cannot_rest_on_adequacy(minimal_variant):
    # the only decisions for the US in force are partial (DPF); Privacy Shield has ended
    f = only(transfer_findings(minimal_variant(recipient(["US"], {"mechanism": "adequacy"}))))
    assert f.code == "T026"


def test_canada_covers_commercial_organisations_only(minimal_variant):
    public_body = {"mechanism": "adequacy"}
    f = only(transfer_findings(minimal_variant(recipient(["CA"], public_body))))
    assert f.code == "T026"
    assert "PIPEDA" in f.message
    commercial = {"mechanism": "adequacy", "adequacy_scope": ["pipeda"]}
    assert transfer_findings(minimal_variant(recipient(["CA"], commercial))) == []


def test_a_country_without_any_decision(minimal_variant):
    f = only(transfer_findings(minimal_variant(recipient(["SG"], {"mechanism": "adequacy"}))))
    assert (f.code, f.loc[-1]) == ("T024", "mechanism")


def test_a_named_decision_for_another_country(minimal_variant):
    wrong = {"mechanism": "adequacy", "adequacy": ["eu_ch"]}
    f = only(transfer_findings(minimal_variant(recipient(["JP"], wrong))))
    assert (f.code, f.loc[-1]) == ("T024", "adequacy")


def test_inside_the_eea_nothing_is_a_transfer(minimal_variant):
    assert transfer_findings(minimal_variant(recipient(["FR", "IE"], None))) == []


def test_a_derogation_for_a_regular_service_provider_is_a_warning(minimal_variant):
    derogation = {"mechanism": "derogation_contract"}
    f = only(transfer_findings(minimal_variant(recipient(["US"], derogation))))
    assert (f.code, f.severity) == ("T028", "warning")


def test_the_seed_transfers_hold_on_its_effective_date(seed):
    assert [str(f) for f in transfer_findings(seed)] == []


# --- the data set's age -----------------------------------------------------------------------


def test_an_old_data_set_is_a_warning(minimal):
    reviewed = adequacy_data().reviewed
    six_months_later = dt.date(
        reviewed.year + (reviewed.month + 5) // 12, (reviewed.month + 5) % 12 + 1, reviewed.day
    )
    assert not [f for f in lint(minimal, today=six_months_later) if f.code == "T029"]
    late = six_months_later + dt.timedelta(days=1)
    f = only([f for f in lint(minimal, today=late) if f.code == "T029"])
    assert f.severity == "warning"
    assert str(reviewed) in f.message


def test_the_data_set_names_its_sources_and_the_decisions_the_brief_requires():
    data = adequacy_data()
    assert data.sources
    for decision in ("eu_gb", "eu_br", "eu_us_dpf", "eu_ca_pipeda", "eu_jp_appi", "eu_kr",
                     "eu_ch", "eu_il", "eu_nz", "eu_uy", "eu_ar", "eu_ad", "eu_fo", "eu_gg",
                     "eu_je", "eu_im", "eu_epo", "uk_us_data_bridge"):  # fmt: skip
        assert decision in data.decisions
    assert data.decisions["eu_gb"].expires == dt.date(2031, 12, 27)
    assert data.decisions["eu_us_dpf"].condition == "dpf_certified"


# --- bad input in the new fields --------------------------------------------------------------


def _broken(seed_variant: Callable[[Edit], Any], edit: Edit) -> PolicyFileError:
    path = seed_variant(edit)
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    return caught.value


def _google(d: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in d["recipients"] if r["id"] == "google_analytics")["transfer"]


def test_unknown_adequacy_decision_names_its_line(seed_variant):
    err = _broken(seed_variant, lambda d: _google(d).update(adequacy=["eu_us_dpff"]))
    text = str(err)
    assert re.search(r"variant-\d+\.yaml:\d+:\d+: ", text), text
    assert "eu_us_dpf" in text  # the suggestion
    assert "Traceback" not in text


def test_unknown_scope_condition_and_scc_decision(seed_variant):
    err = _broken(seed_variant, lambda d: _google(d).update(adequacy_scope=["dpf_certifed"]))
    assert "dpf_certified" in str(err)
    err = _broken(
        seed_variant,
        lambda d: next(r for r in d["recipients"] if r["id"] == "ad_network")["transfer"].update(
            scc="2021/915"
        ),
    )
    assert re.search(r":\d+:\d+: .*2021/914", str(err)), str(err)


def test_wrong_type_for_adequacy_names_its_line(seed_variant):
    err = _broken(seed_variant, lambda d: _google(d).update(adequacy={"eu": "us"}))
    assert re.search(r"variant-\d+\.yaml:\d+:\d+: ", str(err)), str(err)


# --- decisions for an international organisation ---------------------------------------------


def test_naming_the_epo_decision_does_not_cover_any_other_recipient(minimal_variant):
    # eu_epo covers transfers to the European Patent Organisation only, not a US company
    # that names it
    epo = {"mechanism": "adequacy", "adequacy": ["eu_epo"]}
    loaded = minimal_variant(recipient(["US"], epo))
    f = only(transfer_findings(loaded))
    assert (f.code, f.loc[-1]) == ("T024", "adequacy")
    assert "european_patent_organisation" in f.message
    [row] = transfer_register(loaded.policy, FRESH)
    assert (row.ok, row.decisions) == (False, [])  # not shown as relied on either


def test_the_epo_decision_covers_the_organisation_that_says_it_is_it(minimal_variant):
    epo = {"mechanism": "adequacy", "adequacy": ["eu_epo"],
           "organisation": "european_patent_organisation"}  # fmt: skip
    assert transfer_findings(minimal_variant(recipient(["US"], epo))) == []
    unnamed = {"mechanism": "adequacy", "organisation": "european_patent_organisation"}
    assert transfer_findings(minimal_variant(recipient(["SG"], unnamed))) == []


def test_an_unknown_organisation_names_its_line(seed_variant):
    err = _broken(
        seed_variant,
        lambda d: _google(d).update(organisation="european_patent_office"),
    )
    assert re.search(r"variant-\d+\.yaml:\d+:\d+: .*european_patent_organisation", str(err)), str(
        err
    )


def test_a_reference_longer_than_the_log_keeps_names_its_line(seed_variant):
    err = _broken(seed_variant, lambda d: _google(d).update(reference="R" * 201))
    assert re.search(r"variant-\d+\.yaml:\d+:\d+: .*200 characters", str(err)), str(err)


def test_at_most_eight_adequacy_decisions_and_their_ids_fit_the_log():
    longest = sorted(adequacy_data().decisions, key=len)[-8:]
    assert len(", ".join(longest)) <= 200  # the disclosure log's mechanism_detail


def test_nine_named_decisions_are_refused(seed_variant):
    nine = ["eu_ad", "eu_ar", "eu_ch", "eu_fo", "eu_gg", "eu_im", "eu_je", "eu_nz", "eu_uy"]
    err = _broken(seed_variant, lambda d: _google(d).update(adequacy=nine))
    assert re.search(r"variant-\d+\.yaml:\d+:\d+: .*8", str(err)), str(err)


# --- regimes that do not bind the controller ---------------------------------------------------


def test_a_named_decision_of_a_regime_that_does_not_bind_is_a_warning(minimal_variant):
    both = {"mechanism": "adequacy", "adequacy": ["uk_us_data_bridge", "eu_us_dpf"],
            "adequacy_scope": ["dpf_certified"]}  # fmt: skip
    f = only(transfer_findings(minimal_variant(recipient(["US"], both))))
    assert (f.code, f.severity, f.loc[-2:]) == ("T027", "warning", ("adequacy", 0))
    assert "uk_us_data_bridge" in f.message


def _in_the_us(d: dict[str, Any]) -> None:
    d["controller"]["establishments"] = ["US"]
    d["recipients"][0]["countries"] = ["SG"]
    d["recipients"][0].pop("transfer")


def test_without_a_binding_regime_lint_and_disclosures_use_the_same_region_rule(minimal_variant):
    loaded = minimal_variant(_in_the_us)
    f = only([f for f in transfer_findings(loaded) if f.severity == "error"])
    assert (f.code, f.loc[-1]) == ("T020", "countries")
    decided = decide_disclosure(loaded.policy, "stats_co", "analytics", ["usage"], FRESH, "SG")
    assert (decided.allowed, decided.rule) == (False, "no_mechanism")


def test_without_a_binding_regime_a_stated_mechanism_allows_the_disclosure(minimal_variant):
    def with_scc(d: dict[str, Any]) -> None:
        _in_the_us(d)
        d["recipients"][0]["transfer"] = {"mechanism": "scc", "scc_module": 2}

    loaded = minimal_variant(with_scc)
    assert [f for f in transfer_findings(loaded) if f.severity == "error"] == []
    decided = decide_disclosure(loaded.policy, "stats_co", "analytics", ["usage"], FRESH)
    assert (decided.allowed, decided.mechanism, decided.country) == (True, "eu-gdpr:A46-2-c", "SG")


def _ad_network(d: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in d["recipients"] if r["id"] == "ad_network")["transfer"]


def test_a_mechanism_valid_until_before_it_is_valid_from_names_its_line(seed_variant):
    err = _broken(
        seed_variant,
        lambda d: _ad_network(d).update(valid_from="2027-01-01", valid_until="2026-12-31"),
    )
    assert re.search(
        r"variant-\d+\.yaml:\d+:\d+: .*valid_from \(2027-01-01\) is after valid_until", str(err)
    ), str(err)


@pytest.mark.parametrize("old", ["2010/87", "2004/915", "2001/497"])
def test_a_module_of_clauses_that_have_none_names_its_line(seed_variant, old):
    err = _broken(seed_variant, lambda d: _ad_network(d).update(scc=old))
    assert re.search(rf"variant-\d+\.yaml:\d+:\d+: .*scc_module: .*{old} have no modules", str(err))


# --- one rule for when a decision applies ------------------------------------------------------

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]  # fmt: skip


def test_eu_adequacy_decisions_apply_from_the_date_they_bear():
    # notified to the Member States on that date, they take effect then (TFEU Art. 297(2)),
    # not on publication in the Official Journal; see NOTICE-adequacy.md
    data = adequacy_data()
    for d in data.regimes["eu"][1]:
        if d.id == "eu_gb":  # recorded from the day the 2021 decision ceased (NOTICE)
            continue
        day, month, year = re.search(r" of (\d{1,2}) (\w+) (\d{4})", d.reference).groups()
        bears = dt.date(int(year), _MONTHS.index(month) + 1, int(day))
        assert d.applies_from == bears, d.id
    assert data.decisions["eu_br"].applies_from == dt.date(2026, 1, 26)
    assert data.decisions["eu_epo"].applies_from == dt.date(2025, 7, 15)


def test_the_epo_decision_applies_from_its_notification(minimal_variant):
    epo = {"mechanism": "adequacy", "adequacy": ["eu_epo"],
           "organisation": "european_patent_organisation"}  # fmt: skip
    f = only(transfer_findings(minimal_variant(recipient(["US"], epo, "2025-07-14"))))
    assert f.code == "T025"
    assert "applies only from 2025-07-15" in f.message
    assert transfer_findings(minimal_variant(recipient(["US"], epo, "2025-07-15"))) == []


def test_a_uk_controller_sends_to_a_recipient_declared_in_the_eea_under_uk_adequacy(
    minimal_variant,
):
    def uk(d: dict[str, Any]) -> None:
        d["controller"]["establishments"] = ["GB"]
        d["recipients"][0]["countries"] = ["EEA"]
        d["recipients"][0]["transfer"] = {"mechanism": "adequacy"}

    loaded = minimal_variant(uk)
    assert transfer_findings(loaded) == []
    decided = decide_disclosure(loaded.policy, "stats_co", "analytics", ["usage"], FRESH, "FR")
    assert (decided.allowed, decided.mechanism, decided.country) == (True, "eu-gdpr:A45-3", "FR")
