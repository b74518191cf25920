"""Tracking core: signed links, what a hit may keep, batched writes, retention, reports."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from troth.audit.log import AuditLog
from troth.errors import TrackingError
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.keyring.signing import b64, unb64
from troth.policy.lint import lint
from troth.store.batch import BatchWriter
from troth.store.engine import make_engine
from troth.store.migrate import upgrade
from troth.store.tables import audit_entries, tracking_aggregates, tracking_events, tracking_salts
from troth.tracking.decide import decide_hit
from troth.tracking.identity import DailySalts, truncate_ip
from troth.tracking.links import LinkSigner
from troth.tracking.purge import purge
from troth.tracking.recorder import Hit, Recorder
from troth.tracking.stats import stats


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def tech(seed, tid):
    return next(t for t in seed.policy.tracking if t.id == tid)


def test_links_round_trip_and_refuse_tampering():
    signer = LinkSigner(b"k" * 32)
    token = signer.sign("https://example.net/plans?x=1", tech="email_click_link", campaign="nov")
    claims = signer.verify(token)
    assert claims.url == "https://example.net/plans?x=1"
    assert claims.campaign == "nov"
    body, mac = token.split(".")
    for bad in (
        body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac,
        body + "." + mac[::-1],
        body,
        "",
        "a.b.c",
    ):
        with pytest.raises(TrackingError):
            signer.verify(bad)
    with pytest.raises(TrackingError, match="altered"):
        LinkSigner(b"o" * 32).verify(token)
    with pytest.raises(TrackingError, match="expired"):
        signer.verify(signer.sign("https://example.net/", tech="t", campaign="c", ttl=-1))
    for url in ("javascript:alert(1)", "//evil.example/", "/relative", "ftp://x.example/"):
        with pytest.raises(TrackingError, match="only http"):
            signer.sign(url, tech="t", campaign="c")


def test_links_carry_a_signed_jurisdiction_and_old_links_have_none():
    signer = LinkSigner(b"k" * 32)
    token = signer.sign(
        "https://example.net/", tech="email_click_link", campaign="nov", jurisdiction="us_ca"
    )
    assert signer.verify(token).jurisdiction == "us_ca"
    old = signer.sign("https://example.net/", tech="email_click_link", campaign="nov")
    assert signer.verify(old).jurisdiction is None
    assert '"j"' not in unb64(old.split(".")[0]).decode()  # made exactly as before the claim
    body, mac = token.split(".")
    claims = json.loads(unb64(body))
    for changed in ({**claims, "j": "eu"}, {k: v for k, v in claims.items() if k != "j"}):
        forged = b64(json.dumps(changed, separators=(",", ":")).encode())
        with pytest.raises(TrackingError, match="altered"):
            signer.verify(f"{forged}.{mac}")


@pytest.mark.parametrize(
    ("ip", "kept"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("not an ip", "unknown"),
    ],
)
def test_ips_are_truncated(ip, kept):
    assert truncate_ip(ip) == kept


def test_hit_decisions(seed):
    page, ads = tech(seed, "page_pixel"), tech(seed, "ad_pixel")
    required = {"necessary", "security"}
    assert decide_hit(page, {"analytics"}, required=required).outcome == "full"
    assert decide_hit(page, set(), required=required).outcome == "aggregate"
    assert decide_hit(page, {"analytics"}, required=required, dnt=True).outcome == "aggregate"
    assert decide_hit(ads, set(), required=required).outcome == "drop"
    assert decide_hit(ads, {"advertising"}, required=required).outcome == "full"


def test_daily_salts_unlink_days_and_are_forgotten(engine):
    salts = DailySalts(engine)
    today, tomorrow = dt.date(2026, 11, 29), dt.date(2026, 11, 30)
    a = salts.visitor(today, "203.0.113.0/24", "Firefox")
    assert a == DailySalts(engine).visitor(today, "203.0.113.0/24", "Firefox")  # another worker
    assert a != salts.visitor(today, "203.0.113.0/24", "Chrome")
    assert a != salts.visitor(tomorrow, "203.0.113.0/24", "Firefox")
    with engine.connect() as conn:
        days = [r.day for r in conn.execute(select(tracking_salts.c.day))]
    assert days == [tomorrow]


def audit_log(tmp_path):
    return AuditLog(
        Keyring(LocalKEK(os.urandom(32))), Ed25519PrivateKey.generate(), tmp_path / "heads.jsonl"
    )


def test_recorder_writes_events_and_counts_and_purge_enforces_retention(engine, seed, tmp_path):
    now = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    old = now - dt.timedelta(days=500)
    log = audit_log(tmp_path)

    async def run():
        writer = BatchWriter(engine, finish=log.take_head, after_commit=log.publish)
        writer.start()
        recorder = Recorder(engine, writer, flush_every=0.05)
        recorder.start()
        try:
            await recorder.durable(
                [
                    Hit(
                        "analytics_sdk",
                        "event",
                        True,
                        now,
                        name="signup",
                        visitor="c:1",
                        ip_prefix="203.0.113.0/24",
                    ),
                    Hit("page_pixel", "view", False, now, campaign="nov"),
                ]
            )
            recorder.best_effort([Hit("page_pixel", "view", True, old, campaign="nov", page="/")])
            recorder.best_effort([Hit("page_pixel", "view", False, now, campaign="nov")])
        finally:
            await recorder.stop()
            await writer.stop()

    asyncio.run(run())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tracking_events)).scalar() == 2
        counts = {
            (r.tech_id, r.day, r.consent): r.count
            for r in conn.execute(select(tracking_aggregates))
        }
    assert counts[("page_pixel", now.date(), "none")] == 2
    assert counts[("page_pixel", old.date(), "given")] == 1
    assert counts[("analytics_sdk", now.date(), "given")] == 1
    rows = stats(engine, now.date() - dt.timedelta(days=1), now.date())
    assert {(r["kind"], r["consent"], r["count"]) for r in rows} == {
        ("event", "given", 1),
        ("view", "none", 2),
    }

    deleted = purge(engine, seed.policy, log, now=now)
    assert deleted == {"page_pixel": 2}  # the old event and the old count; P13M retention
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tracking_events)).scalar() == 1
        actions = [r.action for r in conn.execute(select(audit_entries.c.action))]
    assert actions[-1] == "tracking.purged"
    assert log.verify(engine).ok


def test_a_full_buffer_loses_the_oldest_hits_and_counts_them(engine):
    async def run():
        writer = BatchWriter(engine)
        writer.start()
        recorder = Recorder(engine, writer, buffer=4, flush_size=1000)
        try:
            at = dt.datetime.now(dt.UTC)
            recorder.best_effort(
                [Hit("page_pixel", "view", False, at, campaign=f"c{i}") for i in range(6)]
            )
            assert recorder.dropped == 2
            recorder.best_effort([Hit("page_pixel", "view", False, at, campaign="c6")])
            assert recorder.dropped == 3
            assert await recorder.flush() == 4
            assert recorder.dropped == 3  # a flush loses nothing
        finally:
            await writer.stop()

    asyncio.run(run())
    with engine.connect() as conn:
        kept = sorted(r.campaign for r in conn.execute(select(tracking_aggregates.c.campaign)))
    assert kept == ["c3", "c4", "c5", "c6"]


def test_lint_requires_a_basis_for_aggregate_counting_and_a_retention(minimal_variant):
    def edit(d):
        d["tracking"].append(
            {"id": "px", "type": "pixel", "name": "px", "party": "first", "category": "analytics",
             "purposes": ["analytics"], "description": "A pixel.", "without_consent": "aggregate"}
        )  # fmt: skip

    codes = {f.code for f in lint(minimal_variant(edit))}
    assert {"T016", "T017"} <= codes


def _events_named(conn, prefix):
    return conn.execute(
        select(func.count())
        .select_from(tracking_events)
        .where(tracking_events.c.name.like(f"{prefix}%"))
    ).scalar_one()


def test_durable_hits_of_concurrent_requests_share_one_commit_and_its_failure(engine):
    """Hits waiting while the writer is busy go into one transaction; when it fails, every
    request whose hits were in it fails and none is acknowledged; the next group commits."""
    seen: list[int] = []  # tracking_events rows each failing transaction would have committed

    def finish(conn):
        if conn.execute(
            select(func.count())
            .select_from(tracking_events)
            .where(tracking_events.c.name == "poison")
        ).scalar_one():
            seen.append(_events_named(conn, "wave1"))
            raise RuntimeError("the commit failed")

    at = dt.datetime.now(dt.UTC)

    def hits(name, n=2):
        return [Hit("analytics_sdk", "event", True, at, name=name, visitor="c:1")] * n

    async def run():
        writer = BatchWriter(engine, finish=finish)
        writer.start()
        recorder = Recorder(engine, writer)
        busy, release = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def hold(_conn):  # keeps the writer busy while the requests below arrive
            loop.call_soon_threadsafe(busy.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)

        try:
            holding = asyncio.create_task(writer.submit(hold))
            await busy.wait()
            wave1 = [asyncio.create_task(recorder.durable(hits(f"wave1_{i}"))) for i in range(5)]
            wave1.append(
                asyncio.create_task(recorder.durable(hits("wave1_poison", 1) + hits("poison", 1)))
            )
            await asyncio.sleep(0.05)
            assert not any(t.done() for t in wave1)  # nobody acknowledged before the commit
            release.set()
            await holding
            outcomes1 = await asyncio.gather(*wave1, return_exceptions=True)
            wave2 = await asyncio.gather(
                *(recorder.durable(hits(f"wave2_{i}")) for i in range(3)), return_exceptions=True
            )
        finally:
            await writer.stop()
        return outcomes1, wave2

    outcomes1, wave2 = asyncio.run(run())
    assert [type(o) for o in outcomes1] == [RuntimeError] * 6
    # one transaction held all eleven hits of wave 1 (and failed again when retried alone)
    assert seen == [11, 11]
    assert wave2 == [None, None, None]
    with engine.connect() as conn:
        assert _events_named(conn, "wave1") == 0
        assert _events_named(conn, "poison") == 0
        assert _events_named(conn, "wave2") == 6
        counts = (
            conn.execute(
                select(tracking_aggregates.c.count).where(
                    tracking_aggregates.c.tech_id == "analytics_sdk"
                )
            )
            .scalars()
            .all()
        )
    assert counts == [6]  # one aggregated row, counting only what was committed


def _tracker(engine, seed, tmp_path, cache_seconds=5.0):
    from troth.consent.ledger import ConsentLedger
    from troth.consent.receipts import ReceiptSigner
    from troth.consent.versions import publish
    from troth.keyring.subjects import SubjectHasher
    from troth.policy.compiled import compile_policy
    from troth.tracking.tracker import Tracker

    ledger = ConsentLedger(
        engine,
        seed.policy,
        publish(engine, seed.policy),
        SubjectHasher(b"k" * 32),
        ReceiptSigner(Ed25519PrivateKey.generate()),
        audit_log(tmp_path),
    )
    recorder = Recorder(engine, BatchWriter(engine))  # never started: nothing is recorded
    return Tracker(
        compile_policy(seed.policy),
        ledger,
        DailySalts(engine),
        LinkSigner(b"k" * 32),
        recorder,
        cache_seconds=cache_seconds,
    )


def _choose(ledger, subject, **choices):
    from troth.consent.ledger import ConsentChange

    ledger.record(ConsentChange(subject, choices, "api", "en", "1.1.0"))


def _consent_reads(engine):
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if "consent_current" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return statements


def test_concurrent_consent_cache_misses_share_one_read(engine, seed, tmp_path):
    from troth.tracking.tracker import Request

    tracker = _tracker(engine, seed, tmp_path)
    ledger = tracker.ledger
    people = [f"visitor-{i:02d}-abcdefghij" for i in range(30)]
    for v in people[:10]:
        _choose(ledger, v, analytics="given")
    for v in people[10:20]:
        _choose(ledger, v, analytics="refused", advertising="given")
    mail = ledger.hash("mail-reader.example.org")
    _choose(ledger, "mail-reader.example.org", advertising="given")
    requests = [Request(ip="203.0.113.9", visitor=v) for v in people]
    requests += [
        Request(ip="", subject_hash=mail),
        Request(ip="203.0.113.9", visitor=people[0], jurisdiction="us_ca", gpc=True),
        Request(ip="203.0.113.9", visitor=people[25], jurisdiction="us_ca"),
        Request(ip="203.0.113.9"),  # nobody: nothing to read
    ]
    # what each person allows, read one at a time by a worker with an empty cache
    expected = [_tracker(engine, seed, tmp_path).allowed(r) for r in requests]
    assert expected[0] >= {"analytics"}
    assert "analytics" not in expected[10]
    assert "advertising" in expected[10]
    assert "advertising" in expected[30]
    assert "advertising" not in expected[31]
    assert "analytics" in expected[32]

    real = ledger.effective_many
    started, release = threading.Event(), threading.Event()

    def first_waits(hashes, jurisdiction=None, gpc=False):
        started.set()
        release.wait(10)
        return real(hashes, jurisdiction, gpc)

    async def together():
        # a first miss is being read while the others arrive: they share the next read
        ledger.effective_many = first_waits
        first = asyncio.ensure_future(tracker.allowed_shared(Request(ip="", visitor="x" * 20)))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        ledger.effective_many = real
        others = asyncio.gather(*(tracker.allowed_shared(r) for r in requests))
        await asyncio.sleep(0.05)
        assert reads == []  # nothing read while the first read runs
        release.set()
        await first
        return await others

    reads = _consent_reads(engine)
    assert asyncio.run(together()) == expected
    # one query per (jurisdiction, GPC) asked for: the default, us_ca with GPC, us_ca
    assert len(reads) == 4  # the first miss's, then 3 for all the others
    reads.clear()
    assert asyncio.run(together()) == expected  # from the cache: no read at all
    assert reads == []


def test_shared_reads_keep_the_staleness_bound_and_see_this_workers_changes(engine, seed, tmp_path):
    from troth.tracking.tracker import Request

    tracker = _tracker(engine, seed, tmp_path, cache_seconds=0.3)
    ledger = tracker.ledger
    v = "visitor-stale-abcdefghij"
    person = Request(ip="203.0.113.9", visitor=v)

    async def allowed():
        return (await asyncio.gather(tracker.allowed_shared(person)))[0]

    assert "analytics" not in asyncio.run(allowed())
    _choose(ledger, v, analytics="given")  # by another worker: this one is not told
    assert "analytics" not in asyncio.run(allowed())  # cached, for at most cache_seconds
    time.sleep(0.35)
    assert "analytics" in asyncio.run(allowed())
    _choose(ledger, v, analytics="refused")  # by this worker: seen at once
    tracker.forget(v)
    assert "analytics" not in asyncio.run(allowed())


def test_a_failed_shared_read_fails_every_request_in_it_and_the_next_reads_again(
    engine, seed, tmp_path
):
    from troth.tracking.tracker import Request

    tracker = _tracker(engine, seed, tmp_path)
    ledger = tracker.ledger
    real = ledger.effective_many
    calls: list[int] = []
    started, release = threading.Event(), threading.Event()

    def second_fails(hashes, jurisdiction=None, gpc=False):
        calls.append(len(list(hashes)))
        if len(calls) == 1:  # a first read, running while the others arrive
            started.set()
            release.wait(10)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(hashes, jurisdiction, gpc)

    ledger.effective_many = second_fails
    people = [Request(ip="", visitor=f"visitor-{i:02d}-abcdefghij") for i in range(5)]

    async def together():
        first = asyncio.ensure_future(tracker.allowed_shared(Request(ip="", visitor="x" * 20)))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        others = asyncio.gather(
            *(tracker.allowed_shared(r) for r in people), return_exceptions=True
        )
        await asyncio.sleep(0.05)
        release.set()
        await first
        return await others

    failed = asyncio.run(together())
    assert len(failed) == 5
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert all(tracker.cached(r) is None for r in people)  # a failure is not remembered

    async def again():
        return await asyncio.gather(*(tracker.allowed_shared(r) for r in people))

    for allowed in asyncio.run(again()):
        assert "analytics" not in allowed  # undecided under the default (opt-in) jurisdiction
    assert calls[:2] == [1, 5]
    assert sum(calls[2:]) == 5
