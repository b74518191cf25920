"""Reports: hits per day, technology kind and campaign, split by consent state."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, func, select

from troth.store.engine import reading
from troth.store.tables import tracking_aggregates

__all__ = ["stats"]


def stats(engine: Engine, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """One row per (day, kind, campaign, consent), oldest first; from the counts only."""
    a = tracking_aggregates
    query = (
        select(a.c.day, a.c.kind, a.c.campaign, a.c.consent, func.sum(a.c.count).label("count"))
        .where(a.c.day >= start, a.c.day <= end)
        .group_by(a.c.day, a.c.kind, a.c.campaign, a.c.consent)
        .order_by(a.c.day, a.c.kind, a.c.campaign, a.c.consent)
    )
    with reading(engine).connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "day": r.day.isoformat(),
            "kind": r.kind,
            "campaign": r.campaign,
            "consent": r.consent,
            "count": int(r[4]),
        }
        for r in rows
    ]
