"""API keys for backends and scripts.

A key reads ``troth_<id>_<secret>``: the id names the row, the secret is 256 random bits.
It is shown once, when created; the database keeps only SHA-256 of the secret, compared
in constant time. Revoked keys stay listed (who had access, and until when) but never
verify again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, insert, select, update

from troth.audit.log import AuditLog
from troth.auth._audit import audited, transaction
from troth.auth._time import aware, utcnow
from troth.auth.roles import ROLES
from troth.errors import AuthError
from troth.store.tables import api_keys

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "VerifiedKey",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "verify_api_key",
]

KEY_PREFIX = "troth_"

_KEY = re.compile(r"^troth_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NO_SUCH_KEY = hashlib.sha256(b"no such key").hexdigest()


class VerifiedKey(NamedTuple):
    key_id: str
    role: str


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    engine: Engine, role: str, label: str, *, audit: AuditLog | None = None, actor: str = "cli"
) -> tuple[str, str]:
    """A new key for ``role``: (key id, full key). Show the full key once; it cannot be
    recovered later. AuthError for an unknown role or an empty or overlong label.
    With ``audit``, the creation is in the audit log."""
    if role not in ROLES:
        raise AuthError(f"role: '{role}' is not a role; use one of {', '.join(ROLES)}")
    label = label.strip()
    if not label or len(label) > 200 or not label.isprintable():
        raise AuthError("label: give 1 to 200 printable characters (what the key is for)")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with transaction(engine, audit) as conn:
        conn.execute(
            insert(api_keys).values(
                id=key_id,
                secret_hash=_digest(secret),
                role=role,
                label=label,
                created_at=utcnow(),
                revoked_at=None,
            )
        )
        audited(conn, audit, "admin.api_key_created", actor, {"key_id": key_id, "role": role})
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}"


def verify_api_key(engine: Engine, full_key: str) -> VerifiedKey | None:
    """(key id, role) for a valid, unrevoked key, else None."""
    found = _KEY.match(full_key)
    if found is None:
        return None
    key_id, secret = found.groups()
    with engine.connect() as conn:
        row = conn.execute(
            select(api_keys.c.secret_hash, api_keys.c.role, api_keys.c.revoked_at).where(
                api_keys.c.id == key_id
            )
        ).first()
    expected = row.secret_hash if row is not None else _NO_SUCH_KEY
    matches = hmac.compare_digest(_digest(secret), expected)
    if row is None or not matches or row.revoked_at is not None:
        return None
    return VerifiedKey(key_id, row.role)


def revoke_api_key(
    engine: Engine, key_id: str, *, audit: AuditLog | None = None, actor: str = "cli"
) -> bool:
    """Revoke a key; False if there is no such key or it was revoked already."""
    with transaction(engine, audit) as conn:
        result = conn.execute(
            update(api_keys)
            .where(and_(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)))
            .values(revoked_at=utcnow())
        )
        revoked: bool = result.rowcount == 1
        if revoked:
            audited(conn, audit, "admin.api_key_revoked", actor, {"key_id": key_id})
    return revoked


def _key(row: Any) -> ApiKey:
    revoked = aware(row.revoked_at) if row.revoked_at is not None else None
    return ApiKey(row.id, row.role, row.label, aware(row.created_at), revoked)


def list_api_keys(engine: Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
        return [_key(r) for r in rows]
