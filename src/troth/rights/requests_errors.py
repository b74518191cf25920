"""The error of the request lifecycle, from troth's one hierarchy."""

from __future__ import annotations

from troth.errors import RequestError

__all__ = ["RequestError"]
