"""The deadline of a data subject request (GDPR Art. 12(3)): one calendar month from
receipt, extendable by up to two further months with a reason."""

from __future__ import annotations

import calendar
import datetime as dt

__all__ = ["DUE_SOON_DAYS", "MAX_EXTENSION_MONTHS", "add_months", "due_date"]

MAX_EXTENSION_MONTHS = 2
DUE_SOON_DAYS = 7


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later; the month's last day where that day does not exist
    (31 January + 1 month = 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def due_date(received_at: dt.datetime, extension_months: int = 0) -> dt.date:
    """The last day to answer a request received at ``received_at`` (UTC)."""
    return add_months(received_at.astimezone(dt.UTC).date(), 1 + extension_months)
