"""The transfers API and admin pages over the real app, on both databases: disclosures
recorded or refused with a problem naming the field, legal requests with holds and
releases, forms that need their CSRF token, and no subject in any answer."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from troth.auth.api_keys import create_api_key
from troth.auth.sessions import create_session
from troth.auth.users import add_user
from troth.config import Settings
from troth.errors import PurposeDenied
from troth.policy.loader import load_policy
from troth.policy.model import Policy
from troth.web.app import create_app
from troth.web.auth_deps import SESSION_COOKIE

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for `httpx2`; httpx works
    from fastapi.testclient import TestClient

SUBJECT = "acct:5f3a9c2e77b14d01"


def make_client(policy: Policy, db_url: str, work: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url, keys_dir=work / "keys", audit_heads=work / "audit" / "heads.jsonl"
    )
    with TestClient(create_app(policy, settings)) as client:
        yield client


@pytest.fixture
def client(seed: Any, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(seed.policy, db_url, tmp_path)


def engine_of(client: TestClient) -> Engine:
    app: FastAPI = client.app  # type: ignore[assignment]
    eng: Engine = app.state.services.engine
    return eng


def bearer(client: TestClient, role: str) -> dict[str, str]:
    _, key = create_api_key(engine_of(client), role, f"test {role}")
    return {"Authorization": f"Bearer {key}"}


def session(client: TestClient, role: str) -> tuple[dict[str, str], str]:
    user = add_user(engine_of(client), f"{role}-{uuid.uuid4().hex[:6]}@example.org", "pw" * 8, role)
    token, s = create_session(engine_of(client), user.id)
    return {"Cookie": f"{SESSION_COOKIE}={token}"}, s.csrf


DISCLOSURE = {
    "recipient": "service_providers",
    "purpose": "provide_service",
    "categories": ["account"],
    "subject": SUBJECT,
    "country": "US",
}


def test_a_disclosure_is_recorded_and_reported(client):
    r = client.post("/api/disclosures", json=DISCLOSURE, headers=bearer(client, "service"))
    assert r.status_code == 201, r.text
    assert r.json()["mechanism"] == "eu-gdpr:A46-2-c"
    assert SUBJECT not in r.text
    auditor = bearer(client, "auditor")
    report = client.get("/api/disclosures/report?by=country", headers=auditor).json()
    assert [(row["key"], row["disclosures"], row["subjects"]) for row in report["rows"]] == [
        ("US", 1, 1)
    ]
    listed = client.get("/api/disclosures", headers=auditor)
    assert [d["recipient"] for d in listed.json()["disclosures"]] == ["service_providers"]
    assert SUBJECT not in listed.text


def test_a_disclosure_without_a_mechanism_is_a_problem_naming_the_field(
    seed_variant, db_url, tmp_path
):
    def uncertified(d: dict[str, Any]) -> None:
        for r in d["recipients"]:
            if r["id"] == "google_analytics":
                r["transfer"].pop("adequacy_scope")
        d["version"] = "9.9.9"

    policy = load_policy(seed_variant(uncertified)).policy
    for client in make_client(policy, db_url, tmp_path):
        body = {"recipient": "google_analytics", "purpose": "analytics",
                "categories": ["usage"], "country": "US"}  # fmt: skip
        r = client.post("/api/disclosures", json=body, headers=bearer(client, "service"))
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith("no_mechanism: recipient: ")
        listed = client.get("/api/disclosures", headers=bearer(client, "auditor")).json()
        assert listed["disclosures"] == []
        state = client.get("/api/transfers", headers=bearer(client, "auditor")).json()
        assert state["ok"] is False
        ga = next(x for x in state["recipients"] if x["recipient"] == "google_analytics")
        assert ga["problems"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**DISCLOSURE, "categories": "account"}, "categories"),
        ({**DISCLOSURE, "purpose": "Provide Service"}, "purpose"),
        ({**DISCLOSURE, "subject": "x"}, "subject"),
        ({**DISCLOSURE, "extra": 1}, "extra"),
        ({k: v for k, v in DISCLOSURE.items() if k != "recipient"}, "recipient"),
    ],
)
def test_malformed_disclosures_are_4xx_naming_the_field(client, body, field):
    r = client.post("/api/disclosures", json=body, headers=bearer(client, "service"))
    assert r.status_code == 422
    assert field in r.text
    assert "Traceback" not in r.text
    listed = client.get("/api/disclosures", headers=bearer(client, "auditor")).json()
    assert listed["disclosures"] == []


def test_undeclared_purpose_is_refused_by_name(client):
    body = {**DISCLOSURE, "purpose": "advertising"}
    r = client.post("/api/disclosures", json=body, headers=bearer(client, "service"))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("purpose_undeclared: purpose: ")


def test_vault_disclosure_over_http(client):
    service = bearer(client, "service")
    put = {"subject": SUBJECT, "category": "account", "value": "Alex", "purpose": "provide_service"}
    assert client.post("/api/vault/put", json=put, headers=service).status_code == 204
    body = {k: v for k, v in DISCLOSURE.items()}
    r = client.post("/api/vault/disclose", json=body, headers=service)
    assert r.status_code == 200, r.text
    assert r.json() == {"values": {"account": "Alex"}}
    listed = client.get("/api/disclosures", headers=bearer(client, "auditor")).json()
    assert [d["source"] for d in listed["disclosures"]] == ["vault"]


def test_legal_request_hold_blocks_erasure_until_released(client):
    officer = bearer(client, "privacy_officer")
    services = client.app.state.services  # type: ignore[attr-defined]
    services.vault.put(SUBJECT, "account", "Alex", purpose="provide_service")
    request = {
        "authority": "Landeskriminalamt Berlin",
        "country": "DE",
        "reference": "LKA 123/27",
        "received": "2027-02-01",
        "decision": "disclosed",
        "legal_basis": "§ 100j StPO",
        "categories": ["account"],
        "subjects": [SUBJECT],
        "recipient": "authorities",
        "purpose": "legal_compliance",
    }
    r = client.post("/api/legal", json=request, headers=officer)
    assert r.status_code == 201, r.text
    assert SUBJECT not in r.text
    request_id = r.json()["id"]
    r = client.post(f"/api/legal/{request_id}/holds", json={"reason": "evidence"}, headers=officer)
    assert r.status_code == 201, r.text
    [hold] = r.json()["holds"]
    with pytest.raises(PurposeDenied):
        services.vault.erase(SUBJECT, actor="dpo")
    r = client.post(f"/api/legal/holds/{hold['id']}/release", json={}, headers=officer)
    assert r.status_code == 422  # a release needs a reason
    assert "reason" in r.text
    r = client.post(
        f"/api/legal/holds/{hold['id']}/release", json={"reason": "case closed"}, headers=officer
    )
    assert r.status_code == 200
    assert (r.json()["active"], r.json()["release_reason"]) == (False, "case closed")
    again = client.post(
        f"/api/legal/holds/{hold['id']}/release", json={"reason": "again"}, headers=officer
    )
    assert again.status_code == 409
    assert services.vault.erase(SUBJECT, actor="dpo")["values"] == 1
    listed = client.get("/api/legal", headers=officer)
    assert listed.json()["requests"][0]["holds"][0]["release_reason"] == "case closed"
    assert (
        client.post("/api/legal/999/holds", json={"reason": "x"}, headers=officer).status_code
        == 404
    )


def test_bad_legal_requests_are_4xx(client):
    officer = bearer(client, "privacy_officer")
    base = {"authority": "A", "country": "DE", "reference": "R", "received": "2027-02-01",
            "decision": "pending", "legal_basis": "law"}  # fmt: skip
    for bad, field in (
        ({**base, "received": "yesterday"}, "received"),
        ({**base, "decision": "maybe"}, "decision"),
        ({**base, "country": "XX"}, "country"),
        ({**base, "categories": ["shoe_size"]}, "categories"),
    ):
        r = client.post("/api/legal", json=bad, headers=officer)
        assert r.status_code == 422, (bad, r.text)
        assert field in r.text
    assert client.get("/api/legal", headers=officer).json()["requests"] == []


def test_admin_pages_show_the_register_and_forms_need_csrf(client):
    cookie, csrf = session(client, "privacy_officer")
    page = client.get("/admin/transfers", headers=cookie)
    assert page.status_code == 200
    assert "United States of America" in page.text
    assert "2021/914" in page.text
    assert "2023/1795" in page.text
    assert client.get("/admin/disclosures", headers=cookie).status_code == 200
    form = {"authority": "Polizei", "country": "DE", "reference": "P-1",
            "received": "2027-02-01", "decision": "pending", "legal_basis": "§ 163 StPO",
            "subjects": SUBJECT}  # fmt: skip
    assert client.post("/admin/legal", data=form, headers=cookie).status_code == 403
    r = client.post("/admin/legal", data={**form, "csrf": csrf}, headers=cookie,
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    listing = client.get("/admin/legal", headers=cookie)
    assert "P-1" in listing.text
    assert SUBJECT not in listing.text
    officer = bearer(client, "privacy_officer")
    request_id = client.get("/api/legal", headers=officer).json()["requests"][0]["id"]
    r = client.post(f"/admin/legal/{request_id}/hold",
                    data={"scope": "account", "reason": "keep", "csrf": csrf},
                    headers=cookie, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    hold_id = client.get("/api/legal", headers=officer).json()["requests"][0]["holds"][0]["id"]
    r = client.post(f"/admin/legal/holds/{hold_id}/release", data={"reason": "", "csrf": csrf},
                    headers=cookie)  # fmt: skip
    assert r.status_code == 422
    assert "reason" in r.text
    r = client.post(f"/admin/legal/holds/{hold_id}/release",
                    data={"reason": "done", "csrf": csrf}, headers=cookie,
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    assert "done" in client.get("/admin/legal", headers=cookie).text
    bad = client.post("/admin/legal", data={**form, "country": "ZZ", "csrf": csrf}, headers=cookie)
    assert bad.status_code == 422
    assert "country" in bad.text


def test_ids_too_large_for_the_database_are_4xx_not_5xx(client):
    officer = bearer(client, "privacy_officer")
    for path in ("/api/legal/9223372036854775808/holds", "/api/legal/2147483648/holds"):
        r = client.post(path, json={"reason": "x"}, headers=officer)
        assert r.status_code == 422, r.text
        assert "request_id" in r.text
    r = client.post("/api/legal/holds/9223372036854775808/release", json={"reason": "x"},
                    headers=officer)  # fmt: skip
    assert r.status_code == 422
    assert "hold_id" in r.text
    assert client.post("/api/legal/2147483647/holds", json={"reason": "x"},
                       headers=officer).status_code == 404  # fmt: skip


def test_contradictory_legal_requests_are_422_naming_the_field(client):
    officer = bearer(client, "privacy_officer")
    disclosed = {"authority": "A", "country": "DE", "reference": "R", "received": "2027-02-01",
                 "decision": "disclosed", "legal_basis": "law", "categories": ["account"],
                 "purpose": "legal_compliance"}  # fmt: skip
    r = client.post("/api/legal", json=disclosed, headers=officer)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("recipient: ")
    refused = {**disclosed, "decision": "refused", "purpose": None}
    r = client.post("/api/legal", json=refused, headers=officer)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("categories: ")
    assert client.get("/api/legal", headers=officer).json()["requests"] == []
    assert client.get("/api/disclosures", headers=officer).json()["disclosures"] == []


def test_a_bad_hold_scope_and_a_missing_country_are_422_naming_the_field(client):
    officer = bearer(client, "privacy_officer")
    request = {"authority": "A", "country": "DE", "reference": "R", "received": "2027-02-01",
               "decision": "pending", "legal_basis": "law", "subjects": [SUBJECT]}  # fmt: skip
    request_id = client.post("/api/legal", json=request, headers=officer).json()["id"]
    r = client.post(f"/api/legal/{request_id}/holds", json={"scope": "shoe_size", "reason": "x"},
                    headers=officer)  # fmt: skip
    assert r.status_code == 422
    assert r.json()["detail"].startswith("scope_undeclared: scope: shoe_size")
    body = {k: v for k, v in DISCLOSURE.items() if k != "country"}
    r = client.post("/api/disclosures", json=body, headers=bearer(client, "service"))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("country_required: country: ")
