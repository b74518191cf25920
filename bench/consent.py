"""Benchmark: the consent API over HTTP, in-process cookie decisions, and the banner's size.

Each HTTP figure is a ratio against a bare endpoint (``GET /healthz``) of the same app, served
by the same ``troth serve`` process in the same run, with the same load generator settings:
- effective-consent reads, ``GET /api/consent/<subject>`` over 1,000 subjects that already
  have consent recorded (goal: >= 0.5x the bare endpoint);
- durable consent writes, ``POST /api/consent`` with a new subject on every request, each
  acknowledged only after its group commit returned (goal: >= 0.25x the bare endpoint);
both on SQLite (WAL, synchronous=FULL) and on a throwaway PostgreSQL cluster (fsync on,
synchronous_commit on). The load comes from ``wrk`` (Debian package) in a second process.

In process: "may this cookie be set?" (``tracking_for_name`` + ``Effective.allowed``) over
declared and undeclared names, on one thread (goal: >= 500,000 decisions/s).

Banner: ``gzip -9`` of banner.js + banner.css beside vanilla-cookieconsent 3.1.0 and klaro
0.7.22, fetched with ``npm pack`` in the same run (goal: smaller than each, and within the
6,144-byte budget of the banner's README).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from _support import BenchError, free_port, log, postgres_cluster, print_table
from troth.consent.ledger import CategoryState, Effective
from troth.policy.compiled import compile_policy
from troth.policy.loader import load_policy

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "seed-service" / "policy.yaml"
BANNER = ROOT / "src" / "troth" / "consent" / "banner"
TROTH_BIN = str(Path(sys.executable).with_name("troth"))

WORKERS = 1
THREADS = 2  # wrk threads
CONNECTIONS = 32  # bare endpoint and reads
WRITE_CONNECTIONS = 32  # writes (-c128 was no faster: the writer is CPU-bound per item, not per
# commit); the bare endpoint is measured again at this count if it differs
ROUNDS = 3  # interleaved rounds of bare, reads and writes; each figure is the best round
DURATION = 4  # seconds per measured wrk run
WARMUP = 2  # seconds of unmeasured load of each kind before the first round
READ_SUBJECTS = 1000
BANNER_BUDGET = 6144
COOKIECONSENT = "vanilla-cookieconsent@3.1.0"
KLARO = "klaro@0.7.22"

READ_LUA = """
local requests, n = {}, 0
function init(args)
  for i = 0, tonumber(args[2]) - 1 do
    requests[#requests + 1] = wrk.format("GET", string.format("/api/consent/%s%06d", args[1], i))
  end
end
function request()
  n = n % #requests + 1
  return requests[n]
end
"""

# ``tid`` is set per thread by setup(); each subject is unique across threads and runs.
WRITE_LUA = """
local threads, counter, tag = 0, 0, "x"
local headers = {["Content-Type"] = "application/json"}
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  tag = args[1]
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"subject":"%s-%02d-%010d","choices":{"analytics":"given","advertising":"refused"},'
    .. '"method":"banner_custom"}', tag, tid, counter)
  return wrk.format("POST", "/api/consent", headers, body)
end
"""


# --- processes ----------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(base: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster with one database; yields its URL."""
    with postgres_cluster(base, ("troth_bench",)) as (urls, _about):
        yield urls[0]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_server(
    policy: Path,
    database_url: str,
    workdir: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start `troth serve` on a free port and wait until it answers; stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out_path = workdir / f"serve-{port}.log"
    full_env = {**os.environ, "TROTH_KEYS_DIR": str(workdir / "keys"), **(env or {})}
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            [TROTH_BIN, "serve", str(policy), "--port", str(port),
             "--database-url", database_url, "--workers", str(workers)],
            cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=full_env,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, out_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchError(
                    f"troth serve exited with {process.returncode}:\n{server.output()}"
                )
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"troth serve did not start:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- wrk ----------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else None)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError("wrk is missing: install the Debian package (apt-get install -y wrk)")
    print("wrk was missing: installing it with `apt-get install -y wrk`", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, env=env)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env)
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, env=env)
    if done.returncode != 0 or shutil.which("wrk") is None:
        raise BenchError("could not install wrk: " + done.stderr.decode(errors="replace")[-500:])
    return str(shutil.which("wrk"))


@dataclass
class WrkResult:
    rps: float
    requests: int
    non_2xx: int
    socket_errors: int
    output: str
    server_cpu: float = 0.0  # seconds of CPU the troth server process used during the run

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0 and self.requests > 0

    def errors(self) -> str:
        return f"{self.non_2xx} non-2xx, {self.socket_errors} socket errors"


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    connections: int,
    duration: int,
    args: tuple[str, ...] = (),
) -> WrkResult:
    cmd = [wrk, f"-t{THREADS}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
           "-s", str(script), url, "--", *args]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = done.stdout + done.stderr
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in ", out, re.M)
    if done.returncode != 0 or rps is None or total is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        output=out,
    )


