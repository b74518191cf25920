"""The vault and audit APIs over HTTP: roles, purposes, and no personal data in URLs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SEED, TROTH_BIN, Server, running_server


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    work = tmp_path_factory.mktemp("vault-api")
    url = f"sqlite:///{work / 'troth.db'}"
    env = {
        **os.environ,
        "TROTH_KEYS_DIR": str(work / "keys"),
        "TROTH_AUDIT_HEADS": str(work / "heads.jsonl"),
    }
    with running_server(
        SEED, url, work, env={"TROTH_AUDIT_HEADS": env["TROTH_AUDIT_HEADS"]}
    ) as server:
        keys = {}
        for role in ("service", "auditor", "privacy_officer"):
            out = subprocess.run(
                [TROTH_BIN, "keys", "create", "--role", role, "--label", f"test {role}",
                 "--database-url", url],
                capture_output=True, text=True, env=env, cwd=work, check=True, timeout=60,
            )  # fmt: skip
            keys[role] = out.stdout.strip()
        yield server, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_service_can_store_and_read_for_a_declared_purpose(site):
    server, keys = site
    body = {
        "subject": "acct:1000000000000001",
        "category": "account",
        "value": "Alex",
        "purpose": "provide_service",
    }
    r = httpx.post(f"{server.url}/api/vault/put", json=body, headers=auth(keys["service"]))
    assert r.status_code == 204, r.text
    r = httpx.post(
        f"{server.url}/api/vault/get",
        json={"subject": body["subject"], "categories": ["account"], "purpose": "provide_service"},
        headers=auth(keys["service"]),
    )
    assert r.status_code == 200
    assert r.json() == {"values": {"account": "Alex"}}
    assert r.headers["cache-control"] == "no-store"


def test_undeclared_purpose_is_403_naming_the_rule(site):
    server, keys = site
    r = httpx.post(
        f"{server.url}/api/vault/get",
        json={
            "subject": "acct:1000000000000001",
            "categories": ["account"],
            "purpose": "advertising",
        },
        headers=auth(keys["service"]),
    )
    assert r.status_code == 403
    assert r.json()["detail"].startswith("policy:")


def test_consent_purpose_is_denied_without_consent(site):
    server, keys = site
    r = httpx.post(
        f"{server.url}/api/vault/put",
        json={
            "subject": "visitor-00000000000002",
            "category": "usage",
            "value": "/plans",
            "purpose": "analytics",
            "activity": "usage_analytics",
        },
        headers=auth(keys["service"]),
    )
    assert r.status_code == 403
    assert r.json()["detail"].startswith("consent:")


def test_roles_are_enforced(site):
    server, keys = site
    body = {
        "subject": "acct:1000000000000001",
        "categories": ["account"],
        "purpose": "provide_service",
    }
    assert httpx.post(f"{server.url}/api/vault/get", json=body).status_code == 401
    assert (
        httpx.post(
            f"{server.url}/api/vault/get", json=body, headers=auth(keys["auditor"])
        ).status_code
        == 403
    )
    forged = keys["service"][:-4] + "AAAA"
    assert (
        httpx.post(f"{server.url}/api/vault/get", json=body, headers=auth(forged)).status_code
        == 401
    )


def test_objection_recorded_by_the_privacy_officer_binds_the_service(site):
    server, keys = site
    subject = "acct:1000000000000003"
    put = {
        "subject": subject,
        "category": "feedback",
        "value": "more servers",
        "purpose": "develop_services",
    }
    assert (
        httpx.post(
            f"{server.url}/api/vault/put", json=put, headers=auth(keys["service"])
        ).status_code
        == 204
    )
    limit = {
        "subject": subject,
        "kind": "objection",
        "scope": "develop_services",
        "reason": "by e-mail",
    }
    r = httpx.post(
        f"{server.url}/api/vault/limits", json=limit, headers=auth(keys["privacy_officer"])
    )
    assert r.status_code == 201
    get = {"subject": subject, "categories": ["feedback"], "purpose": "develop_services"}
    r = httpx.post(f"{server.url}/api/vault/get", json=get, headers=auth(keys["service"]))
    assert r.status_code == 403
    assert r.json()["detail"].startswith("objection:")


def test_auditor_verifies_and_proves(site):
    server, keys = site
    r = httpx.get(f"{server.url}/api/audit/verify", headers=auth(keys["auditor"]))
    assert r.status_code == 200
    report = r.json()
    assert report["ok"] is True
    assert report["size"] >= 3
    r = httpx.get(f"{server.url}/api/audit/proof/0", headers=auth(keys["auditor"]))
    assert r.status_code == 200
    assert r.json()["index"] == 0
    assert (
        httpx.get(f"{server.url}/api/audit/verify", headers=auth(keys["service"])).status_code
        == 403
    )


def test_bad_bodies_are_4xx(site):
    server, keys = site
    for body in (
        {"subject": "short", "category": "account", "value": "x", "purpose": "provide_service"},
        {
            "subject": "acct:1000000000000001",
            "category": "Account!",
            "value": "x",
            "purpose": "provide_service",
        },
        {
            "subject": "acct:1000000000000001",
            "category": "account",
            "value": "x" * 9000,
            "purpose": "provide_service",
        },
        {
            "subject": "acct:1000000000000001",
            "category": "account",
            "value": "x",
            "purpose": "provide_service",
            "extra": 1,
        },
    ):
        r = httpx.post(f"{server.url}/api/vault/put", json=body, headers=auth(keys["service"]))
        assert 400 <= r.status_code < 500, (body, r.status_code)


def test_server_log_holds_no_personal_data(site):
    server, _keys = site
    log = Path(server.log).read_text(errors="replace")
    assert "acct:1000000000000001" not in log
    assert "Alex" not in log
