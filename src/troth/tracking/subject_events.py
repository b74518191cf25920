"""A consented visitor's tracking events, for data subject rights: found, and erased.

Only events kept with consent carry a stable visitor: ``c:`` (a site visitor who consented)
or ``s:`` (an e-mail recipient) and the subject's keyed hash; daily-salted visitors cannot
be linked to anyone once the salt is gone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from troth.store.tables import tracking_events

__all__ = [
    "EVENT_COLUMNS",
    "consented_visitor",
    "erase_events",
    "events_of",
    "mail_visitor",
    "visitors_of",
]

EVENT_COLUMNS = ("id", "at", "tech_id", "kind", "name", "campaign", "page", "ip_prefix")


def consented_visitor(subject_hash: str) -> str:
    """How a site visitor who consented to analytics is stored on their events."""
    return "c:" + subject_hash[:40]


def mail_visitor(subject_hash: str) -> str:
    """How the recipient of a tagged e-mail is stored on their opens and clicks."""
    return "s:" + subject_hash[:40]


def visitors_of(subject_hash: str) -> tuple[str, str]:
    """Every stored visitor that is this subject."""
    return consented_visitor(subject_hash), mail_visitor(subject_hash)


def events_of(conn: Connection, visitors: Sequence[str]) -> list[dict[str, Any]]:
    """The events of these stored visitors: the columns above and ``visitor``."""
    columns = [tracking_events.c[c] for c in EVENT_COLUMNS]
    query = select(*columns, tracking_events.c.visitor).where(
        tracking_events.c.visitor.in_(list(visitors))
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def erase_events(conn: Connection, ids: Sequence[Any]) -> int:
    """Delete these events in the caller's transaction."""
    deleted = 0
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        deleted += conn.execute(
            delete(tracking_events).where(tracking_events.c.id.in_(chunk))
        ).rowcount
    return int(deleted)
