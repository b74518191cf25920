"""The transfers commands as a user runs them: exports, transfer checks on a date, and the
disclosure and legal-request commands on a real SQLite database."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from conftest import ROOT, SEED

TROTH = str(Path(sys.executable).with_name("troth"))
SUBJECT = "acct:77c1d2e3f4a5b6c7"


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TROTH, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
        input=stdin, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_export_ropa_xlsx_and_csv(tmp_path):
    out = tmp_path / "ropa.xlsx"
    r = run("export", "ropa", str(SEED), "--layout", "cnil", "--view", "processor",
            "--format", "xlsx", "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    sheet = load_workbook(io.BytesIO(out.read_bytes())).active
    assert next(sheet.iter_rows(values_only=True))[:2] == ("Référence", "Sous-traitant")
    r = run("export", "ropa", str(SEED), "--layout", "ico")
    assert r.returncode == 0
    assert r.stdout.lstrip("\ufeff").startswith("Business function,Purpose of processing,")
    r = run("export", "ropa", str(SEED), "--format", "xlsx")
    assert r.returncode == 2
    assert "--output" in r.stderr
    r = run("export", "ropa", str(SEED), "--layout", "bogus")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_export_store_answers(tmp_path):
    r = run("export", "app-store", str(SEED), "--subject", "app_user")
    assert r.returncode == 0, r.stderr
    label = json.loads(r.stdout)
    assert label["subjects"] == ["app_user"]
    assert "Identifiers/Device ID" in label["data_used_to_track_you"]
    out = tmp_path / "play.json"
    r = run("export", "play-data-safety", str(SEED), "-o", str(out))
    assert r.returncode == 0
    assert json.loads(out.read_text())["security_practices"]["users_can_request_deletion"]
    r = run("export", "app-store", str(SEED), "--subject", "martian")
    assert r.returncode == 2
    assert "--subject: martian" in r.stderr


def test_transfers_check_on_a_date(tmp_path, seed_variant):
    r = run("transfers", "check", str(SEED), "--on", "2026-12-01")
    assert r.returncode == 0, r.stdout
    assert "every transfer is covered" in r.stdout

    def uk_2021(d: dict[str, Any]) -> None:
        d["recipients"][0]["countries"] = ["GB"]
        d["recipients"][0]["transfer"] = {"mechanism": "adequacy", "adequacy": ["eu_gb_2021"]}

    variant = seed_variant(uk_2021)
    assert run("transfers", "check", str(variant), "--on", "2025-12-26").returncode == 0
    r = run("transfers", "check", str(variant), "--on", "2025-12-27", "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["ok"] is False
    assert "2021/1772" in report["recipients"][0]["problems"][0]
    r = run("transfers", "check", str(SEED), "--on", "someday")
    assert r.returncode == 2


def test_disclosures_and_legal_requests_from_the_command_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'troth.db'}"
    env = {
        "TROTH_KEYS_DIR": str(tmp_path / "keys"),
        "TROTH_AUDIT_HEADS": str(tmp_path / "heads.jsonl"),
        "TROTH_POLICY": str(SEED),
    }
    common = ["--database-url", db]
    r = run("disclosures", "record", "--recipient", "service_providers", "--purpose",
            "provide_service", "--category", "account", "--country", "us",
            "--subjects-stdin", *common, stdin=f"{SUBJECT}\n", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run("disclosures", "record", "--recipient", "service_providers", "--purpose",
            "advertising", "--category", "account", *common, env=env)  # fmt: skip
    assert r.returncode == 1
    assert "purpose_undeclared" in r.stderr
    r = run("disclosures", "report", "--by", "country", "--json", *common, env=env)
    assert [(x["key"], x["disclosures"]) for x in json.loads(r.stdout)] == [("US", 1)]

    r = run("legal", "add", "--authority", "Amtsgericht Tiergarten", "--country", "DE",
            "--reference", "AG 1/27", "--received", "2027-01-10", "--decision", "disclosed",
            "--legal-basis", "§ 100j StPO", "--category", "account",
            "--recipient", "authorities", "--purpose", "legal_compliance",
            "--subjects-stdin", *common, stdin=f"{SUBJECT}\n", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run("legal", "hold", "1", "--reason", "evidence", *common, env=env)
    assert r.returncode == 0, r.stderr
    listed = run("legal", "list", "--json", *common, env=env)
    [request] = json.loads(listed.stdout)
    assert request["holds"][0]["active"] is True
    assert SUBJECT not in listed.stdout
    r = run("legal", "release", str(request["holds"][0]["id"]), "--reason", "closed",
            *common, env=env)  # fmt: skip
    assert r.returncode == 0
    again = run("legal", "release", str(request["holds"][0]["id"]), "--reason", "x",
                *common, env=env)  # fmt: skip
    assert again.returncode == 1
    assert "already_released" in again.stderr
    assert "released: closed" in run("legal", "list", *common, env=env).stdout
    bad = run("legal", "add", "--authority", "A", "--country", "DE", "--reference", "R",
              "--received", "2027-01-10", "--decision", "maybe", "--legal-basis", "x",
              *common, env=env)  # fmt: skip
    assert bad.returncode == 2
    assert "--decision" in bad.stderr


def test_legal_commands_refuse_what_does_not_fit_without_a_traceback(tmp_path):
    env = {
        "TROTH_KEYS_DIR": str(tmp_path / "keys"),
        "TROTH_AUDIT_HEADS": str(tmp_path / "heads.jsonl"),
        "TROTH_POLICY": str(SEED),
        "TROTH_DATABASE_URL": f"sqlite:///{tmp_path / 'troth.db'}",
    }
    r = run("legal", "add", "--authority", "A" * 300, "--country", "DE", "--reference", "R",
            "--received", "2027-01-10", "--decision", "pending", "--legal-basis", "law",
            env=env)  # fmt: skip
    assert r.returncode == 2
    assert "authority: at most 200 characters" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("legal", "add", "--authority", "A", "--country", "DE", "--reference", "R",
            "--received", "2027-01-10", "--decision", "disclosed", "--legal-basis", "law",
            "--category", "account", env=env)  # fmt: skip
    assert r.returncode == 2
    assert "recipient: " in r.stderr
    r = run("legal", "hold", "9223372036854775808", "--reason", "x", env=env)
    assert r.returncode == 1
    assert "unknown_request" in r.stderr
    assert "Traceback" not in r.stderr
    assert run("legal", "list", "--json", env=env).stdout.strip() == "[]"


def test_transfers_check_before_the_clauses_applied_says_from_when():
    r = run("transfers", "check", str(SEED), "--on", "2019-01-01")
    assert r.returncode == 1
    assert "apply only from 2021-06-27" in r.stdout
    assert "None" not in r.stdout


# Runs troth's CLI with the web layer made unimportable.
WITHOUT_WEB = "import sys; sys.modules['troth.web'] = None; from troth.cli import app; app()"


def test_disclosure_and_legal_commands_do_not_need_the_web_layer(tmp_path):
    env = {**os.environ, "TROTH_KEYS_DIR": str(tmp_path / "keys"),
           "TROTH_AUDIT_HEADS": str(tmp_path / "heads.jsonl"), "TROTH_POLICY": str(SEED),
           "TROTH_DATABASE_URL": f"sqlite:///{tmp_path / 'troth.db'}"}  # fmt: skip

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", WITHOUT_WEB, *args], capture_output=True,
                              text=True, timeout=120, cwd=ROOT, check=False, input=stdin,
                              env=env)  # fmt: skip

    r = cli("disclosures", "record", "--recipient", "authorities", "--purpose",
            "legal_compliance", "--category", "account", "--subjects-stdin",
            stdin=f"{SUBJECT}\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = cli("legal", "add", "--authority", "Polizei", "--country", "DE", "--reference", "P-9",
            "--received", "2027-01-10", "--decision", "pending", "--legal-basis", "§ 163 StPO",
            "--subjects-stdin", stdin=f"{SUBJECT}\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = cli("legal", "hold", "1", "--reason", "evidence")
    assert r.returncode == 0, r.stderr
    [request] = json.loads(cli("legal", "list", "--json").stdout)
    assert request["holds"][0]["active"] is True
    assert json.loads(cli("disclosures", "report", "--json").stdout)[0]["subjects"] == 1
