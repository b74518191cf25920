"""Benchmark: audit-log appends and verification, on SQLite and on PostgreSQL.

Each append figure is a ratio against plain ``INSERT``s of equivalent rows (the same seven
columns and values of the same sizes) into a scratch table of the same shape, measured in
the same run, on the same engine (``troth.store.engine.make_engine``: SQLite WAL with
synchronous=FULL; PostgreSQL with fsync and synchronous_commit on), with the same
transaction pattern (``writing(engine).begin()``):
- batched: 100 events per transaction, ``AuditLog.append`` + ``take_head`` + ``publish``
  vs. one 100-row ``INSERT`` per transaction (goal: >= 0.5x);
- single: one event per transaction, the vault's pattern, ``AuditLog.record`` vs. one
  single-row ``INSERT`` per transaction (reported; the same goal is shown for comparison).
Events name one of 1,000 subjects whose data keys exist already, with small details (a
vault decision or a consent change), as the service writes them.

Verify: a fresh log of 1,000,000 entries, written through ``AuditLog.append`` in
transactions of 10,000 events (one signed head each), then ``AuditLog.verify`` is timed
(no goal: time and entries/s are reported). To write it quickly the fill's keyring
memoises ``subject_ref`` (the same pseudonym the product computes, without its per-event
key lookup); everything else is the product's own code path, so the heads are genuine.
Signed heads are also checked on their own (``read_heads`` over the heads file of the
append runs, which has one head per transaction) to show what a log written one event per
transaction costs to verify.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Column, Connection, Engine, MetaData, Table, insert

from _support import BenchError, log, postgres_cluster, print_table
from troth.audit.log import AuditEvent, AuditLog, read_heads
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.keyring.signing import canonical
from troth.store.engine import make_engine, writing
from troth.store.migrate import upgrade
from troth.store.tables import audit_entries

BATCH = 100  # events per transaction, batched pattern
BATCH_TX = 60  # transactions per measured round, batched pattern
SINGLE_TX = 400  # transactions per measured round, single-event pattern
ROUNDS = 3  # interleaved rounds of troth and baseline; each figure is the best round
SUBJECTS = 1_000  # subjects the append events name (their data keys exist already)
VERIFY_ENTRIES = 1_000_000
FILL_BATCH = 10_000  # events per transaction while filling the log for verify
FILL_SUBJECTS = 10_000
APPEND_GOAL = 0.5


# --- appends ------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_details(i: int) -> dict[str, object]:
    if i % 2:
        return {
            "operation": "vault.read",
            "purpose": "provide_service",
            "categories": ["account"],
            "rule": "allowed",
            "activities": ["metered_plan"],
        }
    return {"receipt": f"{i:08d}-4f1c-4b8e-9a31-0c2d5e6f7a8b", "method": "banner_custom"}


def make_event(subject: str, i: int) -> AuditEvent:
    if i % 2:
        return AuditEvent("vault.read", "service", subject, event_details(i))
    return AuditEvent("consent.changed", "api", subject, event_details(i))


class Plain:
    """Plain INSERTs of rows shaped like audit entries into a same-shaped scratch table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        columns = [
            Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False,
                   nullable=c.nullable)
            for c in audit_entries.columns
        ]  # fmt: skip
        self.table = Table("bench_audit_plain", MetaData(), *columns)
        self.table.metadata.create_all(engine)
        self.insert = insert(self.table)
        self.seq = 0
        # values of the same sizes as the log's: a 64-hex pseudonym per subject, a 64-hex
        # leaf hash per row, the same canonical details
        self.refs = [os.urandom(32).hex() for _ in range(SUBJECTS)]
        self.leaves = [os.urandom(32).hex() for _ in range(4096)]
        self.details = [canonical(event_details(i)).decode() for i in range(2)]

    def rows(self, count: int) -> list[dict[str, object]]:
        at = _now()
        out = []
        for _ in range(count):
            seq = self.seq
            self.seq += 1
            odd = seq % 2
            out.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": "service" if odd else "api",
                    "action": "vault.read" if odd else "consent.changed",
                    "subject_ref": self.refs[seq % SUBJECTS],
                    "details": self.details[odd],
                    "leaf_hash": self.leaves[seq % 4096],
                }
            )
        return out

    def transactions(self, count: int, per: int) -> int:
        for _ in range(count):
            with writing(self.engine).begin() as conn:
                conn.execute(self.insert, self.rows(per))
        return count * per


class Appender:
    """The product: AuditLog.append + take_head in the transaction, publish after it."""

    def __init__(self, engine: Engine, audit: AuditLog, subjects: list[str]) -> None:
        self.engine = engine
        self.audit = audit
        self.subjects = subjects
        self.n = 0

    def events(self, count: int) -> list[AuditEvent]:
        out = []
        for _ in range(count):
            out.append(make_event(self.subjects[self.n % len(self.subjects)], self.n))
            self.n += 1
        return out

    def transactions(self, count: int, per: int) -> int:
        for _ in range(count):
            events = self.events(per)
            with writing(self.engine).begin() as conn:
                self.audit.append(conn, events)
                head = self.audit.take_head(conn)
            self.audit.publish(head)
        return count * per

    def records(self, count: int) -> int:
        """One event per transaction through AuditLog.record (what the vault does)."""
        for _ in range(count):
            self.audit.record(self.engine, self.events(1))
        return count


