"""Benchmark: vault put/get and data-key rotation, on SQLite and on PostgreSQL.

Each vault figure is a ratio against plain SQL on the same engine
(``troth.store.engine.make_engine``: SQLite WAL with synchronous=FULL; PostgreSQL with fsync
and synchronous_commit on), measured in the same run, one operation per transaction, on
one thread:
- ``Vault.put(subject, "account", value, purpose="provide_service")``, a new subject each
  time (so its data key is created), vs. a plain ``INSERT`` of the same subject, category
  and value bytes into a scratch table shaped like ``vault_values`` (goal: >= 0.3x);
- ``Vault.get(subject, ["account"], purpose="provide_service")`` over the subjects put so
  far vs. a plain ``SELECT`` of the same row by primary key (goal: >= 0.3x).
``provide_service`` uses ``account`` under contract, so the decision needs no consent: the
consent lookup returns an empty set. Every put and get is decided, audited (one entry, one
signed head fsynced to the heads file) and encrypted or decrypted, as in the service.

Rotation: 100,000 subjects' data keys (created through ``Keyring.data_key(...,
create=True)``, 10,000 per transaction), then ``Keyring.rotate`` under a new key-encryption
key, timed (what ``troth keys rotate`` runs); afterwards a keyring holding only the new KEK
must read back a value put earlier.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    select,
)

from _support import BenchError, log, postgres_cluster, print_table
from troth.audit.log import AuditLog
from troth.keyring.kek import LocalKEK
from troth.keyring.keys import Keyring
from troth.keyring.subjects import SubjectHasher
from troth.policy.compiled import compile_policy
from troth.policy.loader import load_policy
from troth.store.engine import make_engine, writing
from troth.store.migrate import upgrade
from troth.store.tables import audit_entries, subject_keys, vault_values
from troth.vault.vault import Vault

SEED = Path(__file__).resolve().parents[1] / "examples" / "seed-service" / "policy.yaml"
PURPOSE = "provide_service"
CATEGORY = "account"
VALUE = "Jane Q. Doe <jane.doe@example.com>"
ROUNDS = 3  # interleaved rounds of troth and baseline; each figure is the best round
PUTS = 300  # per round, troth and plain
GETS = 300  # per round, troth
PLAIN_GETS = 3000  # per round, plain (a plain SELECT is much faster: more of them, same time)
GOAL = 0.3
ROTATE_SUBJECTS = 100_000
KEYS_PER_TX = 10_000


# --- a throwaway PostgreSQL cluster (bench/_support.py) --------------------------------------


@contextlib.contextmanager
def postgres_server(base: Path) -> Iterator[tuple[str, str]]:
    """A throwaway cluster with one database; yields its URL and a line about the server."""
    with postgres_cluster(base, ("troth_bench",)) as (urls, about):
        yield urls[0], about


# --- put and get --------------------------------------------------------------------------


class Plain:
    """One plain INSERT or SELECT per transaction, in a table shaped like vault_values; and,
    to show the floor of any read that is logged durably, a SELECT plus an INSERT of a row
    shaped like an audit entry in one write transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        columns = [
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in vault_values.columns
        ]
        self.table = Table("bench_vault_plain", MetaData(), *columns)
        self.table.metadata.create_all(engine)
        self.insert = insert(self.table)
        t = self.table.c
        self.select = select(t.ciphertext).where(
            t.subject_hash == bindparam("s"), t.category == CATEGORY
        )
        log_columns = [
            Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False,
                   nullable=c.nullable)
            for c in audit_entries.columns
        ]  # fmt: skip
        self.log_table = Table("bench_vault_plain_log", MetaData(), *log_columns)
        self.log_table.metadata.create_all(engine)
        self.log_insert = insert(self.log_table)
        self.seq = 0
        self.details = (
            '{"activities":["metered_plan"],"categories":["account"],"operation":"vault.read",'
            '"purpose":"provide_service","rule":"allowed"}'
        )
        self.hex = os.urandom(32).hex()

    def put(self, subject: str) -> None:
        with writing(self.engine).begin() as conn:
            conn.execute(
                self.insert,
                {
                    "subject_hash": subject,
                    "category": CATEGORY,
                    "ciphertext": VALUE.encode(),
                    "updated_at": dt.datetime.now(dt.UTC),
                },
            )

    def get(self, subject: str) -> bytes | None:
        with self.engine.begin() as conn:
            return conn.execute(self.select, {"s": subject}).scalar_one_or_none()

    def logged_get(self, subject: str) -> bytes | None:
        with writing(self.engine).begin() as conn:
            value = conn.execute(self.select, {"s": subject}).scalar_one_or_none()
            self.seq += 1
            conn.execute(
                self.log_insert,
                {
                    "seq": self.seq,
                    "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "actor": "service",
                    "action": "vault.read",
                    "subject_ref": self.hex,
                    "details": self.details,
                    "leaf_hash": self.hex,
                },
            )
        return value


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


