"""What a data subject request is, as the lifecycle, the web layer and the CLI see it:
kinds and states, the view of a request (nothing personal in it), its steps, the workload
counts, and the validation of the identities a request is made with."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Row

from troth.rights.requests_deadlines import DUE_SOON_DAYS
from troth.rights.requests_errors import RequestError
from troth.store.engine import reading
from troth.store.tables_rights import rights_requests

__all__ = [
    "CONTROL_CHARS",
    "IDENTITY_KINDS",
    "KINDS",
    "OPEN_STATES",
    "REQUEST_ID",
    "STATES",
    "DeskConfig",
    "Outbox",
    "RequestView",
    "Step",
    "Workload",
    "aware",
    "check_identities",
    "request_workload",
    "utcnow",
    "view_of",
]

KINDS = ("access", "portability", "erasure", "rectification", "restriction", "objection")
STATES = ("submitted", "verified", "approved", "executing", "completed", "rejected")
OPEN_STATES = ("submitted", "verified", "approved", "executing")
IDENTITY_KINDS = ("email", "account_id", "phone", "device_id")

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every moment troth stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class DeskConfig:
    auto_approve: frozenset[str] = frozenset({"access", "portability", "restriction", "objection"})
    code_ttl: dt.timedelta = dt.timedelta(minutes=30)
    code_attempts: int = 5
    public_url: str = ""
    service: str = "our service"
    purposes: frozenset[str] = frozenset()  # the policy's: what a restriction may be scoped to


@dataclass(frozen=True)
class Step:
    at: dt.datetime
    step: str
    actor: str
    note: str


@dataclass(frozen=True)
class RequestView:
    """What officers and the requester may see of a request: nothing personal."""

    id: str
    kind: str
    state: str
    channel: str
    language: str
    params: Mapping[str, Any]
    verified_by: str | None
    received_at: dt.datetime
    due: dt.date
    extended_due: dt.date | None
    extension_reason: str | None
    reason: str | None
    result: Mapping[str, Any] | None
    completed_at: dt.datetime | None
    steps: tuple[Step, ...] = ()

    @property
    def deadline(self) -> dt.date:
        return self.extended_due or self.due

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def overdue(self, today: dt.date) -> bool:
        return self.open and today > self.deadline

    def due_soon(self, today: dt.date) -> bool:
        return self.open and today <= self.deadline <= today + dt.timedelta(DUE_SOON_DAYS)

    def as_dict(self, today: dt.date) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "channel": self.channel,
            "language": self.language,
            "params": dict(self.params),
            "verified_by": self.verified_by,
            "received_at": self.received_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "due": self.due.isoformat(),
            "extended_due": self.extended_due.isoformat() if self.extended_due else None,
            "extension_reason": self.extension_reason,
            "overdue": self.overdue(today),
            "reason": self.reason,
            "result": dict(self.result) if self.result is not None else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "steps": [
                {"at": s.at.isoformat(), "step": s.step, "actor": s.actor, "note": s.note}
                for s in self.steps
            ],
        }


@dataclass(frozen=True)
class Workload:
    """Counts for the admin overview."""

    open: int
    due_soon: int
    overdue: int
    by_state: Mapping[str, int]


@dataclass
class Outbox:
    """Mail to send once the transaction that decided it has committed."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, to: str, subject: str, body: str) -> None:
        self.messages.append((to, subject, body))


def view_of(row: Row[Any], steps: Sequence[Step] = ()) -> RequestView:
    return RequestView(
        id=row.id,
        kind=row.kind,
        state=row.state,
        channel=row.channel,
        language=row.language,
        params=row.params or {},
        verified_by=row.verified_by,
        received_at=aware(row.received_at),
        due=row.due,
        extended_due=row.extended_due,
        extension_reason=row.extension_reason,
        reason=row.reason,
        result=row.result,
        completed_at=aware(row.completed_at) if row.completed_at else None,
        steps=tuple(steps),
    )


def request_workload(engine: Engine, today: dt.date) -> Workload:
    """Open requests, those due within :data:`DUE_SOON_DAYS`, and those overdue."""
    deadline = func.coalesce(rights_requests.c.extended_due, rights_requests.c.due)
    soon = today + dt.timedelta(DUE_SOON_DAYS)
    with reading(engine).connect() as conn:
        by_state = {
            r.state: int(r.n)
            for r in conn.execute(
                select(rights_requests.c.state, func.count().label("n")).group_by(
                    rights_requests.c.state
                )
            )
        }
        is_open = rights_requests.c.state.in_(OPEN_STATES)
        overdue = conn.execute(select(func.count()).where(is_open, deadline < today)).scalar_one()
        due_soon = conn.execute(
            select(func.count()).where(is_open, deadline >= today, deadline <= soon)
        ).scalar_one()
    return Workload(
        sum(by_state.get(s, 0) for s in OPEN_STATES), int(due_soon), int(overdue), by_state
    )


def check_identities(
    identities: Mapping[str, Sequence[str]], kinds: Sequence[str] = IDENTITY_KINDS
) -> dict[str, list[str]]:
    """Validated identities, without duplicates. E-mail addresses stay as typed: services
    store them either way, so the rights engine searches for them as typed and in lower
    case.

    Errors name the field, never the value."""
    out: dict[str, list[str]] = {}
    if not identities:
        raise RequestError(422, "Invalid request", "identities: give at least one identity")
    if len(identities) > len(kinds):
        raise RequestError(422, "Invalid request", "identities: too many kinds")
    for kind, values in identities.items():
        if kind not in kinds:
            raise RequestError(
                422,
                "Invalid request",
                f"identities: unknown kind; use {', '.join(kinds)}",
            )
        if not values or len(values) > 20:
            raise RequestError(422, "Invalid request", f"identities.{kind}: give 1 to 20 values")
        clean: list[str] = []
        for value in values:
            value = value.strip()
            if not value or len(value) > 254 or CONTROL_CHARS.search(value):
                raise RequestError(
                    422,
                    "Invalid request",
                    f"identities.{kind}: each value is 1-254 printable characters",
                )
            if kind == "email" and not _EMAIL.match(value):
                raise RequestError(
                    422, "Invalid request", "identities.email: not an e-mail address"
                )
            if value not in clean:
                clean.append(value)
        out[kind] = clean
    return out