def timed(fn: Callable[[int], int], transactions: int) -> float:
    """Events per second of ``fn(transactions)``."""
    start = time.perf_counter()
    n = fn(transactions)
    return n / (time.perf_counter() - start)


@dataclass
class Pair:
    troth: list[float]
    plain: list[float]

    @property
    def ratio(self) -> float:
        return max(self.troth) / max(self.plain)

    def spread(self) -> str:
        return (
            "troth " + "/".join(f"{r:,.0f}" for r in self.troth)
            + ", plain " + "/".join(f"{r:,.0f}" for r in self.plain)
        )  # fmt: skip


def subject_hashes(count: int) -> list[str]:
    return [os.urandom(32).hex() for _ in range(count)]


def create_keys(engine: Engine, keyring: Keyring, hashes: list[str], per_tx: int = 5000) -> None:
    for start in range(0, len(hashes), per_tx):
        with writing(engine).begin() as conn:
            for h in hashes[start : start + per_tx]:
                keyring.data_key(conn, h, create=True)


def append_bench(engine: Engine, audit: AuditLog) -> dict[str, Pair]:
    subjects = subject_hashes(SUBJECTS)
    create_keys(engine, audit.keyring, subjects)
    troth = Appender(engine, audit, subjects)
    plain = Plain(engine)
    # name: (troth, plain), each running n transactions and returning how many events
    kinds: dict[str, tuple[Callable[[int], int], Callable[[int], int], int]] = {
        "batch": (
            lambda n: troth.transactions(n, BATCH),
            lambda n: plain.transactions(n, BATCH),
            BATCH_TX,
        ),
        "single": (troth.records, lambda n: plain.transactions(n, 1), SINGLE_TX),
    }
    pairs = {name: Pair([], []) for name in kinds}
    for round_ in ["warm", *(str(i) for i in range(ROUNDS))]:
        for name, (troth_fn, plain_fn, count) in kinds.items():
            n = max(count // 5, 1) if round_ == "warm" else count
            t = timed(troth_fn, n)
            p = timed(plain_fn, n)
            if round_ != "warm":
                pairs[name].troth.append(t)
                pairs[name].plain.append(p)
            log(f"  {name} ({round_}): troth {t:,.0f}/s, plain {p:,.0f}/s")
    report = audit.verify(engine)
    if not report.ok:
        raise BenchError(f"the log written by the append runs does not verify: {report.problem}")
    return pairs


# --- verify -------------------------------------------------------------------------------


class MemoKeyring(Keyring):
    """The product's keyring, with ``subject_ref`` memoised for the fill: each subject's
    pseudonym is computed once by the product's own code, then reused."""

    def __init__(self, kek: LocalKEK) -> None:
        super().__init__(kek)
        self._refs: dict[str, str] = {}

    def subject_ref(self, conn: Connection, subject_hash: str) -> str:
        ref = self._refs.get(subject_hash)
        if ref is None:
            ref = self._refs[subject_hash] = super().subject_ref(conn, subject_hash)
        return ref


@dataclass
class VerifyResult:
    entries: int
    heads: int
    fill_seconds: float
    verify_seconds: float

    @property
    def rate(self) -> float:
        return self.entries / self.verify_seconds


def verify_bench(engine: Engine, heads_path: Path, entries: int) -> VerifyResult:
    key = Ed25519PrivateKey.generate()
    filler = AuditLog(MemoKeyring(LocalKEK(os.urandom(32))), key, heads_path)
    troth = Appender(engine, filler, subject_hashes(FILL_SUBJECTS))
    started = time.perf_counter()
    done = 0
    while done < entries:
        per = min(FILL_BATCH, entries - done)
        done += troth.transactions(1, per)
        if done % 200_000 == 0:
            log(f"  filled {done:,} entries ({time.perf_counter() - started:.0f}s)")
    fill = time.perf_counter() - started
    checker = AuditLog(Keyring(LocalKEK(os.urandom(32))), key, heads_path)
    started = time.perf_counter()
    report = checker.verify(engine)
    seconds = time.perf_counter() - started
    if not report.ok or report.size != entries or report.signed_size != entries:
        raise BenchError(f"verify of the filled log: {report.as_dict()}")
    return VerifyResult(entries, report.heads, fill, seconds)


def heads_rate(audit: AuditLog) -> tuple[int, float]:
    best = 0.0
    count = 0
    for _ in range(3):
        started = time.perf_counter()
        count = len(read_heads(audit.heads_path, audit.public))
        best = max(best, count / (time.perf_counter() - started))
    return count, best


# --- per engine ---------------------------------------------------------------------------


@dataclass
class EngineResult:
    engine: str
    pairs: dict[str, Pair]
    verify: VerifyResult
    heads: int
    heads_per_second: float


def run_engine(name: str, append_url: str, verify_url: str, work: Path) -> EngineResult:
    work.mkdir(parents=True, exist_ok=True)
    engine = make_engine(append_url)
    verify_engine = make_engine(verify_url)
    try:
        upgrade(engine)
        upgrade(verify_engine)
        audit = AuditLog(
            Keyring(LocalKEK(os.urandom(32))), Ed25519PrivateKey.generate(), work / "heads.jsonl"
        )
        log(f"{name}: appends")
        pairs = append_bench(engine, audit)
        heads, heads_per_second = heads_rate(audit)
        log(f"{name}: {heads:,} signed heads checked at {heads_per_second:,.0f}/s")
        log(f"{name}: filling {VERIFY_ENTRIES:,} entries for verify")
        result = verify_bench(verify_engine, work / "verify-heads.jsonl", VERIFY_ENTRIES)
        log(
            f"{name}: filled in {result.fill_seconds:.1f}s; verify {result.verify_seconds:.1f}s "
            f"({result.rate:,.0f} entries/s)"
        )
        return EngineResult(name, pairs, result, heads, heads_per_second)
    finally:
        engine.dispose()
        verify_engine.dispose()


# --- report -------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    troth: str
    baseline: str
    ratio: str
    goal: str
    met: str


def main() -> int:
    started = time.perf_counter()
    results: list[EngineResult] = []
    pg_about = ""
    with tempfile.TemporaryDirectory(prefix="troth-bench-audit-") as tmp_name:
        tmp = Path(tmp_name)
        results.append(
            run_engine(
                "SQLite",
                f"sqlite:///{tmp / 'append.db'}",
                f"sqlite:///{tmp / 'verify.db'}",
                tmp / "sqlite",
            )
        )
        pg_base = Path(tempfile.mkdtemp(prefix="troth-bench-pg-"))
        try:
            with postgres_cluster(pg_base, ("troth_append", "troth_verify")) as (urls, pg_about):
                results.append(run_engine("PostgreSQL", urls[0], urls[1], tmp / "pg"))
        finally:
            shutil.rmtree(pg_base, ignore_errors=True)

    rows: list[Row] = []
    for r in results:
        for kind, label in (("batch", f"{BATCH} events/tx"), ("single", "1 event/tx")):
            pair = r.pairs[kind]
            met = pair.ratio >= APPEND_GOAL
            rows.append(
                Row(
                    f"{r.engine} appends/s, {label}",
                    f"{max(pair.troth):,.0f}",
                    f"{max(pair.plain):,.0f}",
                    f"{pair.ratio:.2f}x",
                    f">= {APPEND_GOAL}x INSERT" + ("" if kind == "batch" else " (info)"),
                    ("yes" if met else "NO") if kind == "batch" else ("(yes)" if met else "(no)"),
                )
            )
        v = r.verify
        rows.append(
            Row(
                f"{r.engine} verify {v.entries:,} entries, entries/s",
                f"{v.rate:,.0f}",
                "—",
                "—",
                f"report ({v.verify_seconds:.1f} s)",
                "—",
            )
        )
        rows.append(
            Row(
                f"{r.engine} signed heads checked/s",
                f"{r.heads_per_second:,.0f}",
                "—",
                "—",
                "report",
                "—",
            )
        )

    print(f"bench/audit.py — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        "SQLite: WAL, synchronous=FULL; PostgreSQL: "
        + pg_about
        + "; heads file fsynced on every publish; files on "
        + tempfile.gettempdir()
    )
    print(
        f"appends: events over {SUBJECTS:,} subjects with data keys, small details; batched = "
        f"{BATCH_TX} transactions of {BATCH} events per round, single = {SINGLE_TX} "
        f"transactions of 1 event (AuditLog.record) per round; {ROUNDS} interleaved rounds "
        "after a warm-up (best round counts); plain = the same rows into a same-shaped table"
    )
    for r in results:
        print(
            f"{r.engine} rounds (/s): "
            + "; ".join(f"{kind}: {pair.spread()}" for kind, pair in r.pairs.items())
        )
        v = r.verify
        print(
            f"{r.engine} verify: {v.entries:,} entries under {v.heads:,} signed heads "
            f"({FILL_BATCH:,} events/transaction, {FILL_SUBJECTS:,} subjects), filled in "
            f"{v.fill_seconds:.1f} s, verified in {v.verify_seconds:.1f} s; heads: "
            f"{r.heads:,} heads of the append runs' file read and checked at "
            f"{r.heads_per_second:,.0f}/s, so a log of 1M single-event transactions would "
            f"spend ~{1_000_000 / r.heads_per_second:.0f} s on its heads alone"
        )
    print()
    widths = [46, 9, 9, 6, 28, 5]
    head = ("measure", "troth", "baseline", "ratio", "goal", "met")
    print_table(
        head,
        [(row.measure, row.troth, row.baseline, row.ratio, row.goal, row.met) for row in rows],
        widths,
    )
    print(f"\n(bench took {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench/audit.py failed: {exc}", file=sys.stderr)
        sys.exit(2)
