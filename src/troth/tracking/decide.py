"""Decide what a tracking hit may leave behind: everything, a count, or nothing."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from troth.policy.model import TrackingTechnology

__all__ = ["HitDecision", "decide_hit"]

Outcome = Literal["full", "aggregate", "drop"]


@dataclass(frozen=True)
class HitDecision:
    outcome: Outcome
    reason: str


def decide_hit(
    tech: TrackingTechnology,
    allowed: Collection[str],
    *,
    required: Collection[str],
    dnt: bool = False,
) -> HitDecision:
    """``allowed``: the consent categories the visitor allows now (GPC already applied by
    the consent ledger for the visitor's jurisdiction). DNT is honoured as a refusal of
    every category that needs consent."""
    if tech.category in required:
        return HitDecision("full", "strictly necessary")
    if tech.category in allowed and not dnt:
        return HitDecision("full", f"consent '{tech.category}' given")
    why = "Do Not Track" if dnt else f"no consent to '{tech.category}'"
    if tech.without_consent == "aggregate":
        return HitDecision("aggregate", f"{why}: counted in aggregate only")
    return HitDecision("drop", f"{why}: dropped")
