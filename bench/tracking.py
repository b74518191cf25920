"""Benchmark: the tracking endpoints over HTTP, against a bare endpoint of the same app.

Each figure is a ratio against a bare endpoint (``GET /healthz``) served by the same
``troth serve`` process in the same run, with the same load generator settings
(goal: >= 0.5x the bare endpoint for each):
- pixel hits, ``GET /t/p/page_pixel.gif?c=bench`` with a ``troth_consent`` cookie cycling
  over 1,000 visitors whose consent to analytics is recorded (each hit kept in full);
- pixel hits without a cookie (each hit only counted in aggregate);
  ``page_pixel`` is best-effort: acknowledged at once, written in batches by a background
  flusher;
- beacon events, ``POST /t/e`` with one ``analytics_sdk`` event for one of those visitors
  (durable: acknowledged only once committed, concurrent ones share a group commit);
both on SQLite (WAL, synchronous=FULL) and on a throwaway PostgreSQL cluster (fsync on,
synchronous_commit on). The load comes from ``wrk`` (Debian package) in a second process.

After every run the database is read back: the rows the run left (events kept in full, or
aggregate counts) are compared with the 2xx answers wrk saw, once the flusher has caught up.

Helpers (servers, PostgreSQL cluster, wrk, rounds, report rows) come from ``bench/consent.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text

import consent as c
from _support import print_table

SEED = c.SEED
WORKERS = c.WORKERS
THREADS = c.THREADS  # wrk threads (run_wrk reads consent.THREADS)
CONNECTIONS = 32  # every kind of load, the bare endpoint included
ROUNDS = 3  # interleaved rounds of each kind; each figure is the best round
DURATION = 4  # seconds per measured wrk run
WARMUP = 2  # seconds of unmeasured load of each kind before the first round
VISITORS = 1000
VISITOR_PREFIX = "bench-visitor-"  # + 6 digits: 20 characters, a valid cookie visitor id
GOAL = 0.5
PIXEL_PATH = "/t/p/page_pixel.gif?c=bench"
COOKIE_CHOICES = "1.1.0.preferences:1:1~analytics:1:1~advertising:1:1"
DRAIN_POLL = 0.25  # seconds between reads of the database while the flusher catches up
DRAIN_STABLE = 0.75  # longer than the flusher's interval (0.5 s)
DRAIN_QUIET = 1.5  # give up waiting once nothing changed for this long
DRAIN_MAX = 4.0  # and in any case after this long

Key = tuple[str, ...]
FAILURE = re.compile(r"^troth: (.* failed \(|unexpected )")  # tracking_api._oops, app.py

PIXEL_LUA = f"""
local requests, n = {{}}, 0
function init(args)
  for i = 0, tonumber(args[2]) - 1 do
    local cookie = string.format("troth_consent=v1.%s%06d.{COOKIE_CHOICES}", args[1], i)
    requests[#requests + 1] = wrk.format("GET", "{PIXEL_PATH}", {{["Cookie"] = cookie}})
  end
end
function request()
  n = n % #requests + 1
  return requests[n]
end
"""

BEACON_LUA = """
local requests, n = {}, 0
function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for i = 0, tonumber(args[2]) - 1 do
    local body = string.format(
      '{"events":[{"tech":"analytics_sdk","name":"bench","page":"/x","props":{}}],'
      .. '"visitor":"%s%06d"}', args[1], i)
    requests[#requests + 1] = wrk.format("POST", "/t/e", headers, body)
  end
end
function request()
  n = n % #requests + 1
  return requests[n]
end
"""

# What each kind of run should leave in the database per 2xx answer, as keys of snapshot():
# the first is what is compared with the 2xx count; the others must move by as much (a hit
# kept in full is also counted in aggregate, as consent='given'); nothing else may move.
EXPECTED: dict[str, tuple[Key, ...]] = {
    "pixel": (("event", "page_pixel"), ("count", "page_pixel", "given")),
    "pixel_anon": (("count", "page_pixel", "none"),),
    "beacon": (("event", "analytics_sdk"), ("count", "analytics_sdk", "given")),
}
LABELS = {
    "pixel": "pixel hits/s (consent, kept in full)",
    "pixel_anon": "pixel hits/s (no cookie, counted)",
    "beacon": "beacon events/s (durable)",
}


def visitor(i: int) -> str:
    return f"{VISITOR_PREFIX}{i:06d}"


def consent_cookie(i: int) -> str:
    return f"v1.{visitor(i)}.{COOKIE_CHOICES}"


async def populate(url: str, count: int) -> None:
    """Record consent to analytics and advertising for the visitors, 32 requests in flight."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            body = {
                "subject": visitor(i),
                "choices": {"analytics": "given", "advertising": "given"},
                "method": "api",
            }
            async with gate:
                response = await client.post("/api/consent", json=body)
            if response.status_code != 201:
                raise c.BenchError(f"pre-populating: {response.status_code} {response.text}")

        await asyncio.gather(*(one(i) for i in range(count)))


# --- reading the database back ------------------------------------------------------------


def snapshot(engine: Engine) -> dict[Key, int]:
    """Rows of tracking_events per technology and aggregate counts per (technology, consent)."""
    with engine.connect() as conn:
        events = conn.execute(
            text("SELECT tech_id, count(*) FROM tracking_events GROUP BY tech_id")
        ).all()
        counts = conn.execute(
            text(
                "SELECT tech_id, consent, sum(count) FROM tracking_aggregates "
                "GROUP BY tech_id, consent"
            )
        ).all()
    found: dict[Key, int] = {("event", str(t)): int(n) for t, n in events}
    found.update({("count", str(t), str(s)): int(n) for t, s, n in counts})
    return found


def delta(after: dict[Key, int], before: dict[Key, int]) -> dict[Key, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def drain(engine: Engine, before: dict[Key, int], key: Key, answered: int) -> dict[Key, int]:
    """Wait until the run's rows are written: best-effort hits are flushed in batches every
    0.5 s, and the requests in flight when wrk stopped are still answered (and recorded)
    after it counted. Done once nothing moved for DRAIN_STABLE seconds and ``key`` reached
    ``answered``, or nothing moved for DRAIN_QUIET seconds, or after DRAIN_MAX seconds.
    Returns what changed since ``before``."""
    started = last_change = time.monotonic()
    current = snapshot(engine)
    while True:
        time.sleep(DRAIN_POLL)
        now = time.monotonic()
        previous, current = current, snapshot(engine)
        if current != previous:
            last_change = now
        quiet = now - last_change
        written = current.get(key, 0) - before.get(key, 0)
        if (
            (quiet >= DRAIN_STABLE and written >= answered)
            or quiet >= DRAIN_QUIET
            or now - started >= DRAIN_MAX
        ):
            return delta(current, before)


def check_tracking(url: str, engine: Engine) -> None:
    """One pixel hit with a consent cookie and one beacon event must be kept in full, and a
    pixel hit without a cookie counted; else the bench would measure the wrong path."""
    before = snapshot(engine)
    cookies = {"troth_consent": consent_cookie(VISITORS - 1)}
    with httpx.Client(base_url=url, timeout=10) as client:
        pixel = client.get(PIXEL_PATH, cookies=cookies)
        client.cookies.clear()
        anon = client.get(PIXEL_PATH)
        beacon = client.post(
            "/t/e",
            json={
                "events": [{"tech": "analytics_sdk", "name": "bench", "page": "/x", "props": {}}],
                "visitor": visitor(VISITORS - 1),
            },
        )
    if pixel.status_code != 200 or anon.status_code != 200 or beacon.status_code != 202:
        raise c.BenchError(
            f"tracking endpoints answered {pixel.status_code}/{anon.status_code}/"
            f"{beacon.status_code}: {beacon.text}"
        )
    if beacon.json().get("accepted") != 1:
        raise c.BenchError(f"beacon event not accepted in full: {beacon.text}")
    deadline = time.monotonic() + 5
    wanted = {keys[0]: 1 for keys in EXPECTED.values()}
    while True:
        changed = delta(snapshot(engine), before)
        if all(changed.get(k, 0) >= n for k, n in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise c.BenchError(f"tracking hits not recorded as expected: {changed}")
        time.sleep(0.2)


# --- the HTTP runs ------------------------------------------------------------------------


@dataclass
class Recorded:
    """The database read back after the measured runs of one kind."""

    answered: int = 0  # 2xx answers wrk saw
    written: int = 0  # the rows (or counts) the runs left where expected
    lost: int = 0  # sum over runs of answered - written, where positive
    beyond: int = 0  # sum over runs of written - answered, where positive (in flight at stop)
    elsewhere: dict[Key, int] = field(default_factory=dict)  # changes where none were expected

    def add(self, answered: int, changed: dict[Key, int], keys: tuple[Key, ...]) -> None:
        written = changed.get(keys[0], 0)
        self.answered += answered
        self.written += written
        self.lost += max(0, answered - written)
        self.beyond += max(0, written - answered)
        # the other expected keys must move by as much as the first; nothing else may move
        for k in sorted({*keys[1:], *changed}):
            moved = changed.get(k, 0)
            if k != keys[0] and (moved != written if k in keys else moved != 0):
                self.elsewhere[k] = self.elsewhere.get(k, 0) + moved - (written if k in keys else 0)

    def summary(self) -> str:
        text_ = f"{self.written:,} recorded for {self.answered:,} 2xx, {self.lost:,} lost"
        if self.beyond:
            text_ += f", {self.beyond:,} beyond (in flight when wrk stopped)"
        if self.elsewhere:
            text_ += ", unexpected changes: " + ", ".join(
                f"{'/'.join(k)} {n:+,}" for k, n in sorted(self.elsewhere.items())
            )
        return text_


@dataclass
class HttpResults:
    engine: str
    series: dict[str, c.Series]
    recorded: dict[str, Recorded]
    failures: list[str]  # "troth: ... failed" lines in the server's output


def http_bench(engine: str, database_url: str, workdir: Path, wrk: str) -> HttpResults:
    scripts = workdir / "lua"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "pixel.lua").write_text(PIXEL_LUA)
    (scripts / "beacon.lua").write_text(BEACON_LUA)
    (scripts / "bare.lua").write_text("")
    visitors = (VISITOR_PREFIX, str(VISITORS))
    # name: (path, script, wrk script arguments)
    kinds: dict[str, tuple[str, str, Callable[[], tuple[str, ...]]]] = {
        "bare": ("/healthz", "bare.lua", lambda: ()),
        "pixel": ("/", "pixel.lua", lambda: visitors),
        "pixel_anon": (PIXEL_PATH, "bare.lua", lambda: ()),
        "beacon": ("/", "beacon.lua", lambda: visitors),
    }
    env = {
        "TROTH_WRITE_RATE_PER_MINUTE": "100000000",
        "TROTH_TRACKING_RATE_PER_MINUTE": "100000000",
    }
    series: dict[str, c.Series] = {name: c.Series([]) for name in kinds}
    recorded = {name: Recorded() for name in EXPECTED}
    serve_dir = workdir / "serve"
    with c.running_server(SEED, database_url, serve_dir, workers=WORKERS, env=env) as srv:
        db = create_engine(database_url)
        try:
            c.log(f"{engine}: troth serve at {srv.url}, {WORKERS} worker(s); pre-populating")
            started = time.perf_counter()
            asyncio.run(populate(srv.url, VISITORS))
            check_tracking(srv.url, db)
            c.log(f"{engine}: {VISITORS} visitors in {time.perf_counter() - started:.1f}s")
            for round_ in ["warm", *(str(i) for i in range(ROUNDS))]:
                for name, (path, script, args) in kinds.items():
                    before = snapshot(db) if name in EXPECTED else {}
                    cpu_before = c.process_cpu(srv.process.pid)
                    result = c.run_wrk(
                        wrk,
                        srv.url + path,
                        scripts / script,
                        connections=CONNECTIONS,
                        duration=WARMUP if round_ == "warm" else DURATION,
                        args=args(),
                    )
                    if srv.process.poll() is not None:
                        raise c.BenchError(f"troth serve died during {name}:\n{srv.output()}")
                    written = ""
                    if name in EXPECTED:
                        # the flush after the run is part of the run's cost
                        answered = result.requests - result.non_2xx
                        changed = drain(db, before, EXPECTED[name][0], answered)
                        if round_ != "warm":
                            recorded[name].add(answered, changed, EXPECTED[name])
                        written = f", {changed.get(EXPECTED[name][0], 0)} recorded"
                    result.server_cpu = c.process_cpu(srv.process.pid) - cpu_before
                    if round_ != "warm":
                        series[name].runs.append(result)
                    c.log(f"{engine}: {name} ({round_}): {result.rps:,.0f} req/s, "
                          f"{result.requests} requests, {result.errors()}{written}")  # fmt: skip
        finally:
            db.dispose()
    failures = [line for line in srv.output().splitlines() if FAILURE.match(line)]
    return HttpResults(engine, series, recorded, failures)


# --- report -------------------------------------------------------------------------------


def main() -> int:
    started = time.perf_counter()
    wrk = c.ensure_wrk()
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    wrk_version = (version.stdout + version.stderr).split("\n")[0].split(" [")[0].strip()
    rows: list[c.Row] = []
    notes: list[str] = []

    http: list[HttpResults] = []
    with tempfile.TemporaryDirectory(prefix="troth-bench-") as tmp_name:
        tmp = Path(tmp_name)
        http.append(
            http_bench("SQLite", f"sqlite:///{tmp / 'sqlite' / 'troth.db'}", tmp / "sqlite", wrk)
        )
        pg_base = Path(tempfile.mkdtemp(prefix="troth-bench-pg-"))
        try:
            with c.postgres_server(pg_base) as pg_url:
                http.append(http_bench("PostgreSQL", pg_url, tmp / "pg", wrk))
        finally:
            shutil.rmtree(pg_base, ignore_errors=True)

    for result in http:
        bare = result.series["bare"]
        if not bare.clean:
            notes.append(f"FLAGGED: {result.engine} bare endpoint: {bare.errors()}")
        for kind, label in LABELS.items():
            measured = result.series[kind]
            kept = result.recorded[kind]
            ratio = measured.rps / bare.rps
            rows.append(
                c.Row(
                    f"{result.engine} {label}",
                    f"{measured.rps:,.0f}",
                    f"{bare.rps:,.0f}",
                    f"{ratio:.2f}x",
                    f">= {GOAL}x bare",
                    ratio >= GOAL and measured.clean and kept.lost == 0 and not kept.elsewhere,
                )
            )
            if not measured.clean:
                notes.append(f"FLAGGED: {result.engine} {kind}: {measured.errors()}")
            if kept.lost or kept.elsewhere:
                notes.append(f"FLAGGED: {result.engine} {kind}: {kept.summary()}")
        if result.failures:
            first = "; ".join(sorted(set(result.failures))[:3])
            notes.append(
                f"FLAGGED: {result.engine}: the server logged {len(result.failures)} failure(s): "
                + first
            )

    print(
        f"bench/tracking.py — seed policy, {os.cpu_count()} CPUs, troth serve with {WORKERS} worker"
    )
    print(
        f"load: {wrk_version} -t{THREADS} -c{CONNECTIONS}; {WARMUP}s warm-up of each, then "
        f"{ROUNDS} interleaved rounds of {DURATION}s each (best round counts); bare endpoint "
        "GET /healthz; write rate limit 100,000,000/min"
    )
    print(
        f"pixel: GET {PIXEL_PATH} (page_pixel, best-effort) with a troth_consent cookie cycling "
        f"over {VISITORS:,} visitors with recorded consent, and without a cookie; beacon: POST "
        "/t/e with one analytics_sdk event (durable) for one of those visitors per request"
    )
    for result in http:
        parts = [
            f"{name} {sr.spread()} req/s ({sr.cpu_per_request:,.0f} µs server CPU/request), "
            f"{sr.requests:,} requests, {sr.errors()}"
            for name, sr in result.series.items()
        ]
        print(f"{result.engine} rounds: " + "; ".join(parts))
        read_back = "; ".join(f"{kind} {rec.summary()}" for kind, rec in result.recorded.items())
        print(f"{result.engine} read back: {read_back}")
    print(
        "(read back: rows in tracking_events for hits kept in full, tracking_aggregates "
        "consent='none' for the cookie-less pixel, per measured run once the flusher caught "
        "up; server CPU per request includes that flush; req/s swings with whatever else runs "
        "on the machine, server CPU per request much less so)"
    )
    print()
    widths = [47, 10, 10, 7, 24, 3]
    head = ("measure", "troth", "baseline", "ratio", "goal", "met")
    cells = [
        (r.measure, r.troth, r.baseline, r.ratio, r.goal, "yes" if r.met else "NO") for r in rows
    ]
    print_table(head, cells, widths)
    for note in notes:
        print(note)
    print(f"\n(bench took {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except c.BenchError as exc:
        print(f"bench/tracking.py failed: {exc}", file=sys.stderr)
        sys.exit(2)
