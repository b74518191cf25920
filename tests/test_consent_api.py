"""The consent API of a real `troth serve` over HTTP, on SQLite and on PostgreSQL.

Every storage test runs once per engine: those that need an empty database or their own
settings take ``db_url``; the rest share one server per engine (the ``api`` fixture) and use
fresh visitor ids. What is checked is what a site and its visitors rely on: a choice is
recorded and acknowledged with a receipt anyone can verify, effective consent follows the
jurisdiction's rules, Global Privacy Control is honoured where the law says so, bad input is
refused with a problem document and changes nothing, and no visitor id is ever stored or
logged in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text

from conftest import (
    SEED,
    TROTH_BIN,
    Server,
    free_port,
    new_postgres_database,
    running_server,
)
from troth.consent.receipts import verify_receipt
from troth.errors import ReceiptError

TABLES = ("consent_events", "consent_current", "policy_versions")
OPTIONAL = ("preferences", "analytics", "advertising", "email_marketing")
REQUIRED = ("necessary", "security")
PROBLEM = "application/problem+json"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
NO_RATE_LIMIT = {"TROTH_WRITE_RATE_PER_MINUTE": "1000000"}


def visitor() -> str:
    return secrets.token_urlsafe(16)


def connect(db_url: str) -> Engine:
    """An engine on troth's database, bypassing troth; it never waits long to connect."""
    timeout = {"connect_timeout": 10} if db_url.startswith("postgresql") else {"timeout": 10}
    return create_engine(db_url, connect_args=timeout)


