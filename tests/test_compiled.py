"""The compiled policy answers purpose questions from lookup tables."""

from __future__ import annotations

from troth.policy.compiled import compile_policy


def test_contract_activity_is_allowed_without_consent(minimal):
    c = compile_policy(minimal.policy)
    d = c.decide("provide_service", ["account"])
    assert d.allowed
    assert d.activities == ("run_account",)


def test_consent_activity_needs_its_consent(minimal):
    c = compile_policy(minimal.policy)
    denied = c.decide("analytics", ["usage"], consents=())
    assert not denied.allowed
    assert denied.missing_consents == ("analytics",)
    assert c.decide("analytics", ["usage"], consents={"analytics"}).allowed


def test_undeclared_purpose_or_category_is_denied_with_reason(minimal):
    c = compile_policy(minimal.policy)
    assert "not declared" in c.decide("profiling", ["account"]).reason
    d = c.decide("analytics", ["account"], consents={"analytics"})
    assert not d.allowed
    assert "'account'" in d.reason


def test_cookie_lookup_by_name_and_pattern(minimal):
    c = compile_policy(minimal.policy)
    assert c.tracking_for_name("session").id == "session"
    assert c.tracking_for_name("_stats_abc").id == "stats"
    assert c.tracking_for_name("_stats") is None
    assert c.tracking_for_name("other") is None


def test_seed_security_uses_need_no_consent(seed):
    c = compile_policy(seed.policy)
    for activity in c.activities.values():
        if activity.basis_kind == "consent":
            assert activity.consent is not None
            decision = c.decide(activity.purpose, sorted(activity.categories), consents=())
            assert not decision.allowed or any(
                c.activities[a].basis_kind != "consent" for a in decision.activities
            )


def test_different_bases_for_one_category_need_a_named_activity(seed):
    c = compile_policy(seed.policy)
    d = c.decide("prevent_harm", ["usage"])
    assert not d.allowed
    assert d.rule == "ambiguous"
    assert c.decide("prevent_harm", ["usage"], activity="fraud_and_abuse").activities == (
        "fraud_and_abuse",
    )
    assert c.decide("provide_service", ["account"]).allowed  # all contract: no choice to make


def test_named_consent_activity_needs_its_consent(seed):
    c = compile_policy(seed.policy)
    denied = c.decide("communicate", ["contact"], activity="marketing_prospects")
    assert denied.rule == "consent"
    assert denied.missing_consents == ("email_marketing",)
    assert c.decide(
        "communicate", ["contact"], {"email_marketing"}, activity="marketing_prospects"
    ).allowed
