"""`troth discover` on the seed service's own database (examples/seed-service/service), as
its datasets.yaml annotates it: the personal data is all found, and none of it is undeclared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SEED

TROTH = str(Path(sys.executable).with_name("troth"))
MAKE_DB = ROOT / "examples" / "seed-service" / "service" / "make_db.py"

# From schema.sql: the columns whose values say they are personal data.
PERSONAL = {
    ("accounts", "email", "email"),
    ("accounts", "name", "name"),
    ("accounts", "phone", "phone"),
    ("invoices", "customer_name", "name"),
    ("invoices", "email", "email"),
    ("prospects", "email", "email"),
    ("prospects", "name", "name"),
    ("support_tickets", "email", "email"),
    ("support_tickets", "body", "free_text"),
    ("threat_events", "ip_address", "ip"),
    ("usage_records", "ip_address", "ip"),
}


def test_seed_database_has_no_undeclared_personal_data(db_url: str) -> None:
    subprocess.run([sys.executable, str(MAKE_DB), db_url], check=True, capture_output=True)
    result = subprocess.run(
        [TROTH, "discover", db_url, "--policy", str(SEED), "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["datastore"] == "lumen"  # datasets.yaml found beside the policy
    assert report["violations"] == 0
    found = {(c["table"], c["column"], c["kind"]) for c in report["personal_data"]}
    assert found == PERSONAL
    assert {f["kind"] for f in report["findings"]} <= {"category_mismatch"}