def counts(db_url: str) -> dict[str, int]:
    """Rows per table, read directly from the database, not through troth."""
    engine = connect(db_url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


@dataclass
class Api:
    server: Server
    client: httpx.Client
    db_url: str
    subjects: set[str] = field(default_factory=set)  # every visitor id sent to the server

    def consent(self, body: Any, **headers: str) -> httpx.Response:
        if isinstance(body, dict) and isinstance(body.get("subject"), str):
            self.subjects.add(body["subject"])
        return self.client.post("/api/consent", json=body, headers=headers)

    def record(self, subject: str, choices: dict[str, str], **extra: Any) -> dict[str, Any]:
        headers = extra.pop("headers", {})
        r = self.consent({"subject": subject, "choices": choices, **extra}, **headers)
        assert r.status_code == 201, r.text
        receipt: dict[str, Any] = r.json()["receipt"]
        return receipt

    def effective(self, subject: str, **params: str) -> dict[str, Any]:
        self.subjects.add(subject)
        r = self.client.get(f"/api/consent/{subject}", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@contextlib.contextmanager
def api_server(
    db_url: str, workdir: Path, env: dict[str, str] | None = None, policy: Path = SEED
) -> Iterator[Api]:
    with (
        running_server(policy, db_url, workdir, env=env) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
    ):
        yield Api(server, client, db_url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server per engine, shared by the tests that need nothing but fresh subjects.

    The same two engines as ``db_url``, but module-scoped: starting a server is the slow
    part. Tests that need an empty database or their own settings take ``db_url``.
    """
    work = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{work / 'troth.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_server"))
    with api_server(url, work / "work") as api:
        yield api


def assert_problem(r: httpx.Response, status: int | set[int], *fields: str) -> None:
    wanted = {status} if isinstance(status, int) else status
    assert r.status_code in wanted, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["status"] == r.status_code
    assert body["title"]
    for word in fields:
        assert word in body["detail"], (word, body["detail"])


def troth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TROTH_BIN, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def one_clear_line(stream: str) -> None:
    assert "Traceback" not in stream, stream
    assert len(stream.strip().splitlines()) == 1, stream


# --- receipts -----------------------------------------------------------------------------


def test_recorded_choice_gets_a_receipt_anyone_can_verify(api: Api, tmp_path: Path) -> None:
    subject = visitor()
    choices = {"analytics": "given", "advertising": "refused"}
    r = api.consent(
        {"subject": subject, "choices": choices, "method": "banner_custom", "language": "de"}
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    receipt = r.json()["receipt"]

    pem = api.client.get("/.well-known/troth-receipt-key.pem")
    assert pem.status_code == 200
    key = load_pem_public_key(pem.content)
    assert isinstance(key, Ed25519PublicKey)
    payload = verify_receipt(receipt, key)
    assert payload["key_id"] == pem.headers["x-key-id"]
    assert payload["choices"] == choices
    assert payload["method"] == "banner_custom"
    assert payload["language"] == "de"
    assert payload["policy_version"] == "1.1.0"
    assert payload["jurisdiction"] == "eu"
    assert payload["controller"] == "Lumen Networks GmbH"
    # The receipt names the person only by the ledger's keyed hash, never by the visitor id.
    assert re.fullmatch(r"[0-9a-f]{64}", payload["subject"])
    assert subject not in json.dumps(receipt)

    tampered = [
        {**receipt, "choices": {**choices, "advertising": "given"}},
        {**receipt, "choices": {"analytics": "given"}},
        {**receipt, "timestamp": "2020-01-01T00:00:00.000000Z"},
        {**receipt, "receipt_id": "00000000-0000-4000-8000-000000000000"},
        {**receipt, "subject": "0" * 64},
        {**receipt, "gpc": True},
        {**receipt, "policy_version": "0.9.0"},
        {**receipt, "extra": "field"},
        {k: v for k, v in receipt.items() if k != "signature"},
        {**receipt, "signature": receipt["signature"][::-1]},
    ]
    for bad in tampered:
        with pytest.raises(ReceiptError):
            verify_receipt(bad, key)

    # The person can download the receipt later, as a file.
    download = api.client.get(f"/api/consent/{subject}/receipts/{receipt['receipt_id']}")
    assert download.status_code == 200
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment")
    assert f"consent-receipt-{receipt['receipt_id']}.json" in disposition
    assert download.json() == receipt
    # ... but nobody else can fetch it by its id, and unknown ids are a 404.
    other = api.client.get(f"/api/consent/{visitor()}/receipts/{receipt['receipt_id']}")
    assert_problem(other, 404, "receipt_id")
    unknown = api.client.get(f"/api/consent/{subject}/receipts/{'0' * 8}-0000-4000-8000-{'0' * 12}")
    assert_problem(unknown, 404, "receipt_id")

    # troth consent verify-receipt: 0 valid, 1 altered, 2 not a receipt at all.
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem.content)
    good_file = tmp_path / "receipt.json"
    good_file.write_bytes(download.content)
    bad_file = tmp_path / "tampered.json"
    bad_file.write_text(json.dumps({**download.json(), "choices": {"analytics": "refused"}}))
    junk_file = tmp_path / "junk.json"
    junk_file.write_text("this is not JSON {")

    ok = troth("consent", "verify-receipt", str(good_file), "--public-key", str(key_file))
    assert ok.returncode == 0, ok.stderr
    assert receipt["receipt_id"] in ok.stdout
    altered = troth("consent", "verify-receipt", str(bad_file), "--public-key", str(key_file))
    assert altered.returncode == 1, (altered.stdout, altered.stderr)
    assert "INVALID" in altered.stderr
    one_clear_line(altered.stderr)
    junk = troth("consent", "verify-receipt", str(junk_file), "--public-key", str(key_file))
    assert junk.returncode == 2, (junk.stdout, junk.stderr)
    assert "not valid JSON" in junk.stderr
    one_clear_line(junk.stderr)


def test_verify_receipt_without_public_key_uses_the_keys_dir_and_never_makes_a_key(
    api: Api, tmp_path: Path
) -> None:
    subject = visitor()
    receipt = api.record(subject, {"preferences": "given"})
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(receipt))

    # On the server's host, the default key is the server's own.
    keys = api.server.log.parent / "keys"
    assert keys.is_dir()
    ok = troth(
        "consent", "verify-receipt", str(receipt_file),
        env={**os.environ, "TROTH_KEYS_DIR": str(keys)},
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr

    # Elsewhere there is no key to check against: that is "cannot check" (2), not "the
    # receipt was altered" (1); and verifying must never create a new signing key.
    empty = tmp_path / "no-keys-here"
    missing = troth(
        "consent", "verify-receipt", str(receipt_file),
        env={**os.environ, "TROTH_KEYS_DIR": str(empty)},
    )  # fmt: skip
    created = sorted(p.name for p in empty.iterdir()) if empty.exists() else []
    assert (missing.returncode, created) == (2, []), missing.stderr
    one_clear_line(missing.stderr)


# --- effective consent and history --------------------------------------------------------


def test_effective_consent_follows_the_jurisdiction_and_history(api: Api) -> None:
    subject = visitor()
    fresh = api.effective(subject)
    assert fresh["policy_version"] == "1.1.0"
    assert fresh["jurisdiction"] == "eu"
    categories = fresh["categories"]
    assert set(categories) == {*REQUIRED, *OPTIONAL}
    for c in REQUIRED:
        assert categories[c]["status"] == "given"
        assert categories[c]["allowed"] is True
        assert categories[c]["required"] is True
    for c in OPTIONAL:  # opt-in: nothing runs before the person decides
        assert categories[c]["status"] == "undecided"
        assert categories[c]["allowed"] is False

    us = api.effective(subject, jurisdiction="us_ca")
    assert us["jurisdiction"] == "us_ca"
    for c in OPTIONAL:  # opt-out: allowed until refused
        assert us["categories"][c]["status"] == "undecided"
        assert us["categories"][c]["allowed"] is True

    first = api.record(subject, {"analytics": "given", "preferences": "given"})
    second = api.record(subject, {"analytics": "refused"})
    third = api.record(subject, {"advertising": "refused"})
    assert second["choices"] == {"analytics": "withdrawn"}
    assert third["choices"] == {"advertising": "refused"}  # never given: refused, not withdrawn

    now = api.effective(subject)["categories"]
    assert now["analytics"]["status"] == "withdrawn"
    assert now["analytics"]["allowed"] is False
    assert now["analytics"]["since"] == second["timestamp"]
    assert now["preferences"]["status"] == "given"
    assert now["preferences"]["allowed"] is True
    assert now["preferences"]["policy_version"] == "1.1.0"
    assert now["preferences"]["since"] == first["timestamp"]
    assert now["advertising"]["status"] == "refused"
    assert now["advertising"]["allowed"] is False
    assert now["email_marketing"]["status"] == "undecided"
    # A refusal binds under opt-out rules too.
    us_now = api.effective(subject, jurisdiction="us_ca")["categories"]
    assert us_now["advertising"]["allowed"] is False
    assert us_now["analytics"]["allowed"] is False
    assert us_now["email_marketing"]["allowed"] is True

    r = api.client.get(f"/api/consent/{subject}/history")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    events = r.json()["events"]
    assert [e["receipt_id"] for e in events] == [
        first["receipt_id"],
        second["receipt_id"],
        third["receipt_id"],
    ]
    assert [e["timestamp"] for e in events] == [
        first["timestamp"],
        second["timestamp"],
        third["timestamp"],
    ]
    assert [e["choices"] for e in events] == [
        {"analytics": "given", "preferences": "given"},
        {"analytics": "withdrawn"},
        {"advertising": "refused"},
    ]
    assert api.client.get(f"/api/consent/{visitor()}/history").json() == {"events": []}

    assert_problem(
        api.client.get(f"/api/consent/{subject}", params={"jurisdiction": "mars"}),
        422,
        "jurisdiction",
    )
    assert_problem(api.client.get("/api/consent/too-short"), 422, "subject")
    assert_problem(api.client.get(f"/api/consent/{'a' * 129}"), 422, "subject")


# --- Global Privacy Control ---------------------------------------------------------------


def raw_post(url: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """POST over a bare socket: httpx refuses to send some header values a client may send."""
    parts = urlsplit(url)
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        f"Host: {parts.netloc}".encode(),
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
        b"Connection: close",
        *(name + b": " + value for name, value in headers),
    ]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201"), data
    return payload


def test_gpc_refuses_advertising_where_the_law_says_so(api: Api) -> None:
    ad_given = {"advertising": "given", "analytics": "given"}

    s1 = visitor()
    receipt = api.record(s1, ad_given, jurisdiction="us_ca", headers={"Sec-GPC": "1"})
    assert receipt["gpc"] is True
    assert receipt["choices"] == {"advertising": "refused", "analytics": "given"}
    state = api.effective(s1, jurisdiction="us_ca")["categories"]
    assert state["advertising"]["status"] == "refused"
    assert state["advertising"]["allowed"] is False
    assert state["analytics"]["allowed"] is True

    # The signal refuses advertising even when the request does not mention it.
    s2 = visitor()
    receipt = api.record(s2, {"analytics": "given"}, jurisdiction="us_ca", headers={"Sec-GPC": "1"})
    assert receipt["choices"] == {"advertising": "refused", "analytics": "given"}

    # The API's own field carries the signal for a site that relays it.
    s3 = visitor()
    receipt = api.record(s3, ad_given, jurisdiction="us_ca", gpc=True)
    assert receipt["choices"]["advertising"] == "refused"

    # Only the exact value "1" is the signal.
    for value in ("true", "0", "yes", "1.0", "01", "11", "on"):
        s = visitor()
        receipt = api.record(s, ad_given, jurisdiction="us_ca", headers={"Sec-GPC": value})
        assert receipt["choices"] == ad_given, value
        assert receipt["gpc"] is False, value
        assert api.effective(s, jurisdiction="us_ca")["categories"]["advertising"]["allowed"]

    # Whitespace around a header value is not part of it (RFC 9110 §5.5): "1 " on the wire
    # is "1". (httpx will not even send it, so this goes over a bare socket.)
    for padded in (b"1 ", b" 1", b"1\t"):
        s = visitor()
        api.subjects.add(s)
        body = json.dumps({"subject": s, "choices": ad_given, "jurisdiction": "us_ca"}).encode()
        answer = json.loads(raw_post(api.server.url, "/api/consent", [(b"Sec-GPC", padded)], body))
        assert answer["receipt"]["choices"]["advertising"] == "refused", padded

    # Under the EU's rules GPC changes nothing: consent given is consent given.
    s4 = visitor()
    receipt = api.record(s4, ad_given, jurisdiction="eu", headers={"Sec-GPC": "1"})
    assert receipt["choices"] == ad_given
    state = api.effective(s4, jurisdiction="eu")["categories"]
    assert state["advertising"]["status"] == "given"
    assert state["advertising"]["allowed"] is True

    # A browser sending GPC when reading consent is honoured too, under us_ca only.
    s5 = visitor()
    api.record(s5, ad_given, jurisdiction="us_ca")
    read = api.client.get(
        f"/api/consent/{s5}", params={"jurisdiction": "us_ca"}, headers={"Sec-GPC": "1"}
    )
    assert read.json()["categories"]["advertising"]["allowed"] is False
    read = api.client.get(
        f"/api/consent/{s5}", params={"jurisdiction": "eu"}, headers={"Sec-GPC": "1"}
    )
    assert read.json()["categories"]["advertising"]["allowed"] is True


# --- bad input ----------------------------------------------------------------------------

JSON_HEADERS = {"content-type": "application/json"}


def bad_requests(subject: str) -> list[tuple[str, dict[str, Any], int | set[int], tuple[str, ...]]]:
    """(label, httpx request arguments, expected status(es), words the detail must name)."""
    ok = {"subject": subject, "choices": {"analytics": "given"}}

    def body(**changes: Any) -> dict[str, Any]:
        return {"json": {**ok, **changes}}

    def raw(content: bytes, headers: dict[str, str] = JSON_HEADERS) -> dict[str, Any]:
        return {"content": content, "headers": headers}

    nested = b'{"subject":"' + subject.encode() + b'","choices":' + b"[" * 5000 + b"]" * 5000 + b"}"
    no_subject = {k: v for k, v in ok.items() if k != "subject"}
    latin1 = json.dumps({**ok, "language": "fr\u00e9"}, ensure_ascii=False).encode("latin-1")
    return [
        ("malformed JSON", raw(b'{"subject": "' + subject.encode() + b'", '), 400, ("body",)),
        ("empty body", raw(b""), {400, 422}, ("body",)),
        ("JSON array", {"json": [ok]}, 422, ("body",)),
        ("JSON string", {"json": "consent"}, 422, ("body",)),
        ("JSON null", raw(b"null"), 422, ("body",)),
        ("unknown field", body(is_admin=True), 422, ("is_admin",)),
        ("missing subject", {"json": no_subject}, 422, ("subject",)),
        ("subject not text", body(subject=1234567890123456789), 422, ("subject",)),
        ("subject too short", body(subject="abc"), 422, ("subject",)),
        ("subject with /", body(subject="abcdefgh/ijklmnopq"), 422, ("subject",)),
        ("subject with space", body(subject="abcdefgh ijklmnopq"), 422, ("subject",)),
        ("subject with newline", body(subject="abcdefghijklmnopq\n"), 422, ("subject",)),
        ("subject 10 KB", body(subject="a" * 10_240), 422, ("subject",)),
        ("choices missing", {"json": {"subject": subject}}, 422, ("choices",)),
        ("choices empty", body(choices={}), 422, ("choices",)),
        ("choices a list", body(choices=["analytics"]), 422, ("choices",)),
        ("unknown category", body(choices={"bogus": "given"}), 422, ("choices", "bogus")),
        ("required category", body(choices={"necessary": "refused"}), 422, ("necessary",)),
        ("required given", body(choices={"security": "given"}), 422, ("security",)),
        ("status maybe", body(choices={"analytics": "maybe"}), 422, ("choices.analytics",)),
        ("status withdrawn", body(choices={"analytics": "withdrawn"}), 422, ("analytics",)),
        ("status bool", body(choices={"analytics": True}), 422, ("analytics",)),
        ("unknown method", body(method="telepathy"), 422, ("method",)),
        ("unknown jurisdiction", body(jurisdiction="mars"), 422, ("jurisdiction",)),
        ("unknown language", body(language="xx"), 422, ("language",)),
        ("never-published version", body(policy_version="9.9.9"), 422, ("policy_version",)),
        ("gpc not a bool", body(gpc="perhaps"), 422, ("gpc",)),
        ("deeply nested JSON", raw(nested), {400, 422}, ("body",)),
        ("non-UTF-8 body", raw(latin1), {400, 422}, ("body",)),
        ("invalid UTF-8 bytes", raw(b'{"subject": "\xff\xfe\xfd"}'), {400, 422}, ("body",)),
        (
            "text/plain",
            raw(json.dumps(ok).encode(), {"content-type": "text/plain"}),
            {415, 422},
            ("body",),
        ),
        ("form-encoded", {"data": ok}, {415, 422}, ("body",)),
        ("no content type", raw(json.dumps(ok).encode(), {}), {415, 422}, ("body",)),
    ]


def test_bad_input_is_refused_with_a_problem_and_changes_nothing(api: Api) -> None:
    subject = visitor()
    api.record(subject, {"analytics": "given"})  # the subject exists: nothing may change it
    before = counts(api.db_url)
    state_before = api.effective(subject)

    mismatches = []
    for label, request, status, fields in bad_requests(subject):
        r = api.client.post("/api/consent", **request)
        assert r.status_code < 500, (label, r.status_code, r.text)
        try:
            assert_problem(r, status, *fields)
        except AssertionError as exc:
            mismatches.append(f"{label}: {r.status_code} {r.text[:200]} ({exc})")
    assert not mismatches, "\n".join(mismatches)
    assert counts(api.db_url) == before
    assert api.effective(subject) == state_before


def test_oversized_body_is_413_and_changes_nothing(api: Api) -> None:
    subject = visitor()
    before = counts(api.db_url)
    # A valid request, padded past the 16 384 byte limit.
    big = {"subject": subject, "choices": {"analytics": "given"}, "language": "x" * 17_000}

    declared = api.consent(big)
    assert "content-length" in declared.request.headers
    assert_problem(declared, 413, "body", "16384")

    def chunks() -> Iterator[bytes]:
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    chunked = api.client.post("/api/consent", content=chunks(), headers=JSON_HEADERS)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(chunked, 413, "body", "16384")

    assert counts(api.db_url) == before
    assert api.effective(subject)["categories"]["analytics"]["status"] == "undecided"


# --- rate limit and CORS ------------------------------------------------------------------


def test_burst_of_writes_is_rate_limited_and_refused_writes_change_nothing(
    db_url: str, tmp_path: Path
) -> None:
    env = {"TROTH_WRITE_RATE_PER_MINUTE": "5"}
    with api_server(db_url, tmp_path / "work", env=env) as api:
        before = counts(db_url)["consent_events"]
        statuses = []
        refused = []
        for _ in range(25):
            r = api.consent({"subject": visitor(), "choices": {"analytics": "given"}})
            statuses.append(r.status_code)
            if r.status_code == 429:
                refused.append(r)
        assert set(statuses) <= {201, 429}, statuses
        assert refused, f"25 writes in a burst at 5 a minute were all accepted: {statuses}"
        assert statuses[0] == 201
        for r in refused:
            assert_problem(r, 429)
            # At 5 a minute a token comes back within 12 s.
            assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers["retry-after"]
        assert counts(db_url)["consent_events"] == before + statuses.count(201)
        # Reading consent is not limited.
        assert api.client.get(f"/api/consent/{visitor()}").status_code == 200


def test_cors_lets_only_the_configured_site_call_the_api(tmp_path: Path) -> None:
    # CORS is the HTTP layer's business, the same on either engine.
    env = {"TROTH_ORIGINS": "https://shop.example"}
    with api_server(f"sqlite:///{tmp_path / 'troth.db'}", tmp_path / "work", env=env) as api:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        ok = api.client.options(
            "/api/consent", headers={"Origin": "https://shop.example", **preflight}
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "content-type" in ok.headers["access-control-allow-headers"].lower()

        evil = api.client.options(
            "/api/consent", headers={"Origin": "https://evil.example", **preflight}
        )
        assert evil.status_code >= 400
        assert "access-control-allow-origin" not in evil.headers

        body = {"subject": visitor(), "choices": {"analytics": "given"}}
        shop_post = api.consent(body, Origin="https://shop.example")
        assert shop_post.status_code == 201
        assert shop_post.headers["access-control-allow-origin"] == "https://shop.example"
        evil_post = api.consent({**body, "subject": visitor()}, Origin="https://evil.example")
        assert "access-control-allow-origin" not in evil_post.headers


# --- discovery ----------------------------------------------------------------------------


def test_gpc_support_and_openapi_are_published(api: Api) -> None:
    r = api.client.get("/.well-known/gpc.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"gpc": True, "lastUpdate": "2026-12-01"}

    spec = api.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "post" in paths["/api/consent"]
    assert "get" in paths["/api/consent/{subject}"]
    assert "get" in paths["/api/consent/{subject}/history"]
    assert "get" in paths["/api/consent/{subject}/receipts/{receipt_id}"]
    assert "get" in paths["/.well-known/troth-receipt-key.pem"]


# --- no personal data in clear ------------------------------------------------------------


def every_stored_text(db_url: str) -> list[str]:
    """Every value of every text or JSON column of every table, as text."""
    engine = connect(db_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        assert {*TABLES} <= set(meta.tables), set(meta.tables)
        out = []
        with engine.connect() as conn:
            for table in meta.tables.values():
                for row in conn.execute(select(table)):
                    for value in row:
                        if value is not None:
                            out.append(
                                value if isinstance(value, str) else json.dumps(value, default=str)
                            )
        return out
    finally:
        engine.dispose()


def test_no_visitor_id_is_stored_or_logged_in_clear(api: Api) -> None:
    before = counts(api.db_url)["consent_events"]
    subjects = [visitor() for _ in range(3)] + ["account:42.customer-0001"]
    for subject in subjects:
        api.record(subject, {"analytics": "given", "advertising": "given"})
        api.record(
            subject, {"analytics": "refused"}, jurisdiction="us_ca", headers={"Sec-GPC": "1"}
        )
        api.record(subject, {"preferences": "given"}, language="de", method="preference_centre")
        api.effective(subject, jurisdiction="uk")
        api.client.get(f"/api/consent/{subject}/history")
        bad = api.consent({"subject": subject, "choices": {"no_such_category": "given"}})
        assert bad.status_code == 422
        assert subject not in bad.text
    assert counts(api.db_url)["consent_events"] == before + 3 * len(subjects)

    stored = every_stored_text(api.db_url)
    engine = connect(api.db_url)
    try:
        columns = {t: [c["name"] for c in inspect(engine).get_columns(t)] for t in TABLES}
    finally:
        engine.dispose()
    assert "subject_hash" in columns["consent_events"]
    assert "subject" not in columns["consent_events"]
    log = api.server.output()
    # Every visitor id this server has seen, in this test and the ones before it.
    for subject in sorted(api.subjects | set(subjects)):
        if len(subject) < 16:
            continue  # refused ids too short to be searched for meaningfully
        leaks = [value[:120] for value in stored if subject in value]
        assert not leaks, f"{subject} stored in clear: {leaks}"
        assert subject not in log


# --- several workers ----------------------------------------------------------------------


def worker_processes(parent: int) -> list[str]:
    """Command lines of the uvicorn worker processes started by ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "spawn_main" in cmdline:
                    found.append(cmdline)
    return found


def test_two_workers_take_200_concurrent_writes_and_publish_once(
    postgres_server: str, tmp_path: Path
) -> None:
    db_url = new_postgres_database(postgres_server)
    with running_server(SEED, db_url, tmp_path / "work", workers=2, env=NO_RATE_LIMIT) as server:
        workers = worker_processes(server.process.pid)
        assert len(workers) == 2, workers
        subjects = [visitor() for _ in range(200)]

        async def write_all() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(
                base_url=server.url, timeout=httpx.Timeout(30.0, connect=10.0), limits=limits
            ) as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            "/api/consent",
                            json={"subject": s, "choices": {"analytics": "given"}},
                        )
                        for s in subjects
                    )
                )

        responses = asyncio.run(asyncio.wait_for(write_all(), timeout=60))
        statuses = [r.status_code for r in responses]
        assert statuses == [201] * 200, sorted(set(statuses))
        receipts = [r.json()["receipt"] for r in responses]
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            pem = client.get("/.well-known/troth-receipt-key.pem").content
        key = load_pem_public_key(pem)
        assert isinstance(key, Ed25519PublicKey)
        for receipt in receipts:  # every worker signs with the one published key
            verify_receipt(receipt, key)
        assert len({r["subject"] for r in receipts}) == 200

        engine = connect(db_url)
        try:
            with engine.connect() as conn:
                stored = set(conn.execute(text("SELECT receipt_id FROM consent_events")).scalars())
                versions = conn.execute(text("SELECT version FROM policy_versions")).all()
        finally:
            engine.dispose()
        assert stored == {r["receipt_id"] for r in receipts}
        assert [tuple(v) for v in versions] == [("1.1.0",)]


