"""Create and fill Lumen's demo database (schema.sql) on SQLite, PostgreSQL or MariaDB.

    python make_db.py                          # sqlite:///lumen.db
    python make_db.py postgresql+psycopg://... --accounts 200

Idempotent: a database that already has the tables is left as it is. The data is made up
and the same on every run; account 1 (alex@example.org) has a bit of everything: devices,
usage, threat events, invoices, a support ticket sent before signing up, and a prospect
record from before that.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

__all__ = ["ALEX", "build", "engine_for", "statements"]

SCHEMA = Path(__file__).with_name("schema.sql")

ALEX = {
    "account_id": "1",
    "ref": "acct:0000000000000001",
    "email": "alex@example.org",
    "phone": "+49 30 1234567",
    "devices": ["dev-alex-laptop-0001", "dev-alex-phone-0002"],
}

_FIRST = ["Alex", "Sam", "Kim", "Jo", "Robin", "Mika", "Chris", "Lou", "Noa", "Eli"]
_LAST = ["Example", "Muster", "Doe", "Rossi", "Novak", "Berg", "Silva", "Kowalski"]
_OS = ["Android 14", "iOS 17", "Windows 11", "macOS 14", "Ubuntu 24.04"]


def statements(sql: str | None = None) -> list[str]:
    """The DDL statements of schema.sql (comments dropped)."""
    body = "\n".join(
        line for line in (sql or SCHEMA.read_text()).splitlines() if not line.startswith("--")
    )
    return [s.strip() for s in body.split(";") if s.strip()]


def engine_for(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "+" not in parsed.drivername:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() in ("mysql", "mariadb") and "+" not in parsed.drivername:
        parsed = parsed.set(drivername="mysql+pymysql")
    return create_engine(parsed)


def _rows(accounts: int) -> dict[str, list[dict[str, Any]]]:
    rnd = random.Random(42)
    out: dict[str, list[dict[str, Any]]] = {
        k: []
        for k in (
            "plans",
            "accounts",
            "subscriptions",
            "devices",
            "usage_records",
            "threat_events",
            "invoices",
            "support_tickets",
            "prospects",
        )
    }
    out["plans"] = [
        {"id": 1, "name": "basic", "monthly_price_cents": 499, "gigabytes_included": 50},
        {"id": 2, "name": "plus", "monthly_price_cents": 999, "gigabytes_included": 500},
    ]
    device_id = usage_id = threat_id = ticket_id = 0
    for a in range(1, accounts + 1):
        alex = a == 1
        name = "Alex Example" if alex else f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}"
        email = ALEX["email"] if alex else f"user{a}@example.net"
        uids = list(ALEX["devices"]) if alex else [f"dev-{a:06d}-{i}" for i in range(a % 3)]
        first_device = device_id + 1 if uids else None
        out["accounts"].append(
            {
                "id": a,
                "ref": f"acct:{a:016d}",
                "email": email,
                "name": name,
                "username": name.split()[0].lower() + str(a),
                "password_hash": f"$argon2id$v=19$m=65536$demo{a:06d}",
                "phone": ALEX["phone"] if alex else (f"+44 20 {a:07d}" if a % 2 else None),
                "language": "de" if a % 4 == 0 else "en",
                "primary_device_id": first_device,
                "created_at": f"2025-{1 + a % 12:02d}-{1 + a % 28:02d}T10:00:00Z",
            }
        )
        out["subscriptions"].append(
            {
                "id": a,
                "account_id": a,
                "plan_id": 1 + a % 2,
                "billing_address": f"{a} Example Street, 10115 Berlin",
                "started_at": "2025-01-01T00:00:00Z",
                "ended_at": None,
            }
        )
        for uid in uids:
            device_id += 1
            out["devices"].append(
                {
                    "id": device_id,
                    "account_id": a,
                    "device_uid": uid,
                    "os": rnd.choice(_OS),
                    "app_version": f"3.{rnd.randint(0, 9)}.{rnd.randint(0, 20)}",
                    "ad_id": f"{rnd.getrandbits(64):016x}",
                }
            )
            for month in (1, 2):
                usage_id += 1
                out["usage_records"].append(
                    {
                        "id": usage_id,
                        "subscription_id": a,
                        "device_id": device_id,
                        "period": f"2026-{month:02d}",
                        "megabytes": rnd.randint(100, 90_000),
                        "minutes": rnd.randint(10, 9_000),
                        "ip_address": f"203.0.113.{rnd.randint(1, 254)}",
                    }
                )
            threat_id += 1
            out["threat_events"].append(
                {
                    "id": threat_id,
                    "device_uid": uid,
                    "detected_at": "2026-02-03T04:05:06Z",
                    "item": "https://malware.example/dropper.exe",
                    "verdict": "blocked",
                    "ip_address": f"198.51.100.{rnd.randint(1, 254)}",
                }
            )
        invoice_id = a
        out["invoices"].append(
            {
                "id": invoice_id,
                "account_id": a,
                "number": f"INV-2026-{invoice_id:06d}",
                "issued_on": "2026-01-31",
                "amount_cents": 499 if a % 2 else 999,
                "customer_name": name,
                "billing_address": f"{a} Example Street, 10115 Berlin",
                "email": email,
            }
        )
        if alex or a % 5 == 0:
            ticket_id += 1
            out["support_tickets"].append(
                {
                    "id": ticket_id,
                    # Alex wrote before signing up: linked by e-mail only
                    "account_id": None if alex else a,
                    "email": email,
                    "subject": "Cannot connect",
                    "body": f"Hello, this is {name}. My connection drops every hour.",
                    "opened_at": "2026-02-10T09:00:00Z",
                }
            )
    out["prospects"].append(
        {
            "id": 1,
            "email": ALEX["email"],
            "name": "Alex Example",
            "source": "newsletter",
            "referred_by": None,
            "created_at": "2024-11-01T12:00:00Z",
        }
    )
    for p in range(2, 6):
        out["prospects"].append(
            {
                "id": p,
                "email": f"prospect{p}@example.com",
                "name": f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}",
                "source": "trade fair",
                "referred_by": 2,
                "created_at": "2025-03-01T12:00:00Z",
            }
        )
    return out


def build(url: str, *, accounts: int = 50) -> bool:
    """Create and fill the database at ``url`` unless it has the tables; True if it did."""
    engine = engine_for(url)
    try:
        if inspect(engine).has_table("accounts"):
            return False
        with engine.begin() as conn:
            for statement in statements():
                conn.execute(text(statement))
            for table, rows in _rows(accounts).items():
                if rows:
                    cols = list(rows[0])
                    conn.execute(
                        text(
                            f"INSERT INTO {table} ({', '.join(cols)}) "
                            f"VALUES ({', '.join(':' + c for c in cols)})"
                        ),
                        rows,
                    )
        return True
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="sqlite:///lumen.db")
    parser.add_argument("--accounts", type=int, default=50)
    args = parser.parse_args()
    made = build(args.url, accounts=args.accounts)
    print("created" if made else "already there: left as it is")


if __name__ == "__main__":
    main()
