"""Consent rates over time, for the admin overview: per day and category, the share of
choices that gave consent."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from troth.policy.model import Policy
from troth.policy.types import text_for
from troth.store.tables import consent_events

__all__ = ["ConsentReport", "consent_report"]

_STATUSES = ("given", "refused", "withdrawn")


@dataclass
class ConsentReport:
    """Per day (UTC) and category: how many choices were given among given / refused /
    withdrawn, over the last ``days`` days."""

    days: int
    first: dt.date
    last: dt.date
    categories: list[tuple[str, str]]  # (id, name)
    counts: dict[tuple[dt.date, str], tuple[int, int]] = field(default_factory=dict)
    capped: int | None = None  # set when only the latest N choices were read

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def table(self) -> list[tuple[dt.date, list[tuple[int, int] | None]]]:
        """Rows for the days with any choice, newest first: per category (given, total)."""
        rows = []
        for day in reversed(self.dates()):
            cells = [self.counts.get((day, c)) for c, _ in self.categories]
            if any(cells):
                rows.append((day, cells))
        return rows

    def share(self, day: dt.date, category: str) -> float | None:
        given, total = self.counts.get((day, category), (0, 0))
        return given / total if total else None


def consent_report(
    engine: Engine,
    policy: Policy,
    days: int = 30,
    *,
    limit: int = 20_000,
    today: dt.date | None = None,
) -> ConsentReport:
    """Consent rates from ``consent_events``. Reads at most the latest ``limit`` events
    (newest first, along the primary key), so the page costs the same on any table size."""
    last = today or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    with engine.connect() as conn:
        rows = conn.execute(
            select(consent_events.c.created_at, consent_events.c.choices)
            .order_by(consent_events.c.id.desc())
            .limit(limit)
        ).all()
    tally: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0])
    oldest = last
    for row in rows:
        moment = row.created_at
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        day = moment.astimezone(dt.UTC).date()
        oldest = min(oldest, day)
        if not first <= day <= last:
            continue
        choices = row.choices if isinstance(row.choices, Mapping) else json.loads(row.choices)
        for category, status in choices.items():
            if status in _STATUSES:
                counts = tally[(day, str(category))]
                counts[0] += status == "given"
                counts[1] += 1
    lang = policy.default_language
    categories = [
        (c.id, text_for(c.name, lang, lang) or c.id)
        for c in policy.consent_categories
        if not c.required
    ]
    known = {c for c, _ in categories}
    categories += [(c, c) for c in sorted({c for _, c in tally} - known)]
    return ConsentReport(
        days,
        first,
        last,
        categories,
        {key: (g, t) for key, (g, t) in tally.items()},
        capped=limit if len(rows) == limit and oldest >= first else None,
    )
