"""`troth check --datasets FILE --connect`: the annotations against the live schema, through
the command as a user runs it, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rights.conftest import ROOT, SEED_POLICY, make_db, new_service_database, write_datasets

TROTH = str(Path(sys.executable).with_name("troth"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TROTH, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def lumen(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    kind = str(request.param)
    url = new_service_database(kind, request, tmp_path)
    make_db.build(url, accounts=3)
    return kind, url


def test_the_example_annotations_match_the_example_database(
    lumen: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = lumen

    def to_kind(d: dict[str, Any]) -> None:
        d["datastores"][0]["kind"] = kind

    annotations = write_datasets(tmp_path, to_kind)
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations), "--connect",
            env={"LUMEN_DATABASE_URL": url})  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checked against the live schema (0 findings)" in r.stdout


def test_missing_tables_columns_and_indexes_are_errors_at_their_place(
    lumen: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = lumen

    def break_it(d: dict[str, Any]) -> None:
        store = d["datastores"][0]
        store["kind"] = kind
        tables = store["tables"]
        tables["accounts"]["fields"]["nickname"] = {"category": "account"}  # no such column
        tables["payments"] = {"fields": {"iban": {"category": "billing"}}}  # no such table
        # an identity and a reference column without an index
        tables["support_tickets"]["fields"]["subject"] = {
            "category": "communications",
            "identity": "email",
            "erasure": "mask",
        }
        tables["threat_events"]["references"] = {"ip_address": "usage_records.ip_address"}

    annotations = write_datasets(tmp_path, break_it)
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations), "--connect",
            env={"LUMEN_DATABASE_URL": url})  # fmt: skip

    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    findings = [x for x in r.stdout.splitlines() if " error R0" in x]
    assert len(findings) == 4, r.stdout
    expected = {
        "R003": (line_of(annotations, "nickname:"), "column 'nickname' does not exist"),
        "R002": (line_of(annotations, "payments:"), "table 'payments' does not exist"),
        "R004": (line_of(annotations, "subject:"), "identity column 'support_tickets.subject'"),
        "R005": (line_of(annotations, "ip_address: usage_records"), "reference column "),
    }
    for code, (line, message) in expected.items():
        finding = next(f for f in findings if f" error {code}: " in f)
        assert finding.startswith(f"{annotations}:{line}:"), finding
        assert message in finding


def test_an_unreachable_database_is_a_finding_without_credentials(tmp_path: Path) -> None:
    def elsewhere(d: dict[str, Any]) -> None:
        d["datastores"][0]["kind"] = "postgresql"

    annotations = write_datasets(tmp_path, elsewhere)
    secret = "s3cret-pass"
    url = f"postgresql://lumen:{secret}@127.0.0.1:1/lumen"
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations), "--connect",
            env={"LUMEN_DATABASE_URL": url})  # fmt: skip
    assert r.returncode == 1
    assert " error R001: cannot connect to datastore 'lumen'" in r.stdout
    assert secret not in r.stdout + r.stderr


def test_broken_annotations_exit_two_with_the_place(tmp_path: Path) -> None:
    def unknown(d: dict[str, Any]) -> None:
        d["datastores"][0]["tables"]["accounts"]["fields"]["email"]["category"] = "acount"

    annotations = write_datasets(tmp_path, unknown)
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations))
    assert r.returncode == 2
    line = line_of(annotations, "category: acount")
    assert f"{annotations}:{line}:" in r.stderr
    assert "unknown data category 'acount'" in r.stderr
    assert "did you mean 'account'?" in r.stderr


def test_missing_references_are_errors_at_the_table(lumen: tuple[str, str], tmp_path: Path) -> None:
    kind, url = lumen

    def forget(d: dict[str, Any]) -> None:
        store = d["datastores"][0]
        store["kind"] = kind
        tables = store["tables"]
        # prospects.referred_by -> accounts.id exists in the schema but is not declared
        del tables["prospects"]["references"]
        # a table the annotations leave out refers to a declared one (usage_records ->
        # devices); subscriptions goes too, as usage_records referred to it
        del tables["usage_records"]
        del tables["subscriptions"]

    annotations = write_datasets(tmp_path, forget)
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations), "--connect",
            env={"LUMEN_DATABASE_URL": url})  # fmt: skip

    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    findings = [x for x in r.stdout.splitlines() if " error R006: " in x]
    assert len(findings) == 3, r.stdout
    at = {
        "'prospects.referred_by' -> 'accounts.id'": line_of(annotations, "prospects:"),
        "'subscriptions.account_id' -> 'accounts.id'": line_of(annotations, "accounts:"),
        "'usage_records.device_id' -> 'devices.id'": line_of(annotations, "devices:"),
    }
    for fk, line in at.items():
        finding = next(f for f in findings if fk in f)
        assert finding.startswith(f"{annotations}:{line}:"), finding
    assert 'erasure: "null"' in findings[0]


def test_a_reference_to_someone_elses_row_on_a_not_null_column_is_an_error(
    lumen: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = lumen

    def link(d: dict[str, Any]) -> None:
        store = d["datastores"][0]
        store["kind"] = kind
        # devices.account_id is NOT NULL: it cannot be unlinked
        store["tables"]["devices"]["references"] = {
            "account_id": {"to": "accounts.id", "erasure": "null"}
        }

    annotations = write_datasets(tmp_path, link)
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations), "--connect",
            env={"LUMEN_DATABASE_URL": url})  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    finding = next(x for x in r.stdout.splitlines() if " error R007: " in x)
    assert "'devices.account_id' is declared with erasure null" in finding


def test_a_missing_sqlite_file_is_a_finding_and_is_not_created(tmp_path: Path) -> None:
    annotations = write_datasets(tmp_path, lambda d: None)
    missing = tmp_path / "no-such-dir-or-file.db"
    r = run("check", str(SEED_POLICY), "--datasets", str(annotations), "--connect",
            env={"LUMEN_DATABASE_URL": f"sqlite:///{missing}"})  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert " error R001: cannot connect to datastore 'lumen'" in r.stdout
    assert not missing.exists()
