"""Per-subject data keys: created on first use, wrapped by the KEK, destroyed on erasure.

A subject's data key encrypts their vault values and keys their pseudonym in the audit
log; destroying it (crypto-shredding) makes both unreadable and unlinkable for good.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from troth.errors import KeyringError
from troth.keyring.kek import KeyEncryptionKey
from troth.store.engine import writing
from troth.store.tables import subject_keys

__all__ = ["Keyring"]

_CACHE = "troth_data_keys"
_KEY_OF = select(subject_keys.c.kek_id, subject_keys.c.wrapped).where(
    subject_keys.c.subject_hash == bindparam("h")
)
_KEYS_OF = select(subject_keys.c.subject_hash, subject_keys.c.kek_id, subject_keys.c.wrapped).where(
    subject_keys.c.subject_hash.in_(bindparam("hs", expanding=True))
)
_REWRAP = (
    update(subject_keys)
    .where(subject_keys.c.subject_hash == bindparam("h"))
    .values(kek_id=bindparam("kek_id"), wrapped=bindparam("wrapped"))
)


def _derive(dek: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(dek)


class Keyring:
    def __init__(
        self, kek: KeyEncryptionKey, previous: Mapping[str, KeyEncryptionKey] | None = None
    ) -> None:
        self.kek = kek
        self.keks: dict[str, KeyEncryptionKey] = {kek.id: kek, **(previous or {})}

    def _unwrap(self, kek_id: str, wrapped: bytes, subject_hash: str) -> bytes:
        kek = self.keks.get(kek_id)
        if kek is None:
            raise KeyringError(
                f"a data key is wrapped by key-encryption key {kek_id}, which is not loaded "
                "(finish `troth keys rotate`, or load the old KEK)"
            )
        return kek.unwrap(wrapped, subject_hash.encode())

    def data_key(self, conn: Connection, subject_hash: str, *, create: bool) -> bytes | None:
        """The subject's data key, created if asked; cached for the rest of the transaction."""
        cache: dict[str, bytes] = conn.info.setdefault(_CACHE, {})
        if subject_hash in cache:
            return cache[subject_hash]
        row = conn.execute(_KEY_OF, {"h": subject_hash}).first()
        if row is not None:
            dek = self._unwrap(row.kek_id, row.wrapped, subject_hash)
            cache[subject_hash] = dek
            return dek
        if not create:
            return None
        created = self._create(conn, [subject_hash])
        if subject_hash in created:
            cache[subject_hash] = created[subject_hash]
            return created[subject_hash]
        # another transaction created it at the same moment: use theirs
        return self.data_key(conn, subject_hash, create=False)

    def preload(self, conn: Connection, subject_hashes: Sequence[str]) -> None:
        """Fetch (and create where missing) the keys of many subjects in a few statements."""
        cache: dict[str, bytes] = conn.info.setdefault(_CACHE, {})
        wanted = sorted({h for h in subject_hashes if h not in cache})
        if not wanted:
            return
        for r in conn.execute(_KEYS_OF, {"hs": wanted}):
            cache[r.subject_hash] = self._unwrap(r.kek_id, r.wrapped, r.subject_hash)
        missing = [h for h in wanted if h not in cache]
        if missing:
            cache.update(self._create(conn, missing))

    def _create(self, conn: Connection, subject_hashes: Sequence[str]) -> dict[str, bytes]:
        now = dt.datetime.now(dt.UTC)
        fresh = {h: os.urandom(32) for h in subject_hashes}
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        won = conn.execute(
            insert(subject_keys)
            .values(
                [
                    {
                        "subject_hash": h,
                        "kek_id": self.kek.id,
                        "wrapped": self.kek.wrap(dek, h.encode()),
                        "created_at": now,
                    }
                    for h, dek in fresh.items()
                ]
            )
            .on_conflict_do_nothing(index_elements=["subject_hash"])
            .returning(subject_keys.c.subject_hash)
        ).all()
        return {r.subject_hash: fresh[r.subject_hash] for r in won}

    def value_key(self, dek: bytes) -> bytes:
        return _derive(dek, b"troth vault value key")

    def subject_ref(self, conn: Connection, subject_hash: str) -> str:
        """The subject's pseudonym in the audit log, keyed by their own data key."""
        dek = self.data_key(conn, subject_hash, create=True)
        assert dek is not None
        key = _derive(dek, b"troth audit subject ref")
        return hmac.new(key, subject_hash.encode(), hashlib.sha256).hexdigest()

    def keys_of(self, conn: Connection, subject_hashes: Sequence[str]) -> dict[str, dt.datetime]:
        """Which of these subjects have a data key, and since when (nothing is unwrapped)."""
        query = select(subject_keys.c.subject_hash, subject_keys.c.created_at).where(
            subject_keys.c.subject_hash.in_(list(subject_hashes))
        )
        return {r.subject_hash: r.created_at for r in conn.execute(query)}

    def shred(self, conn: Connection, subject_hash: str) -> bool:
        """Destroy the subject's data key; returns whether there was one."""
        conn.info.get(_CACHE, {}).pop(subject_hash, None)
        result = conn.execute(
            delete(subject_keys).where(subject_keys.c.subject_hash == subject_hash)
        )
        return bool(result.rowcount)

    def rotate(self, engine: Engine, batch: int = 1000) -> int:
        """Re-wrap every data key under the current KEK; values are not re-encrypted."""
        done = 0
        while True:
            with writing(engine).begin() as conn:
                rows = conn.execute(
                    select(
                        subject_keys.c.subject_hash, subject_keys.c.kek_id, subject_keys.c.wrapped
                    )
                    .where(subject_keys.c.kek_id != self.kek.id)
                    .limit(batch)
                ).all()
                if rows:
                    conn.execute(
                        _REWRAP,
                        [
                            {
                                "h": r.subject_hash,
                                "kek_id": self.kek.id,
                                "wrapped": self.kek.wrap(
                                    self._unwrap(r.kek_id, r.wrapped, r.subject_hash),
                                    r.subject_hash.encode(),
                                ),
                            }
                            for r in rows
                        ],
                    )
            done += len(rows)
            if len(rows) < batch:
                return done
