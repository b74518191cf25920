"""The scan capability's error, from troth's one hierarchy."""

from __future__ import annotations

from troth.errors import ScanError

__all__ = ["ScanError"]
