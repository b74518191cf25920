"""`troth serve` as a real HTTP server: pages, languages, and errors as problem JSON."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SEED

TROTH = str(Path(sys.executable).with_name("troth"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    work = tmp_path_factory.mktemp("serve")
    log = work / "serve.log"
    env = {
        **os.environ,
        "TROTH_KEYS_DIR": str(work / "keys"),
        "TROTH_AUDIT_HEADS": str(work / "audit" / "heads.jsonl"),
        "TROTH_ERASURES": str(work / "audit" / "erasures.jsonl"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TROTH, "serve", str(SEED), "--port", str(port),
             "--database-url", f"sqlite:///{work / 'troth.db'}"],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        proc.wait()
        pytest.fail(f"troth serve did not start:\n{log.read_text()}")
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def test_privacy_page_is_the_rendered_policy(server):
    r = httpx.get(f"{server}/privacy")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-policy-version"] == "1.1.0"
    assert '<html lang="en">' in r.text
    assert 'id="tracking.table"' in r.text


def test_demo_page_carries_the_banner_first_and_blocks_tags(server):
    r = httpx.get(server + "/")
    assert r.status_code == 200
    head = r.text.split("</head>")[0]
    assert head.index("/troth/banner.js") < head.index('type="text/plain"')
    assert '<script type="text/plain" data-category="analytics"' in head


def test_language_by_parameter_and_by_header(server):
    assert '<html lang="de">' in httpx.get(f"{server}/privacy?lang=de").text
    r = httpx.get(f"{server}/privacy", headers={"Accept-Language": "fr;q=0.9, de;q=0.8"})
    assert r.headers["content-language"] == "de"
    r = httpx.get(f"{server}/privacy", headers={"Accept-Language": "fr, ja"})
    assert r.headers["content-language"] == "en"


def test_unknown_language_is_a_404_problem(server):
    r = httpx.get(f"{server}/privacy?lang=xx")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("lang:")


def test_tables_and_json(server):
    assert "<table>" in httpx.get(f"{server}/privacy/tracking").text
    assert "<table>" in httpx.get(f"{server}/privacy/recipients?lang=de").text
    doc = httpx.get(f"{server}/privacy.json").json()
    assert doc["version"] == "1.1.0"
    assert doc["sections"]


def test_unknown_path_is_a_404_problem(server):
    r = httpx.get(f"{server}/nope")
    assert r.status_code == 404
    assert r.json()["status"] == 404


def test_malformed_accept_language_does_not_fail(server):
    r = httpx.get(f"{server}/privacy", headers={"Accept-Language": ";q=abc,,," + "x" * 5000})
    assert r.status_code == 200
