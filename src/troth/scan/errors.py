"""The scan capability's error (a :class:`~troth.errors.TrothError`)."""

from __future__ import annotations

from troth.errors import TrothError

__all__ = ["ScanError"]


class ScanError(TrothError):
    """A scan that cannot run: a bad URL, option or database, no browser, an unreachable site."""
