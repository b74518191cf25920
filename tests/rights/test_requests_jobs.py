"""The job queue: workers in separate threads with their own connections never run the
same job (PostgreSQL SKIP LOCKED; SQLite's write lock), a crashed worker's lease is taken
over, failures are retried and then kept as failed, and `troth rights work` runs jobs
from another process."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, select

from conftest import SEED, TROTH_BIN, running_server
from rights.conftest import ALEX
from rights.lifecycle_support import Clock, Lifecycle, lifecycle
from troth.audit.log import AuditLog
from troth.auth.api_keys import create_api_key
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.rights.jobs import Job, Outcome, Worker, enqueue, jobs_of
from troth.store.engine import make_engine, writing
from troth.store.migrate import upgrade
from troth.store.tables_rights import rights_jobs


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=16)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    keyring = Keyring(LocalKEK(b"k" * 32))
    return AuditLog(keyring, Ed25519PrivateKey.generate(), tmp_path / "heads.jsonl")


class Recorder:
    """A runner that notes which worker ran which job, slowly enough to overlap."""

    def __init__(self, pause: float = 0.0, fail: Callable[[Job], bool] | None = None) -> None:
        self.runs: list[tuple[str, int]] = []
        self.settled: list[int] = []
        self.pause = pause
        self.fail = fail
        self.lock = threading.Lock()
        self.owner = threading.local()

    def run(self, job: Job) -> Outcome:
        with self.lock:
            self.runs.append((getattr(self.owner, "name", "?"), job.id))
        if self.fail is not None and self.fail(job):
            raise RuntimeError("store unreachable: alex@example.org")  # a driver quoting data
        time.sleep(self.pause)
        return Outcome(None, {"ran": job.id})

    def settle(self, conn: Connection, job: Job) -> Callable[[], None] | None:
        self.settled.append(job.id)
        return None


def queue(engine: Engine, n: int, request: str = "f" * 32) -> None:
    with writing(engine).begin() as conn:
        enqueue(
            conn, request, "erase", [f"store{i:03d}" for i in range(n)], dt.datetime.now(dt.UTC)
        )


def states(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(rights_jobs.c.state)).scalars())


def test_workers_with_their_own_connections_never_run_the_same_job(engine, audit):
    queue(engine, 40)
    runner = Recorder(pause=0.01)
    engines = [make_engine(engine.url.render_as_string(hide_password=False)) for _ in range(3)]
    barrier = threading.Barrier(3)

    def work(name: str, eng: Engine) -> None:
        runner.owner.name = name
        worker = Worker(eng, runner, audit, owner=name)
        barrier.wait()
        while worker.run_once() is not None:
            pass

    threads = [threading.Thread(target=work, args=(f"w{i}", e)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    ids = [job_id for _, job_id in runner.runs]
    assert len(ids) == 40
    assert len(set(ids)) == 40  # no job ran twice
    assert sorted(runner.settled) == sorted(ids)
    assert states(engine) == Counter({"done": 40})
    if engine.dialect.name == "postgresql":  # SKIP LOCKED: the work was shared, not queued up
        assert len({name for name, _ in runner.runs}) > 1


def test_a_crashed_workers_job_is_taken_over_when_its_lease_runs_out(engine, audit):
    queue(engine, 1)
    clock = Clock()
    runner = Recorder()
    crashed = Worker(engine, runner, audit, owner="crashed", clock=clock)
    taken = crashed.claim()  # ... and then the process died
    assert taken is not None
    other = Worker(engine, runner, audit, owner="other", clock=clock)
    assert other.claim() is None  # leased: nobody else may take it
    clock.advance(minutes=5, seconds=1)
    again = other.claim()
    assert again is not None
    assert (again.id, again.attempts, again.lease_owner) == (taken.id, 2, "other")
    # the crashed worker, should it come back, cannot finish what is no longer its job
    assert crashed.finish(taken, Outcome(None, {"late": True})) is False
    assert other.finish(again, Outcome(None, {"ran": again.id})) is True
    with engine.connect() as conn:
        (job,) = jobs_of(conn, taken.request_id)
    assert (job.state, job.result, job.attempts) == ("done", {"ran": again.id}, 2)


def test_a_running_worker_renews_its_lease_and_a_lost_lease_is_not_renewed(engine, audit):
    queue(engine, 1)
    clock = Clock()
    runner = Recorder()
    slow = Worker(engine, runner, audit, owner="slow", clock=clock)
    job = slow.claim()
    assert job is not None
    clock.advance(minutes=4)
    assert slow.renew(job)  # still working: the lease runs five minutes from now
    clock.advance(minutes=4)
    other = Worker(engine, runner, audit, owner="other", clock=clock)
    assert other.claim() is None
    clock.advance(minutes=2)
    taken = other.claim()
    assert taken is not None
    assert not slow.renew(job)  # gone to another worker: not taken back


def test_failures_are_retried_with_backoff_then_kept_failed_without_personal_data(engine, audit):
    queue(engine, 1)
    clock = Clock()
    runner = Recorder(fail=lambda job: True)
    worker = Worker(engine, runner, audit, owner="w", clock=clock, max_attempts=3)
    for _ in range(3):
        assert worker.run_once() is not None
        assert worker.run_once() is None  # backing off: not due yet
        clock.advance(minutes=10)
    assert worker.run_once() is None
    with engine.connect() as conn:
        (job,) = jobs_of(conn, "f" * 32)
    assert (job.state, job.attempts) == ("failed", 3)
    assert job.error == "RuntimeError (details withheld: they may quote personal data)"


@pytest.fixture
def life(db_url: str, tmp_path: Path) -> Iterator[Lifecycle]:
    with lifecycle(db_url, tmp_path) as made:
        yield made


def test_troth_rights_work_runs_jobs_in_another_process(life, tmp_path):
    r = life.client.post(
        "/api/rights/requests",
        json={"kind": "access", "identities": {"email": [ALEX["email"]]}},
        headers=life.key("service"),
    )
    assert r.status_code == 201
    request_id = r.json()["id"]
    env = {
        "TROTH_DATABASE_URL": life.settings.database_url,
        "TROTH_KEYS_DIR": str(life.settings.keys_dir),
        "TROTH_AUDIT_HEADS": str(life.settings.audit_heads),
        "TROTH_DATASETS": str(life.settings.datasets),
        "TROTH_OUTBOX": str(life.outbox),
        "TROTH_PUBLIC_URL": "http://testserver",
        "TROTH_POLICY": str(SEED),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [TROTH_BIN, "rights", "work", "--once"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 job(s) run" in done.stdout
    view = life.client.get(
        f"/privacy/requests/{request_id}", headers={"Accept": "application/json"}
    )
    assert view.json()["state"] == "completed"
    assert life.client.get(life.link(ALEX["email"])).status_code == 200
    shown = subprocess.run(
        [TROTH_BIN, "rights", "show", request_id],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0
    assert "downloaded" in shown.stdout
    assert ALEX["email"] not in shown.stdout + done.stdout + done.stderr


def test_serve_runs_request_jobs_in_the_background(db_url, tmp_path, life):
    """`troth serve` works off the queue itself (TROTH_RIGHTS_WORKER, on by default)."""
    work = tmp_path / "served"
    env = {
        "TROTH_DATASETS": str(life.settings.datasets),
        "TROTH_OUTBOX": str(work / "outbox"),
        "TROTH_PUBLIC_URL": "http://troth.test",
        "TROTH_AUDIT_HEADS": str(work / "heads.jsonl"),
    }
    with running_server(SEED, db_url, work, env=env) as server:
        eng = make_engine(db_url)
        try:
            _, key = create_api_key(eng, "service", "served")
        finally:
            eng.dispose()
        r = httpx.post(
            f"{server.url}/api/rights/requests",
            json={"kind": "portability", "identities": {"email": [ALEX["email"]]}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        status_url = f"{server.url}/privacy/requests/{r.json()['id']}"
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = httpx.get(status_url, headers={"Accept": "application/json"}).json()["state"]
            if state == "completed":
                break
            time.sleep(0.2)
        assert state == "completed", server.output()
        mails = list((work / "outbox").glob("*.eml"))
        assert len(mails) == 1
        assert oct(mails[0].stat().st_mode & 0o777) == "0o600"
        message = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        body = message.get_body(("plain",))
        assert body is not None
        text = str(body.get_content())
        assert "http://troth.test/privacy/requests/download/" in text
        path = text.split("http://troth.test", 1)[1].split()[0]
        got = httpx.get(f"{server.url}{path}")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/zip"
        assert "Traceback" not in server.output()


def test_two_worker_processes_share_the_queue_and_never_run_a_job_twice(life, tmp_path):
    service = life.key("service")
    ids = []
    for n in range(1, 6):
        r = life.client.post(
            "/api/rights/requests",
            json={"kind": "access", "identities": {"email": [f"user{n}@example.net"]}},
            headers=service,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    env = {
        "TROTH_DATABASE_URL": life.settings.database_url,
        "TROTH_KEYS_DIR": str(life.settings.keys_dir),
        "TROTH_AUDIT_HEADS": str(life.settings.audit_heads),
        "TROTH_DATASETS": str(life.settings.datasets),
        "TROTH_OUTBOX": str(life.outbox),
        "TROTH_POLICY": str(SEED),
        "PATH": "/usr/bin:/bin",
    }
    workers = [
        subprocess.Popen(
            [TROTH_BIN, "rights", "work", "--once"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = sum(int(out.split("troth: ")[1].split(" job")[0]) for out, _ in outputs)
    assert ran == 15  # five requests: discovery, then one job per datastore
    with life.services.engine.connect() as conn:
        attempts = conn.execute(select(rights_jobs.c.attempts, rights_jobs.c.state)).all()
    assert sorted(set(attempts)) == [(1, "done")]  # every job claimed once, by one worker
    for request_id in ids:
        state = life.client.get(
            f"/privacy/requests/{request_id}", headers={"Accept": "application/json"}
        ).json()["state"]
        assert state == "completed"
