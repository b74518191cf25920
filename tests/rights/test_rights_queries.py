"""The work of a request is proportional to the person's rows: every query the engine sends
is answered from an index (SQLite's query plan shows no full scan), each table is asked once
per round, and a thousand people are asked for in a few batched queries, not one by one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from rights.conftest import ALEX, World, make_db, new_service_database, write_datasets
from troth.policy.datasets import Datasets, load_datasets
from troth.policy.model import Policy
from troth.rights.connectors import open_connectors
from troth.rights.engine import RightsEngine


def _statements(engine: RightsEngine, run: Any) -> list[tuple[str, Any]]:
    sql_engine = engine.connectors["lumen"].engine  # type: ignore[attr-defined]
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        seen.append((statement, params))

    event.listen(sql_engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(sql_engine, "before_cursor_execute", record)
    # only the engine's own statements (not the driver's set-up or schema reflection)
    tables = {t.name for t in engine.datasets.store("lumen").tables}
    return [
        (s, p)
        for s, p in seen
        if " FROM " in s and s.split(" FROM ", 1)[1].split()[0].strip('"`') in tables
    ]


def test_no_query_scans_a_table(world: World) -> None:
    if world.kind != "sqlite":
        return  # the plan check below reads SQLite's EXPLAIN QUERY PLAN
    engine = world.engine()
    statements = _statements(
        engine, lambda: engine.erase({"email": [ALEX["email"]]}, "lumen", actor="t")
    )
    assert statements
    sql_engine = engine.connectors["lumen"].engine  # type: ignore[attr-defined]
    with sql_engine.connect() as conn:
        for statement, params in statements:
            if statement.startswith(("SELECT", "DELETE", "UPDATE")):
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                details = [str(row[-1]) for row in plan]
                assert not any(d.startswith("SCAN") for d in details), (statement, details)


def test_each_table_is_asked_once_per_round(world: World) -> None:
    engine = world.engine()
    statements = _statements(engine, lambda: engine.discover({"email": [ALEX["email"]]}))
    per_table = Counter(s.split(" FROM ", 1)[1].split()[0].strip('"`') for s, _ in statements)
    # round 1 reaches every table; round 2 asks again only where an identifier found in
    # round 1 could lead to more rows: accounts by the phone number (another account could
    # share it; e-mail and device ids are unique columns, so they are not asked again)
    assert per_table == {
        "accounts": 2,
        "devices": 1,
        "subscriptions": 1,
        "usage_records": 1,
        "threat_events": 1,
        "invoices": 1,
        "support_tickets": 1,
        "prospects": 1,
    }


def test_a_thousand_people_are_found_in_a_few_batched_queries(
    request: pytest.FixtureRequest, tmp_path: Path, seed_policy: Policy
) -> None:
    url = new_service_database("sqlite", request, tmp_path)
    make_db.build(url, accounts=1200)
    full = load_datasets(write_datasets(tmp_path, lambda d: None), seed_policy)
    lumen_only = Datasets(1, full.identities, [full.store("lumen")], full.path)
    connectors = open_connectors(lumen_only, urls={"lumen": url})
    engine = RightsEngine(seed_policy, lumen_only, connectors)
    emails = [f"user{i}@example.net" for i in range(2, 1002)]
    try:
        statements = _statements(engine, lambda: engine.discover({"email": emails}))
        found = engine.discover({"email": emails})
    finally:
        for c in connectors.values():
            c.close()
    assert len(found.rows[("lumen", "accounts")]) == 1000
    # values in batches of 500: a few queries per table and round (two or three rounds),
    # not one per person
    per_table = Counter(s.split(" FROM ", 1)[1].split()[0].strip('"`') for s, _ in statements)
    assert max(per_table.values()) <= 6, per_table
    assert len(statements) <= 30, per_table
