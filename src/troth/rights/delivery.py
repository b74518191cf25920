"""Delivering an access package: an expiring, single-use download link.

The package is stored encrypted; the link's token is 256 random bits, stored only as a
keyed hash. The first download empties the stored package (the row stays, so a second
try is told the link was used); an expired link's package is emptied when it is asked for
or when :meth:`Deliveries.purge` runs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update

from troth.rights.codes import Sealer, new_token
from troth.rights.requests_errors import RequestError
from troth.store.engine import writing
from troth.store.tables_rights import rights_deliveries

__all__ = ["Deliveries", "Download"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_USED = b""

Clock = Callable[[], dt.datetime]


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Download:
    request_id: str
    filename: str
    data: bytes


class Deliveries:
    def __init__(self, engine: Engine, sealer: Sealer, ttl: dt.timedelta, clock: Clock) -> None:
        self.engine = engine
        self.sealer = sealer
        self.ttl = ttl
        self.clock = clock

    def _label(self, token_hash: str) -> str:
        return f"package:{token_hash}"

    def create(self, conn: Connection, request_id: str, filename: str, package: bytes) -> str:
        """Store ``package`` (in the caller's transaction); returns the token for the link."""
        token = new_token()
        token_hash = self.sealer.digest("download", token)
        now = self.clock()
        conn.execute(
            insert(rights_deliveries).values(
                token_hash=token_hash,
                request_id=request_id,
                filename=filename,
                package=self.sealer.seal_bytes(self._label(token_hash), package),
                created_at=now,
                expires_at=now + self.ttl,
            )
        )
        return token

    def take(
        self, token: str, on_download: Callable[[Connection, str], None] | None = None
    ) -> Download:
        """The package behind ``token``, once. ``on_download(conn, request_id)`` runs in
        the same transaction (to record the step)."""
        gone = RequestError(
            404, "No such link", "token: no download has this link; check it was copied whole"
        )
        if not _TOKEN.match(token):
            raise gone
        token_hash = self.sealer.digest("download", token)
        expired = False
        with writing(self.engine).begin() as conn:
            row = conn.execute(
                select(rights_deliveries)
                .where(rights_deliveries.c.token_hash == token_hash)
                .with_for_update()
            ).first()
            if row is None:
                raise gone
            if row.package == _USED:
                raise RequestError(
                    410, "Link used", "token: this link was used already; each link works once"
                )
            conn.execute(
                update(rights_deliveries)
                .where(rights_deliveries.c.token_hash == token_hash)
                .values(package=_USED)
            )
            if _aware(row.expires_at) <= self.clock():
                expired = True
            else:
                data = self.sealer.open_bytes(self._label(token_hash), row.package)
                if on_download is not None:
                    on_download(conn, row.request_id)
        if expired:
            raise RequestError(
                410, "Link expired", "token: this link has expired; ask the service for a new one"
            )
        return Download(row.request_id, row.filename, data)

    def purge(self, keep_used_for: dt.timedelta = dt.timedelta(days=30)) -> int:
        """Empty expired packages, and forget links used or expired ``keep_used_for`` ago."""
        now = self.clock()
        with writing(self.engine).begin() as conn:
            emptied = conn.execute(
                update(rights_deliveries)
                .where(rights_deliveries.c.expires_at <= now, rights_deliveries.c.package != _USED)
                .values(package=_USED)
            ).rowcount
            conn.execute(
                delete(rights_deliveries).where(
                    rights_deliveries.c.expires_at <= now - keep_used_for
                )
            )
        return int(emptied)
