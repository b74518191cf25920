"""Benchmark: the rights engine vs. hand-written SQL, on SQLite and on PostgreSQL.

A generated service database of 1,000,000 subjects over 6 related tables (accounts,
devices, subscriptions, usage records, threat events by device id, invoices kept for tax
law with their e-mail and account link nulled on erasure) — about 6.5 million rows, made in
the database in chunks (a progress bar on stderr), indexes built afterwards. Then, each as a
ratio of the engine's time to hand-written SQL doing the same work in the same run (goal
<= 1.5x):

- access of one subject by e-mail: ``RightsEngine.access`` (breadth-first discovery over the
  annotations) vs. six SELECTs that a developer would write for this schema;
- erasure of one subject: ``RightsEngine.erase`` (discovery, plan, one transaction) vs. the
  same deletes and updates in one transaction, written by hand;
- a batch of 1,000 erasures: one ``erase`` call with 1,000 e-mails (batched IN lists) vs.
  the same set-based SQL in one transaction.

Subjects are different in every round (an erased subject cannot be erased twice); engine
and baseline alternate, and the median over rounds counts.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

from _support import BenchError, log, postgres_cluster, print_table
from troth.policy.datasets import parse_datasets
from troth.policy.loader import load_policy
from troth.rights.connectors import open_connectors
from troth.rights.engine import RightsEngine

SEED = Path(__file__).resolve().parents[1] / "examples" / "seed-service" / "policy.yaml"
SUBJECTS = int(os.environ.get("BENCH_RIGHTS_SUBJECTS", "1000000"))
CHUNK = 50_000
ROUNDS_ONE = 60  # single-subject access and erasure: rounds
BATCH = 1_000
ROUNDS_BATCH = 3
GOAL = 1.5

DDL = [
    "CREATE TABLE accounts (id BIGINT PRIMARY KEY, email VARCHAR(254) NOT NULL, "
    "name VARCHAR(200), phone VARCHAR(32), created_at VARCHAR(32) NOT NULL)",
    "CREATE TABLE devices (id BIGINT PRIMARY KEY, account_id BIGINT NOT NULL, "
    "device_uid VARCHAR(64) NOT NULL, os VARCHAR(40))",
    "CREATE TABLE subscriptions (id BIGINT PRIMARY KEY, account_id BIGINT NOT NULL, "
    "plan VARCHAR(20) NOT NULL, billing_address VARCHAR(300))",
    "CREATE TABLE usage_records (id BIGINT PRIMARY KEY, subscription_id BIGINT NOT NULL, "
    "period VARCHAR(7) NOT NULL, megabytes BIGINT NOT NULL)",
    "CREATE TABLE threat_events (id BIGINT PRIMARY KEY, device_uid VARCHAR(64) NOT NULL, "
    "item VARCHAR(200) NOT NULL)",
    "CREATE TABLE invoices (id BIGINT PRIMARY KEY, account_id BIGINT, email VARCHAR(254), "
    "amount_cents BIGINT NOT NULL, customer_name VARCHAR(200))",
]
INDEXES = [
    "CREATE UNIQUE INDEX ix_accounts_email ON accounts (email)",
    "CREATE INDEX ix_devices_account_id ON devices (account_id)",
    "CREATE UNIQUE INDEX ix_devices_device_uid ON devices (device_uid)",
    "CREATE INDEX ix_subscriptions_account_id ON subscriptions (account_id)",
    "CREATE INDEX ix_usage_records_subscription_id ON usage_records (subscription_id)",
    "CREATE INDEX ix_threat_events_device_uid ON threat_events (device_uid)",
    "CREATE INDEX ix_invoices_account_id ON invoices (account_id)",
    "CREATE INDEX ix_invoices_email ON invoices (email)",
]
# {ids} is the chunk's range of subject numbers, as rows of one column "i"
FILL = {
    "accounts": "INSERT INTO accounts SELECT i, 'user' || i || '@example.net', "
    "'Person ' || i, '+49 30 ' || i, '2025-01-01T00:00:00Z' FROM {ids}",
    "devices": "INSERT INTO devices SELECT i, i, 'dev-' || i, 'Android 14' FROM {ids}",
    "subscriptions": "INSERT INTO subscriptions SELECT i, i, 'basic', "
    "i || ' Example Street, Berlin' FROM {ids}",
    "usage_records": "INSERT INTO usage_records SELECT 2 * i, i, '2026-01', i % 90000 FROM {ids} "
    "UNION ALL SELECT 2 * i + 1, i, '2026-02', i % 70000 FROM {ids}",
    "threat_events": "INSERT INTO threat_events SELECT i, 'dev-' || i, 'https://bad.example/' "
    "FROM {ids} WHERE i % 2 = 0",
    "invoices": "INSERT INTO invoices SELECT i, i, 'user' || i || '@example.net', 499, "
    "'Person ' || i FROM {ids}",
}
DATASETS = """
troth: 1
identities: [email, account_id, device_id]
datastores:
  - id: bench
    kind: {kind}
    url: ${{BENCH_URL}}
    tables:
      accounts:
        fields:
          id: {{identity: account_id}}
          email: {{category: account, identity: email}}
          name: {{category: account}}
          phone: {{category: contact}}
      devices:
        fields:
          device_uid: {{category: device, identity: device_id}}
          os: {{category: device}}
        references: {{account_id: accounts.id}}
      subscriptions:
        fields:
          plan: {{category: billing}}
          billing_address: {{category: billing}}
        references: {{account_id: accounts.id}}
      usage_records:
        fields:
          period: {{category: service_time}}
          megabytes: {{category: bandwidth_usage}}
        references: {{subscription_id: subscriptions.id}}
      threat_events:
        fields:
          device_uid: {{category: threat_events, identity: device_id}}
          item: {{category: threat_events}}
      invoices:
        erasure: keep
        reason: Invoices are kept for ten years (tax law).
        fields:
          account_id: {{identity: account_id, erasure: "null"}}
          email: {{category: contact, identity: email, erasure: "null"}}
          customer_name: {{category: billing}}
          amount_cents: {{category: billing}}
        references: {{account_id: accounts.id}}
