"""A policy compiled into lookup tables for the paths that must be fast.

``compile_policy`` walks the model once; afterwards a purpose decision or a cookie lookup
is a few dictionary reads, with no parsing and no walk over the policy.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from troth.policy.model import Policy, TrackingTechnology
from troth.policy.vocabulary import BasisKind, vocabulary

__all__ = ["CompiledActivity", "CompiledPolicy", "Decision", "compile_policy"]


@dataclass(frozen=True, slots=True)
class CompiledActivity:
    id: str
    purpose: str
    basis: str
    basis_kind: BasisKind | None
    consent: str | None
    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a purpose may use some categories now, and which activity or rule says so."""

    allowed: bool
    purpose: str
    activities: tuple[str, ...] = ()
    reason: str = ""
    missing_consents: tuple[str, ...] = ()
    rule: str = ""  # allowed | policy | consent | ambiguous


@dataclass(frozen=True, slots=True)
class _Cover:
    """Which activities of one purpose cover one category, and on which bases."""

    without_consent: str | None
    with_consent: tuple[tuple[str, str], ...]
    activities: tuple[str, ...]
    bases: frozenset[str]


@dataclass(frozen=True)
class CompiledPolicy:
    policy: Policy
    activities: dict[str, CompiledActivity]
    activities_by_purpose: dict[str, tuple[CompiledActivity, ...]]
    purposes_by_category: dict[str, frozenset[str]]
    required_consents: frozenset[str]
    tracking_by_id: dict[str, TrackingTechnology]
    _cover: dict[tuple[str, str], _Cover] = field(repr=False)
    _cookie_exact: dict[str, TrackingTechnology] = field(repr=False)
    _cookie_patterns: tuple[tuple[re.Pattern[str], TrackingTechnology], ...] = field(repr=False)

    @property
    def version(self) -> str:
        return self.policy.version

    def decide(
        self,
        purpose: str,
        categories: Iterable[str],
        consents: Collection[str] = (),
        activity: str | None = None,
    ) -> Decision:
        """May ``purpose`` (through ``activity``, if named) use ``categories`` for someone
        who gave ``consents``?

        When activities of the purpose that cover a category rest on different legal bases,
        troth will not choose one for the caller (that would pick the most convenient basis
        after the fact): the caller must name the activity it is carrying out."""
        if purpose not in self.activities_by_purpose:
            return Decision(
                False, purpose, reason=f"purpose '{purpose}' is not declared", rule="policy"
            )
        if activity is not None:
            return self._decide_activity(purpose, list(categories), consents, activity)
        used: list[str] = []
        missing: list[str] = []
        for category in categories:
            cover = self._cover.get((purpose, category))
            if cover is None:
                return Decision(
                    False,
                    purpose,
                    reason=f"purpose '{purpose}' does not declare data category '{category}'",
                    rule="policy",
                )
            if len(cover.bases) > 1:
                return Decision(
                    False,
                    purpose,
                    reason=(
                        f"purpose '{purpose}' uses '{category}' in activities on different "
                        f"legal bases ({', '.join(cover.activities)}); name the activity"
                    ),
                    rule="ambiguous",
                )
            if cover.without_consent is not None:
                used.append(cover.without_consent)
                continue
            for consent, act in cover.with_consent:
                if consent in consents or consent in self.required_consents:
                    used.append(act)
                    break
            else:
                missing.extend(c for c, _ in cover.with_consent if c not in missing)
        if missing:
            return Decision(
                False,
                purpose,
                reason="consent not given: " + ", ".join(missing),
                missing_consents=tuple(missing),
                rule="consent",
            )
        return Decision(True, purpose, activities=tuple(dict.fromkeys(used)), rule="allowed")

    def _decide_activity(
        self, purpose: str, categories: list[str], consents: Collection[str], activity: str
    ) -> Decision:
        found = self.activities.get(activity)
        if found is None or found.purpose != purpose:
            return Decision(
                False,
                purpose,
                reason=f"purpose '{purpose}' has no activity '{activity}'",
                rule="policy",
            )
        outside = [c for c in categories if c not in found.categories]
        if outside:
            return Decision(
                False,
                purpose,
                reason=f"activity '{activity}' does not use {', '.join(outside)}",
                rule="policy",
            )
        consent = found.consent
        if (
            consent is not None
            and consent not in consents
            and consent not in self.required_consents
        ):
            return Decision(
                False,
                purpose,
                reason=f"consent not given: {consent}",
                missing_consents=(consent,),
                rule="consent",
            )
        return Decision(True, purpose, activities=(activity,), rule="allowed")

    def tracking_for_name(self, name: str) -> TrackingTechnology | None:
        """The declared cookie or storage key that ``name`` is, by exact name or pattern."""
        tech = self._cookie_exact.get(name)
        if tech is not None:
            return tech
        for pattern, candidate in self._cookie_patterns:
            if pattern.match(name):
                return candidate
        return None


def compile_policy(policy: Policy) -> CompiledPolicy:
    vocab = vocabulary()
    activities: dict[str, CompiledActivity] = {}
    by_purpose: dict[str, list[CompiledActivity]] = {}
    by_category: dict[str, set[str]] = {}
    cover_free: dict[tuple[str, str], str] = {}
    cover_consent: dict[tuple[str, str], list[tuple[str, str]]] = {}
    covering: dict[tuple[str, str], list[str]] = {}
    for purpose, activity in policy.activities():
        kind = vocab.basis_kind(vocab.legal_basis(activity.basis))
        compiled = CompiledActivity(
            id=activity.id,
            purpose=purpose.id,
            basis=activity.basis,
            basis_kind=kind,
            consent=activity.consent if kind == "consent" else None,
            categories=frozenset(activity.categories),
        )
        activities[activity.id] = compiled
        by_purpose.setdefault(purpose.id, []).append(compiled)
        for category in activity.categories:
            by_category.setdefault(category, set()).add(purpose.id)
            key = (purpose.id, category)
            covering.setdefault(key, []).append(activity.id)
            if compiled.consent is None:
                cover_free.setdefault(key, activity.id)
            else:
                cover_consent.setdefault(key, []).append((compiled.consent, activity.id))
    cover = {
        key: _Cover(
            cover_free.get(key),
            tuple(cover_consent.get(key, ())),
            tuple(covering[key]),
            frozenset(activities[a].basis for a in covering[key]),
        )
        for key in set(cover_free) | set(cover_consent)
    }
    exact: dict[str, TrackingTechnology] = {}
    patterns: list[tuple[re.Pattern[str], TrackingTechnology]] = []
    for tech in policy.tracking:
        if tech.name is not None:
            exact.setdefault(tech.name, tech)
        elif tech.pattern is not None:
            patterns.append((re.compile(fnmatch.translate(tech.pattern)), tech))
    return CompiledPolicy(
        policy=policy,
        activities=activities,
        activities_by_purpose={k: tuple(v) for k, v in by_purpose.items()},
        purposes_by_category={k: frozenset(v) for k, v in by_category.items()},
        required_consents=frozenset(c.id for c in policy.consent_categories if c.required),
        tracking_by_id={t.id: t for t in policy.tracking},
        _cover=cover,
        _cookie_exact=exact,
        _cookie_patterns=tuple(patterns),
    )
