"""Timestamps: always aware UTC (SQLite hands ``DateTime(timezone=True)`` back naive)."""

from __future__ import annotations

import datetime as dt

__all__ = ["aware", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
