"""What a hit may keep about who made it: a truncated IP, and a visitor id that is either a
keyed hash of the first-party cookie id (with analytics consent) or a hash salted per day,
whose salt is deleted after the day so that yesterday's visitors cannot be linked to today's."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import threading

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from troth.store.engine import writing
from troth.store.tables import tracking_salts

__all__ = ["DailySalts", "truncate_ip"]


def truncate_ip(address: str) -> str:
    """IPv4 to its /24, IPv6 to its /48; anything else becomes 'unknown'."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class DailySalts:
    """One random salt per UTC day, shared by every worker through the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._day: dt.date | None = None
        self._salt = b""

    def salt(self, day: dt.date) -> bytes:
        with self._lock:
            if self._day == day:
                return self._salt
            insert = (
                postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
            )
            with writing(self.engine).begin() as conn:
                conn.execute(
                    insert(tracking_salts)
                    .values(day=day, salt=os.urandom(32))
                    .on_conflict_do_nothing(index_elements=["day"])
                )
                salt = conn.execute(
                    select(tracking_salts.c.salt).where(tracking_salts.c.day == day)
                ).scalar_one()
                conn.execute(delete(tracking_salts).where(tracking_salts.c.day < day))
            self._day, self._salt = day, bytes(salt)
            return self._salt

    def visitor(self, day: dt.date, ip_prefix: str, user_agent: str) -> str:
        mac = hmac.new(
            self.salt(day), f"{ip_prefix}\x1f{user_agent[:256]}".encode(), hashlib.sha256
        )
        return "d:" + mac.hexdigest()[:40]