def per_second(fn: Callable[[str], object], subjects: list[str]) -> float:
    start = time.perf_counter()
    for subject in subjects:
        fn(subject)
    return len(subjects) / (time.perf_counter() - start)


SIGNING_KEY = Ed25519PrivateKey.generate()


def open_vault(engine: Engine, keyring: Keyring, work: Path, hasher: SubjectHasher) -> Vault:
    compiled = compile_policy(load_policy(SEED).policy)
    decision = compiled.decide(PURPOSE, [CATEGORY], ())
    if not decision.allowed:
        raise BenchError(f"the seed policy does not allow {PURPOSE}/{CATEGORY}: {decision}")
    audit = AuditLog(keyring, SIGNING_KEY, work / "heads.jsonl")
    return Vault(engine, compiled, hasher, keyring, audit, lambda _subject: frozenset())


def vault_bench(engine: Engine, vault: Vault) -> tuple[dict[str, Pair], list[str]]:
    plain = Plain(engine)
    pairs = {"put": Pair([], []), "get": Pair([], []), "get_logged": Pair([], [])}
    put_subjects: list[str] = []
    plain_subjects: list[str] = []

    def troth_put(subject: str) -> None:
        vault.put(subject, CATEGORY, VALUE, purpose=PURPOSE)

    def troth_get(subject: str) -> None:
        if vault.get(subject, [CATEGORY], purpose=PURPOSE)[CATEGORY] != VALUE:
            raise BenchError(f"vault.get({subject}) did not return the value put")

    def plain_get(subject: str) -> None:
        if plain.get(subject) != VALUE.encode():
            raise BenchError(f"plain SELECT of {subject} did not return the value inserted")

    def logged_get(subject: str) -> None:
        if plain.logged_get(subject) != VALUE.encode():
            raise BenchError(f"plain SELECT of {subject} did not return the value inserted")

    for round_ in ["warm", *(str(i) for i in range(ROUNDS))]:
        scale = 5 if round_ == "warm" else 1
        troth_new = [f"acct:bench-troth-{round_}-{i:08d}" for i in range(PUTS // scale)]
        plain_new = [f"acct:bench-plain-{round_}-{i:08d}" for i in range(PUTS // scale)]
        put_t = per_second(troth_put, troth_new)
        put_p = per_second(plain.put, plain_new)
        put_subjects += troth_new
        plain_subjects += plain_new
        troth_read = [put_subjects[i % len(put_subjects)] for i in range(GETS // scale)]
        plain_read = [plain_subjects[i % len(plain_subjects)] for i in range(PLAIN_GETS // scale)]
        get_t = per_second(troth_get, troth_read)
        get_p = per_second(plain_get, plain_read)
        get_l = per_second(logged_get, plain_read[: PUTS // scale])
        if round_ != "warm":
            pairs["put"].troth.append(put_t)
            pairs["put"].plain.append(put_p)
            pairs["get"].troth.append(get_t)
            pairs["get"].plain.append(get_p)
            pairs["get_logged"].troth.append(get_t)
            pairs["get_logged"].plain.append(get_l)
        log(
            f"  round {round_}: put troth {put_t:,.0f}/s, plain {put_p:,.0f}/s; "
            f"get troth {get_t:,.0f}/s, plain {get_p:,.0f}/s, plain SELECT+INSERT {get_l:,.0f}/s"
        )
    report = vault.audit.verify(engine)
    if not report.ok:
        raise BenchError(f"the audit log written by the vault does not verify: {report.problem}")
    return pairs, put_subjects


# --- rotation -----------------------------------------------------------------------------


@dataclass
class Rotation:
    keys: int
    create_seconds: float
    rotate_seconds: float


def rotate_bench(engine: Engine, vault: Vault, subject: str, work: Path) -> Rotation:
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(subject_keys)).scalar_one()
    started = time.perf_counter()
    missing = ROTATE_SUBJECTS - existing
    while missing > 0:
        with writing(engine).begin() as conn:
            for _ in range(min(KEYS_PER_TX, missing)):
                vault.keyring.data_key(conn, os.urandom(32).hex(), create=True)
                missing -= 1
    created = time.perf_counter() - started
    old = vault.keyring.kek
    rotated = Keyring(LocalKEK(os.urandom(32)), {old.id: old})
    started = time.perf_counter()
    count = rotated.rotate(engine)
    seconds = time.perf_counter() - started
    if count != ROTATE_SUBJECTS:
        raise BenchError(f"rotate re-wrapped {count} keys, expected {ROTATE_SUBJECTS}")
    # only the new KEK is loaded now: every key must open under it
    after = open_vault(engine, Keyring(rotated.kek), work, vault.hash)
    if after.get(subject, [CATEGORY], purpose=PURPOSE)[CATEGORY] != VALUE:
        raise BenchError("after rotation a value put earlier does not read back")
    report = after.audit.verify(engine)
    if not report.ok:
        raise BenchError(f"after rotation the audit log does not verify: {report.problem}")
    with engine.connect() as conn:
        left = conn.execute(
            select(func.count())
            .select_from(subject_keys)
            .where(subject_keys.c.kek_id != rotated.kek.id)
        ).scalar_one()
    if left:
        raise BenchError(f"after rotation {left} keys are still wrapped by the old KEK")
    return Rotation(count, created, seconds)


# --- per engine ---------------------------------------------------------------------------


@dataclass
class EngineResult:
    engine: str
    pairs: dict[str, Pair]
    rotation: Rotation


def run_engine(name: str, url: str, work: Path) -> EngineResult:
    work.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        upgrade(engine)
        keyring = Keyring(LocalKEK(os.urandom(32)))
        vault = open_vault(engine, keyring, work, SubjectHasher(os.urandom(32)))
        log(f"{name}: put/get")
        pairs, subjects = vault_bench(engine, vault)
        log(f"{name}: {ROTATE_SUBJECTS:,} subject keys, then rotate")
        rotation = rotate_bench(engine, vault, subjects[0], work)
        log(
            f"{name}: keys created in {rotation.create_seconds:.1f}s, "
            f"rotated in {rotation.rotate_seconds:.1f}s"
        )
        return EngineResult(name, pairs, rotation)
    finally:
        engine.dispose()


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
    with tempfile.TemporaryDirectory(prefix="troth-bench-vault-") as tmp_name:
        tmp = Path(tmp_name)
        results.append(run_engine("SQLite", f"sqlite:///{tmp / 'troth.db'}", tmp / "sqlite"))
        pg_base = Path(tempfile.mkdtemp(prefix="troth-bench-pg-"))
        try:
            with postgres_server(pg_base) as (url, pg_about):
                results.append(run_engine("PostgreSQL", url, tmp / "pg"))
        finally:
            shutil.rmtree(pg_base, ignore_errors=True)

    rows: list[Row] = []
    for r in results:
        for kind, label in (
            ("put", "vault.put/s vs INSERT"),
            ("get", "vault.get/s vs SELECT"),
            ("get_logged", "vault.get/s vs SELECT+INSERT"),
        ):
            pair = r.pairs[kind]
            met = pair.ratio >= GOAL
            info = kind == "get_logged"
            rows.append(
                Row(
                    f"{r.engine} {label}",
                    f"{max(pair.troth):,.0f}",
                    f"{max(pair.plain):,.0f}",
                    f"{pair.ratio:.2f}x",
                    f">= {GOAL}x plain SQL" + (" (info)" if info else ""),
                    ("(yes)" if met else "(no)") if info else ("yes" if met else "NO"),
                )
            )
        rot = r.rotation
        rows.append(
            Row(
                f"{r.engine} keys rotate, {rot.keys:,} keys, s",
                f"{rot.rotate_seconds:.1f}",
                "—",
                "—",
                f"report ({rot.keys / rot.rotate_seconds:,.0f} keys/s)",
                "—",
            )
        )

    print(f"bench/vault.py — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, one thread")
    print(
        "SQLite: WAL, synchronous=FULL; PostgreSQL: "
        + pg_about
        + "; audit heads file fsynced on every put and get; files on "
        + tempfile.gettempdir()
    )
    print(
        f"put: {PURPOSE}/{CATEGORY}, a {len(VALUE)}-byte value, a new subject each time; get: "
        f"the subjects put so far; {ROUNDS} interleaved rounds of {PUTS} puts and {GETS} gets "
        f"(plain: {PUTS} INSERTs, {PLAIN_GETS} SELECTs and {PUTS} SELECT+INSERTs) after a "
        "warm-up, best round counts; SELECT+INSERT = a plain read that also writes a row shaped "
        "like an audit entry in the same (durable) transaction: the floor for any audited read"
    )
    for r in results:
        rot = r.rotation
        print(
            f"{r.engine} rounds (/s): "
            + "; ".join(
                f"{kind}: {pair.spread()}" for kind, pair in r.pairs.items() if kind != "get_logged"
            )
            + "; get: plain SELECT+INSERT "
            + "/".join(f"{x:,.0f}" for x in r.pairs["get_logged"].plain)
            + f"; rotate: {rot.keys:,} keys created in {rot.create_seconds:.1f} s "
            f"({KEYS_PER_TX:,} per transaction), re-wrapped in {rot.rotate_seconds:.1f} s"
        )
    print()
    widths = [40, 7, 8, 6, 28, 5]
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
        print(f"bench/vault.py failed: {exc}", file=sys.stderr)
        sys.exit(2)
