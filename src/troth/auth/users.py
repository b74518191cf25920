"""Admin users: add, authenticate (with lock-out), list.

Five wrong passwords in a row lock an account for fifteen minutes; a right password
during the lock is refused too. An unknown e-mail costs the same argon2 work as a known
one, so response times do not tell which e-mails have accounts.

Validation errors are :class:`~troth.errors.AuthError` with the field first
(``email: ...``), so the CLI can print them as they are.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import Engine, case, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from troth.audit.log import AuditLog
from troth.auth._audit import audited, transaction
from troth.auth._time import aware, utcnow
from troth.auth.passwords import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    hash_password,
    needs_rehash,
    verify_password,
)
from troth.auth.roles import ROLES
from troth.errors import AuthError, TrothError
from troth.store.engine import writing
from troth.store.tables import users

__all__ = [
    "LOCK_FOR",
    "MAX_FAILURES",
    "Attempt",
    "User",
    "add_user",
    "authenticate",
    "get_user",
    "list_users",
    "login_attempt",
    "normalize_email",
]

MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s\x00-\x1f\x7f\"<>(),;:\\\[\]]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str
    created_at: dt.datetime
    failed_logins: int
    locked_until: dt.datetime | None
    disabled: bool

    def locked(self, now: dt.datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or utcnow())


def _user(row: Any) -> User:
    return User(
        id=int(row.id),
        email=row.email,
        role=row.role,
        created_at=aware(row.created_at),
        failed_logins=int(row.failed_logins or 0),
        locked_until=aware(row.locked_until) if row.locked_until is not None else None,
        disabled=bool(row.disabled),
    )


def normalize_email(email: str) -> str:
    """``email`` trimmed and lower-cased, or TrothError if it does not look like one."""
    cleaned = email.strip().lower()
    if len(cleaned) > 254 or not _EMAIL.match(cleaned):
        raise AuthError("email: not an e-mail address (expected name@example.org)")
    return cleaned


def add_user(
    engine: Engine,
    email: str,
    password: str,
    role: str,
    *,
    audit: AuditLog | None = None,
    actor: str = "cli",
) -> User:
    """Create an admin user. TrothError for a bad e-mail, role or password, or a duplicate.
    With ``audit``, the addition is in the audit log (by user id, not e-mail)."""
    address = normalize_email(email)
    if role not in ROLES:
        raise AuthError(f"role: '{role}' is not a role; use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"password: use at most {MAX_PASSWORD} characters")
    password_hash = hash_password(password)  # slow: outside the write transaction
    now = utcnow()
    duplicate = TrothError("email: a user with this e-mail address already exists")
    try:
        with transaction(engine, audit) as conn:
            if conn.execute(select(users.c.id).where(users.c.email == address)).first():
                raise duplicate
            user_id = conn.execute(
                insert(users)
                .values(
                    email=address,
                    password_hash=password_hash,
                    role=role,
                    created_at=now,
                    failed_logins=0,
                    locked_until=None,
                    disabled=False,
                )
                .returning(users.c.id)
            ).scalar_one()
            audited(conn, audit, "admin.user_added", actor, {"user_id": user_id, "role": role})
    except IntegrityError:  # a concurrent add of the same address
        raise duplicate from None
    return User(int(user_id), address, role, now, 0, None, False)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def authenticate(
    engine: Engine, email: str, password: str, *, now: dt.datetime | None = None
) -> User | None:
    """The user if ``password`` is theirs and the account is usable, else None.

    Wrong passwords count toward the lock-out; a success resets the count (and rehashes
    the password if the hashing parameters have changed)."""
    return login_attempt(engine, email, password, now=now).user


@dataclass(frozen=True)
class Attempt:
    """What a sign-in attempt came to. ``user_id`` is set whenever the e-mail is known, so
    a refusal can be audited; tell the person only "wrong e-mail or password".

    ``locked``: the account was locked already (the attempt did not count);
    ``locked_now``: this wrong password was the one that locked it."""

    outcome: Literal["ok", "unknown", "wrong_password", "locked", "disabled"]
    user: User | None = None
    user_id: int | None = None
    locked_now: bool = False


def login_attempt(
    engine: Engine, email: str, password: str, *, now: dt.datetime | None = None
) -> Attempt:
    """:func:`authenticate`, saying why a refusal was one."""
    now = now or utcnow()
    try:
        address: str | None = normalize_email(email)
    except TrothError:
        address = None
    row = None
    if address is not None and len(password) <= MAX_PASSWORD:
        with engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.email == address)).first()
    if row is None:
        verify_password(_dummy_hash(), password[:MAX_PASSWORD])  # same work as a known e-mail
        return Attempt("unknown")
    user = _user(row)
    matches = verify_password(row.password_hash, password)
    if user.disabled:
        return Attempt("disabled", user_id=user.id)
    if user.locked(now):
        return Attempt("locked", user_id=user.id)
    if not matches:
        locked_now = _count_failure(engine, user, now)
        return Attempt("wrong_password", user_id=user.id, locked_now=locked_now)
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
    if needs_rehash(row.password_hash):
        values["password_hash"] = hash_password(password)
    with writing(engine).begin() as conn:
        conn.execute(update(users).where(users.c.id == user.id).values(**values))
    return Attempt("ok", replace(user, failed_logins=0, locked_until=None), user.id)


def _count_failure(engine: Engine, user: User, now: dt.datetime) -> bool:
    """Count a wrong password; True if this failure locked the account."""
    if user.locked_until is not None:  # an expired lock: start counting again
        values: dict[str, Any] = {"failed_logins": 1, "locked_until": None}
    else:
        # In SQL, so that concurrent failures all count; SET sees the row's old values.
        count = users.c.failed_logins + literal(1)
        values = {
            "failed_logins": count,
            "locked_until": case(
                (count >= MAX_FAILURES, literal(now + LOCK_FOR, users.c.locked_until.type)),
                else_=None,
            ),
        }
    with writing(engine).begin() as conn:
        conn.execute(update(users).where(users.c.id == user.id).values(**values))
        locked_until = conn.execute(
            select(users.c.locked_until).where(users.c.id == user.id)
        ).scalar_one_or_none()
    return locked_until is not None


def get_user(engine: Engine, user_id: int) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return _user(row) if row is not None else None


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as conn:
        return [_user(r) for r in conn.execute(select(users).order_by(users.c.email))]
