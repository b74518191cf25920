"""Recipients and transfers: the disclosure log and legal requests (F6)."""

from __future__ import annotations

from troth.store._schema import Id, metadata

__all__: list[str] = []

_ = (Id, metadata)
