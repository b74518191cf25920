"""Data subject rights: requests, their per-datastore jobs, verification codes and
delivery links (F5)."""

from __future__ import annotations

from troth.store._schema import Id, metadata

__all__: list[str] = []

_ = (Id, metadata)
