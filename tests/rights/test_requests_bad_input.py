"""Bad input to the request portal and API: a clear 4xx problem naming the field, nothing
stored, nothing the requester sent echoed back; and a server without dataset annotations
says so instead of failing."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import SEED, TROTH_BIN
from rights.conftest import ALEX
from rights.lifecycle_support import Clock, Lifecycle, lifecycle
from troth.rights.delivery import Deliveries
from troth.store.engine import writing
from troth.store.tables_rights import rights_requests

EMAIL = "someone.secret@example.org"


@pytest.fixture
def life(db_url: str, tmp_path: Path) -> Iterator[Lifecycle]:
    with lifecycle(db_url, tmp_path) as made:
        yield made


def requests_stored(life: Lifecycle) -> int:
    with life.services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(rights_requests)).scalar_one())


REFUSALS = [
    (b"{not json", 400, "body: not valid JSON"),
    (b'["access"]', 400, "body: expected a JSON object"),
    (b'{"kind": "delete_everything", "email": "%s"}', 422, "kind: "),
    (b'{"email": "%s"}', 422, "kind: Field required"),
    (b'{"kind": "access", "email": "%s", "admin": true}', 422, "admin: "),
    (b'{"kind": "access", "email": "not an address %s"}', 422, "identities.email: "),
    (b'{"kind": "objection", "email": "%s", "scope": "../etc"}', 422, "scope: "),
    (b'{"kind": "rectification", "email": "%s"}', 422, "corrections: "),
    (b'{"kind": "access", "email": "%s", "corrections": {"x": "y"}}', 422, "corrections.x"),
    (
        b'{"kind": "rectification", "email": "%s",'
        b' "corrections": {"lumen.accounts.email": "new@example.org"}}',
        422,
        "corrections.lumen.accounts.email: not a declared field a request may correct",
    ),
    # a scope must be a purpose of the policy (or *)
    (b'{"kind": "objection", "email": "%s", "scope": "telepathy"}', 422, "scope: not a purpose"),
    (b'{"kind": "restriction", "email": "%s", "scope": "telepathy"}', 422, "scope: not a purp"),
    # secrets and records kept by law are not offered for correction, nor taken
    (
        b'{"kind": "rectification", "email": "%s",'
        b' "corrections": {"lumen.accounts.password_hash": "x"}}',
        422,
        "corrections.lumen.accounts.password_hash: not a declared field a request may correct",
    ),
    (
        b'{"kind": "rectification", "email": "%s",'
        b' "corrections": {"lumen.invoices.billing_address": "x"}}',
        422,
        "corrections.lumen.invoices.billing_address: not a declared field a request may",
    ),
    # the value must fit the column (devices.os is VARCHAR(40))
    (
        b'{"kind": "rectification", "email": "%s",'
        b' "corrections": {"lumen.devices.os": "' + b"x" * 41 + b'"}}',
        422,
        "corrections.lumen.devices.os: at most 40 characters",
    ),
]


def test_portal_json_refusals_name_the_field_and_store_nothing(life):
    for body, status, detail in REFUSALS:
        payload = body.replace(b"%s", EMAIL.encode())
        r = life.client.post(
            "/privacy/requests", content=payload, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith(detail), (body, r.json())
        assert EMAIL not in r.text
    assert requests_stored(life) == 0
    assert not life.outbox.exists() or not list(life.outbox.iterdir())


def test_oversized_bodies_and_broken_forms_are_refused(life):
    r = life.client.post(
        "/privacy/requests",
        content=b'{"kind": "access", "email": "' + b"a" * 20_000 + b'@example.org"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["detail"].startswith("body: at most")
    # the HTML form shows the problem on the page, without the address typed
    r = life.client.post("/privacy/requests", data={"kind": "erase_all", "email": EMAIL})
    assert r.status_code == 422
    assert "Your request was not sent." in r.text
    assert "kind: " in r.text
    assert EMAIL not in r.text
    # a form cut short, with no boundary, or of a kind that is no form: 400, not 422
    cut = (
        b'--XYZ\r\nContent-Disposition: form-data; name="kind"\r\n\r\naccess\r\n--XYZ\r\n'
        b'Content-Disposition: form-data; name="email"\r\n\r\n' + EMAIL.encode()
    )
    for content_type, body in (
        ("multipart/form-data; boundary=XYZ", cut),
        ("multipart/form-data", cut),
        ("multipart/form-data; boundary=XYZ", b"not multipart at all"),
        ("text/plain", b"kind=access&email=" + EMAIL.encode()),
    ):
        r = life.client.post(
            "/privacy/requests", content=body, headers={"Content-Type": content_type}
        )
        assert (r.status_code, r.json()["detail"]) == (400, "body: not a readable form"), (
            content_type,
            r.text,
        )
        assert EMAIL not in r.text
    assert requests_stored(life) == 0
    # the same form, whole, is taken
    r = life.client.post(
        "/privacy/requests",
        content=cut + b"\r\n--XYZ--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=XYZ"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert requests_stored(life) == 1


def test_unknown_requests_codes_and_links_are_4xx(life):
    client = life.client
    assert client.get("/privacy/requests/" + "0" * 32).status_code == 404
    assert client.get("/privacy/requests/not-an-id").status_code == 404
    r = client.post("/privacy/requests/" + "0" * 32 + "/verify", json={"code": "12345678"})
    assert (r.status_code, r.json()["detail"]) == (404, "request: no request with this id")
    submitted = client.post("/privacy/requests", json={"kind": "access", "email": EMAIL})
    assert submitted.status_code == 202
    status_url = submitted.json()["status_url"]
    r = client.post(
        f"{status_url}/verify", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["detail"]) == (400, "body: not valid JSON")
    r = client.post(f"{status_url}/verify", json={"code": "1" * 40})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("code: ")
    r = client.post(f"{status_url}/verify", json={"code": "abcdefgh"})
    assert (r.status_code, r.json()["detail"]) == (422, "code: wrong; 4 attempts left")

    for token in ("short", "A" * 43, "../../etc/passwd"):
        r = client.get(f"/privacy/requests/download/{token}")
        assert r.status_code == 404, token
    api = life.key("service")
    r = client.post("/api/rights/requests", data={"kind": "access"}, headers=api)
    assert (r.status_code, r.json()["detail"]) == (415, "body: send application/json")
    r = client.post(
        "/api/rights/requests",
        json={"kind": "access", "identities": {"passport": ["X1"]}},
        headers=api,
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("identities: unknown kind; use email, account_id")
    r = client.post(
        "/api/rights/requests",
        json={"kind": "portability", "identities": {"account_ref": [ALEX["ref"]]}},
        headers=api,
    )
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "identities.email: needed to send the download link of the package",
    )
    officer = life.key("privacy_officer")
    request_id = status_url.rsplit("/", 1)[1]
    r = client.post(f"/api/rights/requests/{request_id}/approve", headers=officer)
    assert (r.status_code, r.json()["title"]) == (409, "Cannot approve")
    r = client.post(
        f"/api/rights/requests/{request_id}/extend", json={"months": 3, "reason": "x"},
        headers=officer,
    )  # fmt: skip
    assert r.status_code == 422
    assert r.json()["detail"].startswith("months: ")
    r = client.get("/api/rights/requests?state=lost", headers=officer)
    assert r.status_code == 422
    assert requests_stored(life) == 1


def test_an_expired_link_is_refused_and_its_package_dropped(life):
    rights = life.rights()
    clock = Clock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))  # made two hours ago
    deliveries = Deliveries(life.services.engine, rights.desk.sealer, dt.timedelta(hours=1), clock)
    with writing(life.services.engine).begin() as conn:
        token = deliveries.create(conn, "a" * 32, "access.zip", b"PK package")
    r = life.client.get(f"/privacy/requests/download/{token}")
    assert (r.status_code, r.json()["title"]) == (410, "Link expired")
    r = life.client.get(f"/privacy/requests/download/{token}")
    assert (r.status_code, r.json()["title"]) == (410, "Link used")


def test_without_datasets_requests_are_taken_but_execution_says_what_is_missing(db_url, tmp_path):
    with lifecycle(db_url, tmp_path, datasets=False) as life:
        officer = life.key("privacy_officer")
        r = life.client.post(
            "/api/rights/requests",
            json={"kind": "access", "identities": {"email": [ALEX["email"]]}},
            headers=life.key("service"),
        )
        assert r.status_code == 201
        view = r.json()
        assert view["state"] == "approved"
        blocked = view["steps"][-1]
        assert blocked["step"] == "execution_blocked"
        assert blocked["note"].startswith("datasets: no datasets declared")
        r = life.client.post(f"/api/rights/requests/{view['id']}/execute", headers=officer)
        assert (r.status_code, r.json()["title"]) == (409, "No datasets declared")
        # restriction needs no annotations: it is recorded in troth's own vault
        r = life.client.post(
            "/api/rights/requests",
            json={"kind": "restriction", "identities": {"account_id": [ALEX["ref"]]}},
            headers=life.key("service"),
        )
        assert r.json()["state"] == "executing"
        assert life.work() == 1
        env = {
            "TROTH_DATABASE_URL": life.settings.database_url,
            "TROTH_KEYS_DIR": str(life.settings.keys_dir),
            "TROTH_AUDIT_HEADS": str(life.settings.audit_heads),
            "TROTH_OUTBOX": str(life.outbox),
            "PATH": "/usr/bin:/bin",
        }
        lone = tmp_path / "lone"
        lone.mkdir()
        (lone / "policy.yaml").write_bytes(SEED.read_bytes())  # no datasets.yaml beside it
        done = subprocess.run(
            [TROTH_BIN, "rights", "execute", view["id"], "--policy", str(lone / "policy.yaml")],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 1
        assert "datasets: no datasets declared" in done.stderr
        assert "Traceback" not in done.stderr


def test_submissions_are_limited_per_client_network(life):
    answers = [
        life.client.post("/privacy/requests", json={"kind": "access", "email": "x"})
        for _ in range(40)
    ]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["detail"].startswith("body: too many submissions")
    assert {r.status_code for r in answers} == {422, 429}


def test_a_scope_that_is_no_purpose_is_refused_by_api_and_cli(life, tmp_path):
    service = life.key("service")
    body = {"kind": "restriction", "identities": {"account_ref": [ALEX["ref"]]}}
    r = life.client.post(
        "/api/rights/requests", json={**body, "scope": "telepathy"}, headers=service
    )
    assert (r.status_code, r.json()["detail"]) == (422, "scope: not a purpose of the policy")
    assert requests_stored(life) == 0
    r = life.client.post(
        "/api/rights/requests", json={**body, "scope": "communicate"}, headers=service
    )
    assert r.status_code == 201, r.text

    env = {
        "TROTH_DATABASE_URL": life.settings.database_url,
        "TROTH_KEYS_DIR": str(life.settings.keys_dir),
        "TROTH_AUDIT_HEADS": str(life.settings.audit_heads),
        "TROTH_DATASETS": str(life.settings.datasets),
        "TROTH_OUTBOX": str(life.outbox),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [TROTH_BIN, "rights", "request", "objection", "--policy", str(SEED),
         "--identity", f"account_ref={ALEX['ref']}", "--verified", "phone call",
         "--scope", "telepathy"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "scope: not a purpose of the policy" in done.stderr
    assert "Traceback" not in done.stderr
    assert requests_stored(life) == 1