# --- the HTTP runs ------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_subject(i: int) -> str:
    return f"bench-read-{i:06d}"


async def populate(url: str, count: int) -> None:
    """Record consent for the read subjects, 32 requests in flight at a time."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            body = {
                "subject": read_subject(i),
                "choices": {"analytics": "given", "advertising": "refused"},
                "method": "banner_custom",
            }
            async with gate:
                response = await client.post("/api/consent", json=body)
            if response.status_code != 201:
                raise BenchError(f"pre-populating: {response.status_code} {response.text}")

        await asyncio.gather(*(one(i) for i in range(count)))


def check_consent(url: str, subject: str) -> None:
    response = httpx.get(f"{url}/api/consent/{subject}", timeout=10)
    categories = response.json().get("categories", {}) if response.status_code == 200 else {}
    analytics = categories.get("analytics", {}).get("status")
    advertising = categories.get("advertising", {}).get("status")
    if (analytics, advertising) != ("given", "refused"):
        raise BenchError(f"{subject}: consent not recorded: {response.status_code} {response.text}")


@dataclass
class Series:
    """Interleaved rounds of one kind of load; the figure is the best round."""

    runs: list[WrkResult]

    @property
    def rps(self) -> float:
        return max(r.rps for r in self.runs)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def clean(self) -> bool:
        return all(r.clean for r in self.runs)

    def errors(self) -> str:
        non_2xx = sum(r.non_2xx for r in self.runs)
        sockets = sum(r.socket_errors for r in self.runs)
        return f"{non_2xx} non-2xx, {sockets} socket errors"

    def spread(self) -> str:
        return "/".join(f"{r.rps:,.0f}" for r in self.runs)

    @property
    def cpu_per_request(self) -> float:
        """Microseconds of server CPU per request, over all rounds."""
        return sum(r.server_cpu for r in self.runs) / max(self.requests, 1) * 1e6


@dataclass
class HttpResults:
    engine: str
    series: dict[str, Series]


def http_bench(engine: str, database_url: str, workdir: Path, wrk: str) -> HttpResults:
    scripts = workdir / "lua"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "read.lua").write_text(READ_LUA)
    (scripts / "write.lua").write_text(WRITE_LUA)
    (scripts / "bare.lua").write_text("")
    # name: (path, script, connections, wrk script arguments for a round)
    kinds: dict[str, tuple[str, str, int, Callable[[str], tuple[str, ...]]]] = {
        "bare": ("/healthz", "bare.lua", CONNECTIONS, lambda _r: ()),
        "reads": ("/", "read.lua", CONNECTIONS, lambda _r: ("bench-read-", str(READ_SUBJECTS))),
        "writes": ("/", "write.lua", WRITE_CONNECTIONS, lambda r: (f"bench-write-{r}",)),
    }
    if WRITE_CONNECTIONS != CONNECTIONS:
        kinds["bare_write"] = ("/healthz", "bare.lua", WRITE_CONNECTIONS, lambda _r: ())
    env = {"TROTH_WRITE_RATE_PER_MINUTE": "100000000"}
    series: dict[str, Series] = {name: Series([]) for name in kinds}
    with running_server(SEED, database_url, workdir / "serve", workers=WORKERS, env=env) as srv:
        log(f"{engine}: troth serve at {srv.url}, {WORKERS} worker(s); pre-populating")
        started = time.perf_counter()
        asyncio.run(populate(srv.url, READ_SUBJECTS))
        check_consent(srv.url, read_subject(READ_SUBJECTS - 1))
        log(f"{engine}: {READ_SUBJECTS} subjects in {time.perf_counter() - started:.1f}s")
        for round_ in ["warm", *(str(i) for i in range(ROUNDS))]:
            for name, (path, script, conns, args) in kinds.items():
                cpu_before = process_cpu(srv.process.pid)
                result = run_wrk(
                    wrk,
                    srv.url + path,
                    scripts / script,
                    connections=conns,
                    duration=WARMUP if round_ == "warm" else DURATION,
                    args=args(round_),
                )
                if srv.process.poll() is not None:
                    raise BenchError(f"troth serve died during {name}:\n{srv.output()}")
                result.server_cpu = process_cpu(srv.process.pid) - cpu_before
                if round_ != "warm":
                    series[name].runs.append(result)
                log(f"{engine}: {name} ({round_}): {result.rps:,.0f} req/s, "
                    f"{result.requests} requests, {result.errors()}")  # fmt: skip
        # wrk calls request() once per thread before it starts sending (that request is never
        # sent), so the first subject each thread sends is its counter 2.
        for thread in range(1, THREADS + 1):
            check_consent(srv.url, f"bench-write-0-{thread:02d}-0000000002")
    if "bare_write" not in series:
        series["bare_write"] = series["bare"]
    return HttpResults(engine, series)


# --- in-process decisions -----------------------------------------------------------------


def decisions_per_second() -> tuple[float, int]:
    policy = load_policy(SEED).policy
    compiled = compile_policy(policy)
    categories = {c.id: c for c in policy.consent_categories}
    states = {
        "preferences": CategoryState("refused", False, policy_version=policy.version),
        "analytics": CategoryState("given", True, policy_version=policy.version),
        "advertising": CategoryState("refused", False, policy_version=policy.version),
        "email_marketing": CategoryState("undecided", False),
    }
    effective = Effective(
        jurisdiction="eu",
        categories={
            cid: CategoryState("given", True, required=True)
            if c.required
            else states.get(cid, CategoryState("undecided", False))
            for cid, c in categories.items()
        },
    )
    declared = [t.name or (t.pattern or "").replace("*", "G-4X2Y9Z") for t in policy.tracking]
    undeclared = ["_fbp", "PHPSESSID", "_hjid", "__cf_bm", "ajs_anonymous_id", "NID"]
    names = declared + undeclared
    if any(compiled.tracking_for_name(n) is None for n in declared) or any(
        compiled.tracking_for_name(n) is not None for n in undeclared
    ):
        raise BenchError("cookie names of the decision bench are not classified as expected")
    cycle = names * (200_000 // len(names))
    best = 0.0
    for _ in range(7):
        start = time.perf_counter()
        for name in cycle:
            tech = compiled.tracking_for_name(name)
            _allowed = tech is not None and effective.allowed(tech.category)
        best = max(best, len(cycle) / (time.perf_counter() - start))
    return best, len(names)


# --- banner size --------------------------------------------------------------------------


def gz(*parts: bytes) -> int:
    return len(gzip.compress(b"".join(parts), 9))


def fetch_packages(tmp: Path) -> tuple[Path, Path, str]:
    """The two packages' roots, from ``npm pack`` (or the repo's node_modules as a fallback)."""
    npm = shutil.which("npm")
    reason = "npm is missing"
    if npm:
        try:
            done = subprocess.run(
                [npm, "pack", COOKIECONSENT, KLARO, "--silent"],
                cwd=tmp, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            reason = done.stderr.strip()[-300:]
            tarballs = {
                "cc": tmp / "vanilla-cookieconsent-3.1.0.tgz",
                "klaro": tmp / "klaro-0.7.22.tgz",
            }
            if done.returncode == 0 and all(p.exists() for p in tarballs.values()):
                roots = {}
                for key, path in tarballs.items():
                    target = tmp / key
                    with tarfile.open(path) as tar:
                        tar.extractall(target, filter="data")
                    roots[key] = target / "package"
                return roots["cc"], roots["klaro"], "npm pack (registry), extracted with tarfile"
        except (subprocess.TimeoutExpired, OSError, tarfile.TarError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
    cc, klaro = ROOT / "node_modules" / "vanilla-cookieconsent", ROOT / "node_modules" / "klaro"
    if not (cc.exists() and klaro.exists()):
        raise BenchError(f"npm pack failed ({reason}) and node_modules has no baselines")
    print(f"npm pack failed ({reason}): using the repo's node_modules/", flush=True)
    return cc, klaro, "node_modules/ (npm pack failed)"


@dataclass
class BannerSizes:
    troth: int
    troth_served: int
    cookieconsent: int
    klaro: int
    klaro_split: int
    source: str


def banner_sizes(tmp: Path, served: bytes) -> BannerSizes:
    cc_root, klaro_root, source = fetch_packages(tmp)
    for root, version in ((cc_root, "3.1.0"), (klaro_root, "0.7.22")):
        found = re.search(r'"version":\s*"([^"]+)"', (root / "package.json").read_text())
        if not found or found.group(1) != version:
            raise BenchError(f"{root}: expected version {version}")
    cc = gz(
        (cc_root / "dist" / "cookieconsent.umd.js").read_bytes(),
        (cc_root / "dist" / "cookieconsent.css").read_bytes(),
    )
    klaro = gz((klaro_root / "dist" / "klaro.js").read_bytes())
    klaro_split = gz(
        (klaro_root / "dist" / "klaro-no-css.js").read_bytes(),
        (klaro_root / "dist" / "klaro.min.css").read_bytes(),
    )
    troth = gz((BANNER / "banner.js").read_bytes(), (BANNER / "banner.css").read_bytes())
    return BannerSizes(troth, gz(served), cc, klaro, klaro_split, source)


# --- report -------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    troth: str
    baseline: str
    ratio: str
    goal: str
    met: bool


def main() -> int:
    started = time.perf_counter()
    wrk = ensure_wrk()
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    wrk_version = (version.stdout + version.stderr).split("\n")[0].split(" [")[0].strip()
    rows: list[Row] = []
    notes: list[str] = []

    decisions, n_names = decisions_per_second()
    log(f"decisions: {decisions:,.0f}/s")
    rows.append(
        Row(
            "in-process decisions/s",
            f"{decisions:,.0f}",
            "—",
            "—",
            ">= 500,000/s",
            decisions >= 500_000,
        )
    )

    http: list[HttpResults] = []
    served = b""
    with tempfile.TemporaryDirectory(prefix="troth-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sqlite = http_bench(
            "SQLite", f"sqlite:///{tmp / 'sqlite' / 'troth.db'}", tmp / "sqlite", wrk
        )
        http.append(sqlite)
        pg_base = Path(tempfile.mkdtemp(prefix="troth-bench-pg-"))
        try:
            with postgres_server(pg_base) as pg_url:
                http.append(http_bench("PostgreSQL", pg_url, tmp / "pg", wrk))
        finally:
            shutil.rmtree(pg_base, ignore_errors=True)
        with running_server(SEED, f"sqlite:///{tmp / 'banner.db'}", tmp / "banner") as srv:
            served = httpx.get(f"{srv.url}/troth/banner.js?lang=en", timeout=10).content
        (tmp / "npm").mkdir()
        sizes = banner_sizes(tmp / "npm", served)

    for result in http:
        for kind, label, goal in (("reads", "reads", 0.5), ("writes", "writes (durable)", 0.25)):
            measured = result.series[kind]
            bare = result.series["bare" if kind == "reads" else "bare_write"]
            ratio = measured.rps / bare.rps
            rows.append(
                Row(
                    f"{result.engine} {label} req/s",
                    f"{measured.rps:,.0f}",
                    f"{bare.rps:,.0f}",
                    f"{ratio:.2f}x",
                    f">= {goal}x bare",
                    ratio >= goal and measured.clean,
                )
            )
            if not measured.clean:
                notes.append(f"FLAGGED: {result.engine} {kind}: {measured.errors()}")
            if not bare.clean:
                notes.append(f"FLAGGED: {result.engine} bare endpoint: {bare.errors()}")
    for name, size in (
        ("vanilla-cookieconsent", sizes.cookieconsent),
        ("klaro", sizes.klaro),
    ):
        rows.append(
            Row(
                f"banner bytes (gzip -9) vs {name}",
                f"{sizes.troth:,}",
                f"{size:,}",
                f"{sizes.troth / size:.2f}x",
                f"< baseline, <= {BANNER_BUDGET:,}",
                sizes.troth < size and sizes.troth <= BANNER_BUDGET,
            )
        )

    print(
        f"bench/consent.py — seed policy, {os.cpu_count()} CPUs, troth serve with {WORKERS} worker"
    )
    print(
        f"load: {wrk_version} -t{THREADS}; {WARMUP}s warm-up of each, then {ROUNDS} interleaved "
        f"rounds of {DURATION}s each (best round counts); "
        f"bare endpoint GET /healthz and reads at -c{CONNECTIONS}, writes at "
        f"-c{WRITE_CONNECTIONS}; write rate limit 100,000,000/min"
    )
    print(
        "reads: GET /api/consent/<subject> cycling over "
        f"{READ_SUBJECTS:,} pre-populated subjects; writes: POST /api/consent, a new subject "
        "per request"
    )
    for result in http:
        parts = [
            f"{name} {sr.spread()} req/s ({sr.cpu_per_request:,.0f} µs server CPU/request), "
            f"{sr.requests:,} requests, {sr.errors()}"
            for name, sr in result.series.items()
            if name != "bare_write" or sr is not result.series["bare"]
        ]
        print(f"{result.engine} rounds: " + "; ".join(parts))
    print(
        "(req/s swings with whatever else runs on the machine; server CPU per request, read "
        "from /proc, much less so)"
    )
    print(
        f"decisions: tracking_for_name + Effective.allowed over {n_names} cookie names "
        "(declared, a pattern match, undeclared), one thread"
    )
    print(
        f"banner: troth banner.js + banner.css; vanilla-cookieconsent dist/cookieconsent.umd.js"
        f" + dist/cookieconsent.css; klaro dist/klaro.js (includes its CSS; klaro-no-css.js + "
        f"klaro.min.css would be {sizes.klaro_split:,}); baselines from {sizes.source}; "
        f"troth as served (/troth/banner.js?lang=en, with config and texts) is "
        f"{sizes.troth_served:,} bytes gzip -9"
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
    except BenchError as exc:
        print(f"bench/consent.py failed: {exc}", file=sys.stderr)
        sys.exit(2)
