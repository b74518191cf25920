"""Nothing acknowledged is lost: a consent write answered 2xx survives the server being killed.

Eight clients write consent for distinct visitors as fast as the server answers; once about
300 writes are acknowledged, and while others are still in flight, the server gets SIGKILL
(no shutdown, no flushing). Every acknowledged receipt must then be in the ledger with its
current state, and a restarted server must report that consent. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import create_engine, text

from conftest import SEED, TROTH_BIN, running_server
from troth.consent.receipts import verify_receipt

WRITERS = 8
ACKNOWLEDGED = 300
NO_RATE_LIMIT = {"TROTH_WRITE_RATE_PER_MINUTE": "1000000"}
CHOICES: list[dict[str, str]] = [
    {"analytics": "given", "advertising": "refused"},
    {"preferences": "given"},
    {"email_marketing": "refused", "analytics": "given", "preferences": "refused"},
    {"advertising": "given"},
]


@dataclass(frozen=True)
class Ack:
    subject: str
    receipt: dict[str, Any]


class Writers:
    """Threads that write consent until told to stop or the server goes away."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acks: dict[str, Ack] = {}
        self.unexpected: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.enough = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), name=f"writer-{n}", daemon=True)
            for n in range(WRITERS)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        timeout = httpx.Timeout(5.0, connect=2.0)
        try:
            with httpx.Client(base_url=self.url, timeout=timeout) as client:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    subject = f"durable-{n}-{i}-{secrets.token_urlsafe(9)}"
                    body = {"subject": subject, "choices": rng.choice(CHOICES)}
                    try:
                        r = client.post("/api/consent", json=body)
                    except httpx.HTTPError:
                        # The server was killed (or is dying): nothing was acknowledged.
                        if self.stop.wait(0.05):
                            return
                        continue
                    if r.is_success:
                        receipt = r.json()["receipt"]
                        with self.lock:
                            self.acks[receipt["receipt_id"]] = Ack(subject, receipt)
                            if len(self.acks) >= ACKNOWLEDGED:
                                self.enough.set()
                    else:
                        with self.lock:
                            self.unexpected.append(f"{r.status_code} {r.text[:200]}")
        except Exception as exc:  # a thread must not die silently
            with self.lock:
                self.unexpected.append(f"writer-{n}: {exc!r}")


def read_ledger(db_url: str) -> tuple[dict[str, tuple[int, str, Any]], dict[tuple[str, str], Any]]:
    """(receipt_id -> (event id, subject hash, choices), (hash, category) -> (status, event))."""
    timeout = {"connect_timeout": 10} if db_url.startswith("postgresql") else {"timeout": 10}
    engine = create_engine(db_url, connect_args=timeout)
    try:
        with engine.connect() as conn:
            events = {
                r.receipt_id: (r.id, r.subject_hash, r.choices)
                for r in conn.execute(
                    text("SELECT id, receipt_id, subject_hash, choices FROM consent_events")
                )
            }
            current = {
                (r.subject_hash, r.category): (r.status, r.event_id)
                for r in conn.execute(
                    text("SELECT subject_hash, category, status, event_id FROM consent_current")
                )
            }
    finally:
        engine.dispose()
    # SQLite hands JSON back as text through a textual query; PostgreSQL as objects.
    events = {
        k: (i, h, json.loads(c) if isinstance(c, str) else c) for k, (i, h, c) in events.items()
    }
    return events, current