"""


def _bar(done: int, total: int, started: float) -> None:
    width = 40
    filled = width * done // total
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stderr.write(
        f"\r[bench] generating [{'#' * filled}{'.' * (width - filled)}] "
        f"{done:,}/{total:,} subjects ({rate:,.0f}/s)"
    )
    sys.stderr.flush()


def generate(engine: Engine, subjects: int) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for statement in DDL:
            conn.execute(text(statement))
    started = time.perf_counter()
    for start in range(1, subjects + 1, CHUNK):
        end = min(start + CHUNK - 1, subjects)
        with engine.begin() as conn:
            for sql in FILL.values():
                if postgres:
                    ids = f"generate_series({start}, {end}) AS g(i)"
                    conn.execute(text(sql.format(ids=ids)))
                else:
                    cte = (
                        f"WITH RECURSIVE g(i) AS (SELECT {start} UNION ALL "
                        f"SELECT i + 1 FROM g WHERE i < {end}) "
                    )
                    conn.execute(text(cte + sql.format(ids="g")))
        _bar(end, subjects, started)
    sys.stderr.write("\n")
    log("building indexes")
    with engine.begin() as conn:
        for statement in INDEXES:
            conn.execute(text(statement))
        if postgres:
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))


# --- the hand-written baseline ---------------------------------------------------------------


def _ids(conn: Connection, sql: str, **params: Any) -> list[Any]:
    return [r[0] for r in conn.execute(text(sql), params)]


def hand_access(engine: Engine, email: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        out["accounts"] = list(
            conn.execute(
                text("SELECT id, email, name, phone FROM accounts WHERE email = :e"), {"e": email}
            ).mappings()
        )
        account_ids = [r["id"] for r in out["accounts"]]
        if not account_ids:
            return out
        a = {"a": account_ids[0]}
        out["devices"] = list(
            conn.execute(
                text("SELECT id, account_id, device_uid, os FROM devices WHERE account_id = :a"), a
            ).mappings()
        )
        out["subscriptions"] = list(
            conn.execute(
                text(
                    "SELECT id, account_id, plan, billing_address FROM subscriptions "
                    "WHERE account_id = :a"
                ),
                a,
            ).mappings()
        )
        subs = [r["id"] for r in out["subscriptions"]] or [-1]
        out["usage_records"] = list(
            conn.execute(
                text(
                    "SELECT id, subscription_id, period, megabytes FROM usage_records "
                    "WHERE subscription_id = :s"
                ),
                {"s": subs[0]},
            ).mappings()
        )
        uids = [r["device_uid"] for r in out["devices"]] or [""]
        out["threat_events"] = list(
            conn.execute(
                text("SELECT id, device_uid, item FROM threat_events WHERE device_uid = :u"),
                {"u": uids[0]},
            ).mappings()
        )
        out["invoices"] = list(
            conn.execute(
                text(
                    "SELECT id, account_id, email, customer_name, amount_cents FROM invoices "
                    "WHERE account_id = :a OR email = :e"
                ),
                {"a": account_ids[0], "e": email},
            ).mappings()
        )
    return out


def hand_erase(engine: Engine, emails: list[str]) -> None:
    """What a developer writes for this schema: find the ids, then delete children first."""
    with engine.begin() as conn:
        p = {f"e{i}": e for i, e in enumerate(emails)}
        in_emails = ", ".join(f":e{i}" for i in range(len(emails)))
        accounts = _ids(conn, f"SELECT id FROM accounts WHERE email IN ({in_emails})", **p)
        if accounts:
            in_acc = ", ".join(str(int(a)) for a in accounts)
            devices = conn.execute(
                text(f"SELECT id, device_uid FROM devices WHERE account_id IN ({in_acc})")
            ).all()
            subs = _ids(conn, f"SELECT id FROM subscriptions WHERE account_id IN ({in_acc})")
            if subs:
                in_subs = ", ".join(str(int(s)) for s in subs)
                conn.execute(
                    text(f"DELETE FROM usage_records WHERE subscription_id IN ({in_subs})")
                )
            if devices:
                q = {f"u{i}": d.device_uid for i, d in enumerate(devices)}
                in_uids = ", ".join(f":u{i}" for i in range(len(devices)))
                conn.execute(text(f"DELETE FROM threat_events WHERE device_uid IN ({in_uids})"), q)
            conn.execute(
                text(
                    "UPDATE invoices SET account_id = NULL, email = NULL "
                    f"WHERE account_id IN ({in_acc}) OR email IN ({in_emails})"
                ),
                p,
            )
            conn.execute(text(f"DELETE FROM subscriptions WHERE account_id IN ({in_acc})"))
            conn.execute(text(f"DELETE FROM devices WHERE account_id IN ({in_acc})"))
            conn.execute(text(f"DELETE FROM accounts WHERE id IN ({in_acc})"))


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Pair:
    troth: list[float]
    plain: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.troth) / statistics.median(self.plain)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_engine(name: str, url: str, kind: str) -> dict[str, Pair]:
    log(f"{name}: {SUBJECTS:,} subjects")
    raw = create_engine(url)
    generate(raw, SUBJECTS)
    policy = load_policy(SEED).policy
    datasets = parse_datasets(DATASETS.format(kind=kind), policy, "bench-datasets.yaml")
    connectors = open_connectors(datasets, urls={"bench": url})
    engine = RightsEngine(policy, datasets, connectors)
    baseline = connectors["bench"].engine  # type: ignore[attr-defined]  # same pool, same driver
    rnd = random.Random(7)
    pool = rnd.sample(range(1, SUBJECTS + 1), 4 * ROUNDS_ONE + 2 * ROUNDS_BATCH * BATCH + 20)

    def email(i: int) -> str:
        return f"user{i}@example.net"

    # the engine's answer is checked against the hand-written one before anything is timed
    probe = pool.pop()
    found = engine.access({"email": [email(probe)]})
    counts = {t: len(rows) for (_, t), rows in found.rows.items()}
    expected = {t: len(rows) for t, rows in hand_access(baseline, email(probe)).items() if rows}
    if counts != expected:
        raise BenchError(f"engine and baseline disagree: {counts} vs {expected}")
    for _ in range(5):  # warm-up
        i = pool.pop()
        engine.access({"email": [email(i)]})
        hand_access(baseline, email(i))

    pairs = {k: Pair([], []) for k in ("access", "erase", "batch")}
    for _ in range(ROUNDS_ONE):
        a, b = pool.pop(), pool.pop()
        pairs["access"].troth.append(timed(lambda a=a: engine.access({"email": [email(a)]})))
        pairs["access"].plain.append(timed(lambda b=b: hand_access(baseline, email(b))))
    for _ in range(ROUNDS_ONE):
        a, b = pool.pop(), pool.pop()
        pairs["erase"].troth.append(
            timed(lambda a=a: engine.erase({"email": [email(a)]}, "bench", actor="bench"))
        )
        pairs["erase"].plain.append(timed(lambda b=b: hand_erase(baseline, [email(b)])))
    # the engine's erasure left what the hand-written one leaves: nothing but kept invoices
    check = engine.verify_erasure({"email": [email(a)], "account_id": [str(a)]})
    if any(check.values()):
        raise BenchError(f"erasure left rows behind: {check}")
    for _ in range(ROUNDS_BATCH):
        mine = [email(pool.pop()) for _ in range(BATCH)]
        theirs = [email(pool.pop()) for _ in range(BATCH)]
        pairs["batch"].troth.append(
            timed(lambda m=mine: engine.erase({"email": m}, "bench", actor="bench"))
        )
        pairs["batch"].plain.append(timed(lambda t=theirs: hand_erase(baseline, t)))
    for c in connectors.values():
        c.close()
    raw.dispose()
    return pairs


def main() -> int:
    started = time.perf_counter()
    results: list[tuple[str, dict[str, Pair]]] = []
    pg_about = ""
    with tempfile.TemporaryDirectory(prefix="troth-bench-rights-") as tmp_name:
        tmp = Path(tmp_name)
        results.append(("SQLite", run_engine("SQLite", f"sqlite:///{tmp / 'svc.db'}", "sqlite")))
        pg_base = Path(tempfile.mkdtemp(prefix="troth-bench-pg-"))
        try:
            with postgres_cluster(pg_base, ("service",)) as (urls, pg_about):
                results.append(("PostgreSQL", run_engine("PostgreSQL", urls[0], "postgresql")))
        finally:
            shutil.rmtree(pg_base, ignore_errors=True)

    print(f"bench/rights.py — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, one thread")
    print(
        f"{SUBJECTS:,} subjects over 6 tables (~{6.5 * SUBJECTS / 1e6:.1f}M rows); SQLite "
        f"defaults (rollback journal, synchronous=FULL); PostgreSQL: {pg_about}; median of "
        f"{ROUNDS_ONE} rounds (one subject) and {ROUNDS_BATCH} rounds (batch of {BATCH:,}), "
        "a different subject every time, engine and hand-written SQL alternating"
    )
    print()
    widths = [38, 9, 9, 6, 9, 4]
    head = ("measure", "troth ms", "SQL ms", "ratio", "goal", "met")
    labels = {
        "access": "access of one subject",
        "erase": "erasure of one subject",
        "batch": f"batch of {BATCH:,} erasures",
    }
    table: list[tuple[str, ...]] = []
    for engine_name, pairs in results:
        for key, label in labels.items():
            pair = pairs[key]
            table.append(
                (
                    f"{engine_name} {label}",
                    f"{statistics.median(pair.troth) * 1000:.2f}",
                    f"{statistics.median(pair.plain) * 1000:.2f}",
                    f"{pair.ratio:.2f}x",
                    f"<= {GOAL}x",
                    "yes" if pair.ratio <= GOAL else "NO",
                )
            )
    print_table(head, table, widths)
    print(f"\n(bench took {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench/rights.py: {exc}", file=sys.stderr)
        sys.exit(2)
