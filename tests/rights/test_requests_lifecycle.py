"""A data subject request from the portal to the download, and from an authenticated
account to a proven erasure — over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import subprocess
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from conftest import SEED, TROTH_BIN
from rights.conftest import ALEX
from rights.lifecycle_support import Clock, Lifecycle, lifecycle, no_identity_in
from troth.consent.ledger import ConsentChange
from troth.errors import PurposeDenied, RequestError
from troth.rights.jobs import jobs_of
from troth.store.tables import audit_entries
from troth.store.tables_rights import rights_jobs
from troth.web.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def life(db_url: str, tmp_path: Path) -> Iterator[Lifecycle]:
    with lifecycle(db_url, tmp_path) as made:
        yield made


def test_portal_request_is_verified_by_code_run_by_a_worker_and_downloaded_once(life):
    client = life.client
    page = client.get("/privacy/requests")
    assert page.status_code == 200
    assert 'name="kind" value="portability"' in page.text

    typed = ALEX["email"].upper()  # kept as typed; the search also tries it in lower case
    r = client.post(
        "/privacy/requests",
        data={"kind": "access", "email": typed, "scope": "*"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    status_url = r.headers["location"]
    request_id = status_url.rsplit("/", 1)[1]
    assert ALEX["email"] not in status_url.lower()
    page = client.get(status_url)
    assert "Confirm it is you" in page.text
    assert ALEX["email"] not in page.text.lower()

    # a wrong code counts, says how many tries are left, and changes nothing else
    code = life.code(typed)
    wrong = "00000000" if code != "00000000" else "11111111"
    r = client.post(f"{status_url}/verify", json={"code": wrong})
    assert r.status_code == 422
    assert r.json()["detail"] == "code: wrong; 4 attempts left"
    assert client.get(status_url, headers={"Accept": "application/json"}).json()["state"] == (
        "submitted"
    )

    r = client.post(f"{status_url}/verify", data={"code": f"{code[:4]} {code[4:]}"},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    state = client.get(status_url, headers={"Accept": "application/json"}).json()
    assert state["state"] == "executing"  # access is approved automatically once verified

    # a worker of its own (another engine, as another process would have) runs the jobs:
    # discovery, then one job per declared datastore
    assert life.work() == 3
    state = client.get(status_url, headers={"Accept": "application/json"}).json()
    assert state["state"] == "completed"

    link = life.link(typed)
    r = client.get(link)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        names = set(archive.namelist())
        identities = json.loads(archive.read("identities.json"))
    assert "README.md" in names
    assert any(n.endswith("accounts.json") for n in names)
    assert any(n.endswith("accounts.csv") for n in names)
    assert sorted(identities["email"]) == sorted([typed, ALEX["email"]])

    again = client.get(link)
    assert again.status_code == 410
    assert again.json()["detail"].startswith("token: this link was used already")

    detail = life.client.get(
        f"/api/rights/requests/{request_id}", headers=life.key("privacy_officer")
    ).json()
    steps = [s["step"] for s in detail["steps"]]
    assert steps == [
        "submitted", "code_sent", "code_refused", "verified", "approved", "executing",
        "discovered", "access_done", "access_done", "completed", "downloaded",
    ]  # fmt: skip

    # every step is in the audit log, under a keyed hash: the e-mail is nowhere in clear
    with life.services.engine.connect() as conn:
        actions = [r.action for r in conn.execute(select(audit_entries.c.action))]
    assert {f"rights.{s}" for s in steps} <= set(actions)
    no_identity_in(life.dump(), ALEX["email"], typed, ALEX["ref"], ALEX["phone"])
    assert life.services.audit.verify(life.services.engine).ok


def test_an_account_erasure_waits_for_an_officer_keeps_what_a_hold_covers_and_is_proven(
    life, tmp_path
):
    service, officer = life.key("service"), life.key("privacy_officer")
    life.services.vault.limit(
        ALEX["ref"], "legal_hold", "billing", "Tax audit 2026 (case 17)", actor="test"
    )
    body = {
        "kind": "erasure",
        "identities": {"account_ref": [ALEX["ref"]], "email": [ALEX["email"]]},
    }
    r = life.client.post("/api/rights/requests", json=body, headers=service)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "verified"
    assert created["verified_by"].startswith("account (api_key:")
    request_id = created["id"]
    assert life.work() == 0  # erasure is not approved automatically

    # a support agent may look but not decide
    agent = life.key("support_agent")
    assert life.client.get(f"/api/rights/requests/{request_id}", headers=agent).status_code == 200
    r = life.client.post(f"/api/rights/requests/{request_id}/approve", headers=agent)
    assert r.status_code == 403

    r = life.client.post(f"/api/rights/requests/{request_id}/approve", headers=officer)
    assert r.status_code == 200
    assert r.json()["state"] == "executing"
    assert life.work() == 3

    done = life.client.get(f"/api/rights/requests/{request_id}", headers=officer).json()
    assert done["state"] == "completed"
    assert done["result"]["holds"] == [{"scope": "billing", "reason": "Tax audit 2026 (case 17)"}]
    assert "kept under legal hold: Tax audit 2026 (case 17)" in done["steps"][-1]["note"]
    erased = {
        s["note"].split(":")[0]: s["note"] for s in done["steps"] if s["step"] == "erase_done"
    }
    assert set(erased) == {"lumen", "troth"}
    # deleted: 4 usage records, 2 threat events, the prospect, the device without billing;
    # nulled: e-mail of the invoice and of the ticket; masked: the ticket; kept: the billing
    # rows under the hold and the account and device they hang on
    assert erased["lumen"].startswith("lumen: 8 deleted, 2 nulled, 1 masked, 4 kept")
    assert "(kept: legal hold: Tax audit 2026 (case 17)" in erased["lumen"]
    status = life.client.get(f"/privacy/requests/{request_id}")
    assert "Tax audit 2026 (case 17)" in status.text

    # Lumen: threat events and prospects are gone; billing rows (and the rows they hang
    # on) are kept while the hold lasts
    assert (
        life.lumen("SELECT device_uid FROM threat_events WHERE device_uid LIKE 'dev-alex%'") == []
    )
    assert life.lumen("SELECT email FROM prospects WHERE email = :e", e=ALEX["email"]) == []
    assert life.lumen("SELECT id FROM subscriptions WHERE account_id = 1") != []

    # proof over the API (officers), and from another process (below)
    r = life.client.post(f"/api/rights/requests/{request_id}/verify-erasure", headers=officer)
    assert r.status_code == 200
    proof = r.json()
    assert proof["proven"] is True
    assert proof["kept"]["lumen.subscriptions"] == 1
    assert proof["reasons"]["lumen.subscriptions"] == ["legal hold: Tax audit 2026 (case 17)"]
    r = life.client.post(f"/api/rights/requests/{request_id}/verify-erasure", headers=agent)
    assert r.status_code == 403
    page = life.client.post(f"/admin/requests/{request_id}/verify-erasure", headers=officer)
    assert page.status_code == 200
    assert '<span class="ok">Proven</span>: no row remains' in page.text

    # proof, from another process: no row remains that erasure should have changed; the
    # rows kept are listed apart with their reasons
    env = {
        "TROTH_DATABASE_URL": life.settings.database_url,
        "TROTH_KEYS_DIR": str(life.settings.keys_dir),
        "TROTH_AUDIT_HEADS": str(life.settings.audit_heads),
        "TROTH_DATASETS": str(life.settings.datasets),
        "TROTH_OUTBOX": str(life.outbox),
        "PATH": "/usr/bin:/bin",
    }
    proof = subprocess.run(
        [TROTH_BIN, "rights", "verify-erasure", request_id, "--policy", str(SEED)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proof.returncode == 0, proof.stdout + proof.stderr
    assert "erasure proven" in proof.stdout
    assert "kept: legal hold: Tax audit 2026 (case 17)" in proof.stdout
    no_identity_in(proof.stdout + proof.stderr, ALEX["email"], ALEX["ref"])

    # rows put back behind troth's back are found: exit 1
    life.lumen(
        "INSERT INTO prospects (id, email, name, source, created_at) "
        "VALUES (9001, :e, 'Alex', 'fair', '2026-11-01')",
        e=ALEX["email"],
    )
    again = subprocess.run(
        [TROTH_BIN, "rights", "verify-erasure", request_id, "--policy", str(SEED)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert again.returncode == 1
    assert "NOT ERASED: 1 row(s) remain" in again.stdout

    # once the identities are dropped (retention), there is no one left to search for:
    # said, rather than a proof that searched nothing
    later = life.rights(Clock(dt.datetime.now(dt.UTC) + dt.timedelta(days=91)))
    assert later.desk.forget(dt.timedelta(days=90)) == 1
    r = life.client.post(f"/api/rights/requests/{request_id}/verify-erasure", headers=officer)
    assert (r.status_code, r.json()["title"]) == (409, "Identities dropped")


def test_restriction_and_objection_are_read_by_vault_and_consent_decisions(life):
    vault, ledger = life.services.vault, life.services.ledger
    subject = ALEX["ref"]
    vault.put(subject, "contact", "+49 30 1", purpose="provide_service")
    ledger.record(
        ConsentChange(
            subject, {"email_marketing": "given"}, "api", "en", life.services.policy.version
        )
    )
    service = life.key("service")

    r = life.client.post(
        "/api/rights/requests",
        json={
            "kind": "objection",
            "identities": {"account_ref": [subject]},
            "scope": "communicate",
        },
        headers=service,
    )
    assert r.status_code == 201, r.text
    r = life.client.post(
        "/api/rights/requests",
        json={"kind": "restriction", "identities": {"account_ref": [subject]}},
        headers=service,
    )
    assert r.status_code == 201
    life.work()

    with pytest.raises(PurposeDenied) as denied:
        vault.get(subject, ["contact"], purpose="provide_service")
    assert denied.value.rule == "restriction"
    assert not ledger.effective(subject).allowed("email_marketing")
    officer = life.key("privacy_officer")
    listed = life.client.get("/api/rights/requests?state=completed", headers=officer).json()
    kinds = {r["kind"]: r["result"]["jobs"]["limit:troth"] for r in listed["requests"]}
    assert kinds["objection"]["consent_withdrawn"] == ["email_marketing"]
    assert kinds["restriction"]["subjects"] == 1


def test_the_portal_offers_the_declared_fields_for_a_correction(life):
    page = life.client.get("/privacy/requests").text
    assert '<option value="lumen.accounts.name">' in page
    assert 'value="lumen.accounts.email"' not in page  # an identity: finds the person
    assert 'value="lumen.usage_records.device_id"' not in page  # a reference
    assert 'value="lumen.accounts.password_hash"' not in page  # a secret: not opened
    assert 'value="lumen.invoices.billing_address"' not in page  # kept by tax law
    assert 'value="lumen.invoices.customer_name"' not in page
    r = life.client.post(
        "/privacy/requests",
        data={"kind": "rectification", "email": ALEX["email"], "target": "lumen.accounts.name",
              "value": "Alex Beispiel"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    status_url = r.headers["location"]
    code = life.code(ALEX["email"])
    r = life.client.post(f"{status_url}/verify", json={"code": code})
    assert r.json()["state"] == "verified"  # corrections wait for an officer
    assert "Alex Beispiel" not in life.dump()  # the new value is sealed too


def test_the_portal_pages_and_mails_speak_the_requesters_language(life):
    page = life.client.get("/privacy/requests", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert page.headers["content-language"] == "de"
    assert "<h1>Ihre Datenschutzrechte</h1>" in page.text
    assert '<input type="hidden" name="language" value="de">' in page.text
    assert "Your privacy rights" in life.client.get("/privacy/requests?lang=en").text
    r = life.client.post(
        "/privacy/requests",
        data={"kind": "erasure", "email": ALEX["email"], "language": "de"},
        follow_redirects=False,
    )
    status_url = r.headers["location"]
    status = life.client.get(status_url)
    assert "<h1>Ihr Löschantrag</h1>" in status.text
    assert "wartet auf Ihren Code" in status.text
    mail = life.last_mail(ALEX["email"])
    assert "Ihr Code: " in mail
    assert "(Löschantrag)" in mail
    # a wrong code is said on the page, in the page's language, with the field named
    r = life.client.post(f"{status_url}/verify", data={"code": "x"})
    assert r.status_code == 422
    assert "code: wrong; 4 attempts left" in r.text
    assert "Bestätigen Sie, dass Sie es sind" in r.text


def test_the_data_key_is_shredded_only_after_the_service_database_was_erased(life):
    vault = life.services.vault
    vault.put(ALEX["ref"], "contact", "+49 30 1", purpose="provide_service")
    # a table the annotations do not know refers to Alex's account: Lumen refuses the delete
    life.lumen(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, "
        "account_id INTEGER NOT NULL REFERENCES accounts (id))"
    )
    life.lumen("INSERT INTO notes (id, account_id) VALUES (1, 1)")
    officer = life.key("privacy_officer")
    body = {
        "kind": "erasure",
        "identities": {"account_ref": [ALEX["ref"]], "email": [ALEX["email"]]},
    }
    r = life.client.post("/api/rights/requests", json=body, headers=life.key("service"))
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    assert life.client.post(
        f"/api/rights/requests/{request_id}/approve", headers=officer
    ).is_success

    assert life.work() == 2  # discovery, then Lumen's erasure, which fails
    with life.services.engine.connect() as conn:
        jobs = {(j.operation, j.datastore): j.state for j in jobs_of(conn, request_id)}
    assert set(jobs) == {("discover", "*"), ("erase", "lumen")}  # troth's store waits
    assert jobs[("erase", "lumen")] != "done"
    # the data key is still there: the request can still be carried out in full
    assert vault.get(ALEX["ref"], ["contact"], purpose="provide_service")["contact"] == "+49 30 1"

    # the officer removes what blocked it; at the job's next try everything is erased
    life.lumen("DELETE FROM notes")
    with life.services.engine.begin() as conn:
        conn.execute(update(rights_jobs).values(run_after=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
    assert life.work() == 2  # Lumen's erasure, then troth's store
    done = life.client.get(f"/api/rights/requests/{request_id}", headers=officer).json()
    assert done["state"] == "completed"
    assert life.lumen("SELECT id FROM accounts WHERE id = 1") == []
    assert vault.get(ALEX["ref"], ["contact"], purpose="provide_service") == {"contact": None}


def test_an_unreachable_datastore_makes_the_proof_a_503_not_a_crash(life, tmp_path):
    officer = life.key("privacy_officer")
    body = {"kind": "erasure", "identities": {"email": [ALEX["email"]]}}
    r = life.client.post("/api/rights/requests", json=body, headers=life.key("service"))
    request_id = r.json()["id"]
    assert life.client.post(
        f"/api/rights/requests/{request_id}/approve", headers=officer
    ).is_success
    life.work()

    # the same annotations, Lumen now on a port where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    data = yaml.safe_load(life.settings.datasets.read_text())
    data["datastores"][0].update(
        kind="postgresql", url=f"postgresql+psycopg://lumen@127.0.0.1:{closed}/lumen"
    )
    gone = tmp_path / "gone.yaml"
    gone.write_text(yaml.safe_dump(data))
    settings = life.settings.model_copy(update={"datasets": gone})
    with TestClient(create_app(life.services.policy, settings)) as client:
        r = client.post(f"/api/rights/requests/{request_id}/verify-erasure", headers=officer)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith("datastore: datastore 'lumen'")
        page = client.post(f"/admin/requests/{request_id}/verify-erasure", headers=officer)
        assert page.status_code == 503
        assert "the erasure could not be checked" in page.text

    env = {
        "TROTH_DATABASE_URL": life.settings.database_url,
        "TROTH_KEYS_DIR": str(life.settings.keys_dir),
        "TROTH_AUDIT_HEADS": str(life.settings.audit_heads),
        "TROTH_DATASETS": str(gone),
        "TROTH_OUTBOX": str(life.outbox),
        "PATH": "/usr/bin:/bin",
    }
    proof = subprocess.run(
        [TROTH_BIN, "rights", "verify-erasure", request_id, "--policy", str(SEED)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert proof.returncode == 2, proof.stdout + proof.stderr
    assert "datastore 'lumen'" in proof.stderr
    assert "Traceback" not in proof.stderr


def test_identities_that_lead_to_different_people_wait_for_an_officer(life):
    service, officer = life.key("service"), life.key("privacy_officer")

    def submit(identities: dict[str, list[str]]) -> dict[str, Any]:
        r = life.client.post(
            "/api/rights/requests",
            json={"kind": "access", "identities": identities},
            headers=service,
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    # Alex's e-mail with another account's ref: not approved automatically
    mixed = submit({"email": [ALEX["email"]], "account_ref": ["acct:0000000000000002"]})
    assert mixed["state"] == "verified"
    assert mixed["steps"][-1]["step"] == "approval_needed"
    assert life.work() == 0
    # Alex's e-mail with Alex's own ref (the address typed in capitals): approved as usual
    same = submit({"email": [ALEX["email"].upper()], "account_ref": [ALEX["ref"]]})
    assert same["state"] == "executing"
    # an officer can still approve the first after checking
    r = life.client.post(f"/api/rights/requests/{mixed['id']}/approve", headers=officer)
    assert r.json()["state"] == "executing"


def test_a_package_is_taken_once_through_the_rights_capability_without_the_web(life):
    r = life.client.post(
        "/api/rights/requests",
        json={"kind": "access", "identities": {"email": [ALEX["email"]]}},
        headers=life.key("service"),
    )
    request_id = r.json()["id"]
    life.work()
    token = life.link(ALEX["email"]).rsplit("/", 1)[1]

    rights = life.rights()  # what a worker or CLI process holds: no web layer involved
    found = rights.download(token)
    assert found.request_id == request_id
    assert zipfile.ZipFile(io.BytesIO(found.data)).namelist()
    assert rights.desk.get(request_id).steps[-1].step == "downloaded"
    with pytest.raises(RequestError) as used:
        rights.download(token)
    assert used.value.status == 410
    assert life.services.audit.verify(life.services.engine).ok