def test_acknowledged_writes_survive_sigkill(db_url: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    with running_server(SEED, db_url, work, env=NO_RATE_LIMIT) as server:
        writers = Writers(server.url)
        writers.start()
        try:
            reached = writers.enough.wait(timeout=45)
            with writers.lock:
                acked_at_kill = len(writers.acks)
            server.process.kill()  # SIGKILL: no shutdown handler, no flush, nothing
            server.process.wait(timeout=10)
        finally:
            writers.stop.set()
            alive = writers.join(timeout=15)
        assert not alive, f"writers did not stop: {alive}"
        assert reached, f"only {len(writers.acks)} writes acknowledged in 45 s"
        assert not writers.unexpected, writers.unexpected[:5]
        assert server.process.returncode == -9

    acks = dict(writers.acks)
    assert len(acks) >= acked_at_kill >= ACKNOWLEDGED

    events, current = read_ledger(db_url)
    lost = sorted(set(acks) - set(events))
    assert not lost, f"{len(lost)} of {len(acks)} acknowledged writes are not in the ledger"
    for receipt_id, ack in acks.items():
        event_id, subject_hash, choices = events[receipt_id]
        assert subject_hash == ack.receipt["subject"]
        assert choices == ack.receipt["choices"]
        for category, status in ack.receipt["choices"].items():
            assert current.get((subject_hash, category)) == (status, event_id), (
                receipt_id,
                category,
            )

    # A restarted server, on the same database and keys, reports what was acknowledged.
    sample = random.Random(0).sample(sorted(acks), 40)
    with (
        running_server(SEED, db_url, work, env=NO_RATE_LIMIT) as again,
        httpx.Client(base_url=again.url, timeout=httpx.Timeout(10.0, connect=5.0)) as client,
    ):
        key = load_pem_public_key(client.get("/.well-known/troth-receipt-key.pem").content)
        assert isinstance(key, Ed25519PublicKey)
        for receipt_id in sample:
            ack = acks[receipt_id]
            r = client.get(f"/api/consent/{ack.subject}")
            assert r.status_code == 200, r.text
            categories = r.json()["categories"]
            for category, status in ack.receipt["choices"].items():
                assert categories[category]["status"] == status, (ack.subject, category)
                assert categories[category]["allowed"] is (status == "given")
                assert categories[category]["since"] == ack.receipt["timestamp"]
            stored = client.get(f"/api/consent/{ack.subject}/receipts/{receipt_id}")
            assert stored.status_code == 200
            assert stored.json() == ack.receipt
            verify_receipt(stored.json(), key)

    # The audit log kept every acknowledged change: it verifies (the restart signed any tail
    # the kill left unsigned, marked as recovered) and covers each receipt's audit index.
    verify = subprocess.run(
        [TROTH_BIN, "audit", "verify", "--database-url", db_url, "--format", "json"],
        cwd=work, env={**os.environ, "TROTH_KEYS_DIR": str(work / "keys")},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is True
    assert max(a.receipt["audit_index"] for a in acks.values()) < report["size"]


def test_an_error_answer_means_nothing_was_recorded(db_url: str, tmp_path: Path) -> None:
    """The converse of the test above: a client told "failed" retries, so a write it was
    told failed must not be in the ledger (or it is recorded twice, under two receipts).

    After each commit the server appends a signed head to the audit heads file; when that
    file cannot be written the write has already committed. Whatever the server answers
    then, the answer has to match the ledger.
    """
    work = tmp_path / "work"
    heads = work / "audit" / "heads.jsonl"
    env = {**NO_RATE_LIMIT, "TROTH_AUDIT_HEADS": str(heads)}
    with (
        running_server(SEED, db_url, work, env=env) as server,
        httpx.Client(
            base_url=server.url,
            timeout=httpx.Timeout(10.0, connect=5.0),
            headers={"Connection": "close"},  # a server may drop a connection after a 500
        ) as client,
    ):
        first = client.post(
            "/api/consent", json={"subject": secrets.token_urlsafe(16), "choices": CHOICES[0]}
        )
        assert first.status_code == 201, first.text
        assert heads.is_file()
        heads.rename(heads.with_suffix(".moved"))
        heads.mkdir()  # the heads file can no longer be appended to

        subject = secrets.token_urlsafe(16)
        r = client.post("/api/consent", json={"subject": subject, "choices": CHOICES[1]})
        history = client.get(f"/api/consent/{subject}/history")
        assert history.status_code == 200
        recorded = history.json()["events"]
        assert r.status_code < 500 or not recorded, (
            f"answered {r.status_code} {r.text[:80]!r}, but the write was recorded: {recorded}"
        )
        if r.is_success:
            assert [e["receipt_id"] for e in recorded] == [r.json()["receipt"]["receipt_id"]]
        else:
            assert recorded == []
