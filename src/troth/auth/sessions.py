"""Server-side admin sessions.

The browser holds a random 256-bit token; the database holds only its SHA-256
(``id_hash``), so a copy of the database does not let anyone sign in. Each session has
its own CSRF token and ends eight hours after sign-in, or at sign-out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, insert, select

from troth.auth._time import aware, utcnow
from troth.store.engine import writing
from troth.store.tables import sessions, users

__all__ = [
    "SESSION_LIFETIME",
    "Session",
    "create_session",
    "destroy_session",
    "destroy_user_sessions",
    "load_session",
    "token_hash",
]

SESSION_LIFETIME = dt.timedelta(hours=8)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    user_id: int
    email: str
    role: str
    csrf: str
    expires_at: dt.datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    engine: Engine, user_id: int, *, now: dt.datetime | None = None
) -> tuple[str, Session]:
    """A new session for ``user_id``: (token for the cookie, session). The user's expired
    sessions are cleared on the way."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + SESSION_LIFETIME
    with writing(engine).begin() as conn:
        user = conn.execute(select(users.c.email, users.c.role).where(users.c.id == user_id)).one()
        conn.execute(
            delete(sessions).where(
                and_(sessions.c.user_id == user_id, sessions.c.expires_at <= now)
            )
        )
        conn.execute(
            insert(sessions).values(
                id_hash=token_hash(token),
                user_id=user_id,
                csrf=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
    return token, Session(user_id, user.email, user.role, csrf, expires)


def load_session(engine: Engine, token: str, *, now: dt.datetime | None = None) -> Session | None:
    """The live session for ``token``, or None (unknown, expired, or the user disabled)."""
    if not _TOKEN.match(token):
        return None
    now = now or utcnow()
    digest = token_hash(token)
    query = (
        select(
            sessions.c.user_id,
            sessions.c.csrf,
            sessions.c.expires_at,
            users.c.email,
            users.c.role,
            users.c.disabled,
        )
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id_hash == digest)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    expires = aware(row.expires_at)
    if expires <= now:
        with writing(engine).begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.id_hash == digest))
        return None
    if row.disabled:
        return None
    return Session(int(row.user_id), row.email, row.role, row.csrf, expires)


def destroy_session(engine: Engine, token: str) -> None:
    """End the session for ``token`` (nothing happens if there is none)."""
    with writing(engine).begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.id_hash == token_hash(token)))


def destroy_user_sessions(engine: Engine, user_id: int) -> int:
    """End every session of ``user_id`` (after a password or role change); returns how many."""
    with writing(engine).begin() as conn:
        return conn.execute(delete(sessions).where(sessions.c.user_id == user_id)).rowcount