# --- the database and publishing ----------------------------------------------------------


def test_db_upgrade_creates_the_tables_and_is_idempotent(db_url: str) -> None:
    from troth.store.migrate import head_revision

    first = troth("db", "upgrade", "--database-url", db_url)
    assert first.returncode == 0, first.stderr
    assert head_revision() in first.stdout
    engine = connect(db_url)
    try:
        assert {*TABLES, "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    again = troth("db", "upgrade", "--database-url", db_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert counts(db_url) == dict.fromkeys(TABLES, 0)


def test_db_upgrade_on_unreachable_postgres_exits_2_with_one_line() -> None:
    url = f"postgresql+psycopg://troth@127.0.0.1:{free_port()}/troth"
    result = troth("db", "upgrade", "--database-url", url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    one_clear_line(result.stderr)
    assert "database" in result.stderr


def test_same_version_with_different_content_refuses_to_start(
    db_url: str, tmp_path: Path, seed_variant: Any
) -> None:
    from troth.policy.loader import load_policy

    work = tmp_path / "work"
    with running_server(SEED, db_url, work):  # publishes 1.1.0 as it is
        pass

    def reword(data: dict[str, Any]) -> None:
        category = next(c for c in data["consent_categories"] if c["id"] == "analytics")
        category["description"]["en"] += " We also count how long you stay."

    variant = seed_variant(reword)
    assert load_policy(variant).policy.version == "1.1.0"
    result = subprocess.run(
        [TROTH_BIN, "serve", str(variant), "--port", str(free_port()), "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=work,
        env={**os.environ, "TROTH_KEYS_DIR": str(work / "keys")},
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    one_clear_line(result.stderr)
    assert "1.1.0" in result.stderr
    assert "already published" in result.stderr
    assert counts(db_url)["policy_versions"] == 1
