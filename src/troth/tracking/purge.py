"""Retention: delete what each technology may no longer keep, and say so in the audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, delete

from troth.audit.log import AuditEvent, AuditLog
from troth.policy.model import Policy
from troth.policy.types import Duration
from troth.store.engine import writing
from troth.store.tables import tracking_aggregates, tracking_events

__all__ = ["purge"]


def purge(
    engine: Engine, policy: Policy, audit: AuditLog, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete events and counts older than each technology's retention; returns counts."""
    now = now or dt.datetime.now(dt.UTC)
    deleted: dict[str, int] = {}
    with writing(engine).begin() as conn:
        for tech in policy.tracking:
            if not isinstance(tech.retention, Duration):
                continue
            cutoff = now - dt.timedelta(seconds=tech.retention.approx_seconds())
            events = conn.execute(
                delete(tracking_events).where(
                    tracking_events.c.tech_id == tech.id, tracking_events.c.at < cutoff
                )
            ).rowcount
            counts = conn.execute(
                delete(tracking_aggregates).where(
                    tracking_aggregates.c.tech_id == tech.id,
                    tracking_aggregates.c.day < cutoff.date(),
                )
            ).rowcount
            if events or counts:
                deleted[tech.id] = int(events) + int(counts)
        audit.append(
            conn,
            [
                AuditEvent(
                    "tracking.purged",
                    "system:purge",
                    None,
                    {"deleted": deleted, "at": now.isoformat()},
                )
            ],
        )
        head = audit.take_head(conn)
    audit.publish(head)
    return deleted
