"""The reference service (examples/seed-service/service/lumen.py) against a real troth
server with the seed policy: every purpose of the seed's §2 is enforced where Lumen uses
the data, and troth denies what the policy, consent or the subject's limits forbid.

Lumen names the seed activity of every call, so troth applies that activity's basis even
where other activities of the same purpose cover the same categories on another basis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from conftest import ROOT, SEED, TROTH_BIN, running_server

sys.path.insert(0, str(ROOT / "examples" / "seed-service" / "service"))

from lumen import Denied, Lumen, TrothClient


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lumen, TrothClient]]:
    work = tmp_path_factory.mktemp("lumen")
    url = f"sqlite:///{work / 'troth.db'}"
    heads = str(work / "heads.jsonl")
    env = {**os.environ, "TROTH_KEYS_DIR": str(work / "keys"), "TROTH_AUDIT_HEADS": heads}
    with running_server(SEED, url, work, env={"TROTH_AUDIT_HEADS": heads}) as server:
        keys = {}
        for role in ("service", "privacy_officer"):
            out = subprocess.run(
                [TROTH_BIN, "keys", "create", "--role", role, "--label", f"lumen {role}",
                 "--database-url", url],
                capture_output=True, text=True, env=env, cwd=work, check=True, timeout=60,
            )  # fmt: skip
            keys[role] = out.stdout.strip()
        with (
            TrothClient(server.url, keys["service"]) as service,
            TrothClient(server.url, keys["privacy_officer"]) as officer,
        ):
            yield Lumen(service), officer


@pytest.fixture
def lumen(site: tuple[Lumen, TrothClient]) -> Lumen:
    return site[0]


@pytest.fixture
def officer(site: tuple[Lumen, TrothClient]) -> TrothClient:
    return site[1]


def customer(lumen: Lumen, plan: str = "basic") -> str:
    account = f"acct:{uuid.uuid4().hex}"
    lumen.sign_up(account, plan, f"{account[5:13]}@example.org")
    return account


def test_metering_and_billing_rest_on_the_contract(lumen):
    account = customer(lumen)
    assert lumen.start_session(account, "laptop") == "basic"
    lumen.record_usage(account, 10.5, 90)
    lumen.record_usage(account, 2, 30)
    assert lumen.bill(account) == Decimal("7.45")  # 12.5 GB x 0.50 + 120 min x 0.01
    assert lumen.bill(account) == Decimal("0.00")  # a new period
    assert lumen.keep_records(account)["billing"] == '{"amount": "0.00"}'


def test_threats_are_recorded_and_abuse_flagged(lumen):
    account = customer(lumen)
    assert not lumen.check_threat(account, "phone", "192.0.2.7")
    assert lumen.check_threat(account, "phone", "203.0.113.9")
    assert lumen.flag_abuse(account, 800.0)
    assert not lumen.flag_abuse(account, 3.0)


def test_service_notice_goes_to_the_customer(lumen):
    account = customer(lumen)
    assert lumen.send_service_notice(account).to.endswith("@example.org")


def test_analytics_is_denied_until_the_account_consents(lumen):
    account = customer(lumen)
    with pytest.raises(Denied) as denied:
        lumen.analyse_usage(account)
    assert denied.value.rule == "consent"
    assert "analytics" in denied.value.reason
    lumen.troth.consent(account, {"analytics": "given"})
    assert lumen.analyse_usage(account) == {"usage": None, "device": None}
    lumen.troth.consent(account, {"analytics": "refused"})
    with pytest.raises(Denied, match=r"^consent:"):
        lumen.analyse_usage(account)


def test_marketing_to_a_prospect_needs_consent_and_stops_on_withdrawal(lumen):
    prospect = f"prospect:{uuid.uuid4().hex}"
    with pytest.raises(Denied) as denied:
        lumen.add_prospect(prospect, "prospect@example.org")
    assert denied.value.rule == "consent"
    assert "email_marketing" in denied.value.reason
    receipt = lumen.troth.consent(prospect, {"email_marketing": "given"})
    assert receipt
    lumen.add_prospect(prospect, "prospect@example.org")
    assert lumen.send_marketing(prospect).to == "prospect@example.org"
    lumen.troth.consent(prospect, {"email_marketing": "refused"})
    with pytest.raises(Denied) as denied:
        lumen.send_marketing(prospect)  # troth's own check: Lumen has none
    assert denied.value.rule == "consent"
    assert "email_marketing" in denied.value.reason


def test_a_purpose_the_policy_does_not_declare_is_denied(lumen):
    account = customer(lumen)
    with pytest.raises(Denied, match=r"^policy:"):
        lumen.troth.get(account, ["bandwidth_usage"], purpose="advertising")
    with pytest.raises(Denied, match=r"^policy:"):
        lumen.troth.get(account, ["bandwidth_usage"], purpose="analytics")


def test_an_objection_stops_legitimate_interest_but_not_the_contract(lumen, officer):
    account = customer(lumen)
    lumen.record_feedback(account, "more servers in Asia")
    officer.limit(account, "objection", "develop_services", "by e-mail")
    with pytest.raises(Denied) as denied:
        lumen.record_feedback(account, "and faster ones")
    assert denied.value.rule == "objection"
    lumen.record_usage(account, 1, 1)
    assert lumen.bill(account) == Decimal("0.51")


def test_a_restriction_stops_everything_but_legal_obligations(lumen, officer):
    account = customer(lumen)
    lumen.record_usage(account, 4, 0)
    lumen.bill(account)
    lumen.troth.consent(account, {"analytics": "given"})
    officer.limit(account, "restriction", "*", "accuracy contested (Art. 18(1)(a))")
    for call in (
        lambda: lumen.start_session(account, "laptop"),
        lambda: lumen.record_usage(account, 1, 1),
        lambda: lumen.bill(account),
        lambda: lumen.check_threat(account, "laptop", "192.0.2.7"),
        lambda: lumen.flag_abuse(account, 800.0),
        lambda: lumen.send_service_notice(account),
        lambda: lumen.send_product_news(account),
        lambda: lumen.record_feedback(account, "hello"),
        lambda: lumen.analyse_usage(account),
    ):
        with pytest.raises(Denied) as denied:
            call()
        assert denied.value.rule == "restriction"
    assert lumen.keep_records(account)["billing"] == '{"amount": "2.00"}'


# --- activities of one purpose on different bases ------------------------------------------


def test_an_objection_to_prevent_harm_stops_abuse_detection(lumen, officer):
    account = customer(lumen)
    assert lumen.flag_abuse(account, 800.0)
    officer.limit(account, "objection", "prevent_harm", "by e-mail")
    lumen.record_usage(account, 1, 1)  # the contract goes on
    assert lumen.bill(account) == Decimal("0.51")
    with pytest.raises(Denied) as denied:
        lumen.flag_abuse(account, 800.0)
    assert denied.value.rule == "objection"


def test_a_restriction_stops_abuse_detection(lumen, officer):
    account = customer(lumen)
    assert not lumen.flag_abuse(account, 3.0)
    officer.limit(account, "restriction", "prevent_harm", "accuracy contested")
    with pytest.raises(Denied) as denied:
        lumen.flag_abuse(account, 800.0)
    assert denied.value.rule == "restriction"
    lumen.record_usage(account, 1, 1)  # the restriction is scoped to prevent_harm


def test_an_objection_to_communicate_stops_product_news(lumen, officer):
    account = customer(lumen)
    lumen.send_product_news(account)
    officer.limit(account, "objection", "communicate", "unsubscribe link")
    assert lumen.send_service_notice(account)  # the contract goes on
    with pytest.raises(Denied) as denied:
        lumen.send_product_news(account)
    assert denied.value.rule == "objection"


def test_the_vault_withholds_a_prospects_address_for_marketing_without_consent(lumen):
    prospect = f"prospect:{uuid.uuid4().hex}"
    lumen.troth.consent(prospect, {"email_marketing": "given"})
    lumen.add_prospect(prospect, "prospect@example.org")
    lumen.troth.consent(prospect, {"email_marketing": "refused"})
    with pytest.raises(Denied, match=r"^consent: consent not given: email_marketing$"):
        lumen.troth.get(
            prospect, ["contact"], purpose="communicate", activity="marketing_prospects"
        )


def test_a_call_that_names_no_activity_for_mixed_bases_is_ambiguous(lumen):
    account = customer(lumen)
    with pytest.raises(Denied) as denied:
        lumen.troth.get(account, ["account", "contact"], purpose="communicate")
    assert denied.value.rule == "ambiguous"
    assert "name the activity" in denied.value.reason
    with pytest.raises(Denied) as denied:
        lumen.troth.put(account, "contact", "x@example.org", purpose="communicate")
    assert denied.value.rule == "ambiguous"
    # one basis among the covering activities: no activity needs to be named
    assert lumen.troth.get(account, ["feedback"], purpose="develop_services") == {"feedback": None}


def test_an_activity_outside_the_purpose_or_its_categories_is_refused(lumen):
    account = customer(lumen)
    with pytest.raises(Denied, match=r"^policy:"):
        lumen.troth.get(account, ["contact"], purpose="communicate", activity="metered_plan")
    with pytest.raises(Denied, match=r"^policy:"):
        lumen.troth.get(account, ["device"], purpose="provide_service", activity="metered_plan")
