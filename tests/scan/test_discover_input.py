"""`troth discover` on database URLs it cannot use: exit 2 with one clear line, never a
traceback, and never the password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from troth.scan.discover import discover_database

TROTH = str(Path(sys.executable).with_name("troth"))


def discover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TROTH, "discover", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg2://u:s3cret@127.0.0.1:1/db",
            "'postgresql+psycopg2://u:***@127.0.0.1:1/db': driver postgresql+psycopg2 is not "
            "installed (Python module 'psycopg2')",
        ),
        ("oracle://u:s3cret@db.example/db", "driver oracle+oracledb is not installed"),
        ("mssql+pyodbc://u:s3cret@db.example/db", "driver mssql+pyodbc is not installed"),
        ("sqlite+aiosqlite:///x.db", "driver sqlite+aiosqlite is not installed"),
    ],
)
def test_a_driver_that_is_not_installed_is_named(url: str, message: str) -> None:
    result = discover(url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "s3cret" not in result.stderr + result.stdout


def test_suggestion_quotes_odd_table_and_column_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text('CREATE TABLE "odd: table" ("e-mail #1" VARCHAR(254))'))
        conn.execute(
            text('INSERT INTO "odd: table" VALUES (:e)'),
            [{"e": f"person{i}@mail.example"} for i in range(5)],
        )
    engine.dispose()
    report = discover_database(url)
    assert [f.subject for f in report.findings] == ["odd: table.e-mail #1"]
    suggestion = yaml.safe_load(report.findings[0].suggestion or "")
    assert suggestion["tables"] == {"odd: table": {"fields": {"e-mail #1": {"category": "TODO"}}}}


def test_an_in_memory_sqlite_database_is_refused() -> None:
    result = discover("sqlite://")
    assert result.returncode == 2
    assert "DATABASE_URL: 'sqlite://' is a new in-memory SQLite database" in result.stderr
    assert "Traceback" not in result.stderr
