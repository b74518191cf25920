"""Ids must be unique and every reference must point at something declared."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Iterator, Sequence

from troth.policy.model import Policy
from troth.policy.types import quote

__all__ = ["reference_problems"]

Loc = tuple[str | int, ...]
ReferenceProblem = tuple[Loc, str, bool]


def _duplicates(
    items: Sequence[object], attr: str, where: Loc, what: str
) -> Iterator[ReferenceProblem]:
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        key = str(getattr(item, attr))
        if key in first:
            yield (
                (*where, i, attr),
                f"duplicate {what} '{key}' (also {_item(where, first[key])})",
                False,
            )
        else:
            first[key] = i


def _item(where: Loc, index: int) -> str:
    return ".".join(str(p) for p in where) + f"[{index}]"


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _refs(
    values: Iterable[str | None], known: set[str], loc: Loc, what: str, *, single: bool = False
) -> Iterator[ReferenceProblem]:
    for i, value in enumerate(values):
        if value is None or value in known:
            continue
        names = sorted(known)
        close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        declared = f"; declared: {shown}" if not close and known else ""
        yield (
            (loc if single else (*loc, i)),
            f"unknown {what} {quote(value)}{hint}{declared}",
            False,
        )


def reference_problems(policy: Policy, limit: int = 1_000_000) -> list[ReferenceProblem]:
    """Duplicate ids and dangling references (at most ``limit``), with where they were written."""
    out: list[ReferenceProblem] = []

    def take(found: Iterable[ReferenceProblem]) -> None:
        out.extend(itertools.islice(found, max(0, limit - len(out))))

    out += _duplicates(policy.subjects, "id", ("subjects",), "subject id")
    out += _duplicates(policy.categories, "id", ("categories",), "category id")
    out += _duplicates(policy.consent_categories, "id", ("consent_categories",), "consent id")
    out += _duplicates(policy.purposes, "id", ("purposes",), "purpose id")
    out += _duplicates(policy.tracking, "id", ("tracking",), "tracking id")
    out += _duplicates(policy.recipients, "id", ("recipients",), "recipient id")
    out += _duplicates(policy.choices, "id", ("choices",), "choice id")
    out += _duplicates(policy.security_measures, "id", ("security_measures",), "measure id")
    out += _duplicates(policy.jurisdictions, "id", ("jurisdictions",), "jurisdiction id")
    out += _duplicates(policy.rights, "right", ("rights",), "right")
    seen_langs: set[str] = set()
    for i, lang in enumerate(policy.languages):
        if lang in seen_langs:
            out.append((("languages", i), f"language '{lang}' is listed twice", False))
        seen_langs.add(lang)

    activity_at: dict[str, Loc] = {}
    for pi, purpose in enumerate(policy.purposes):
        for ai, activity in enumerate(purpose.activities):
            loc: Loc = ("purposes", pi, "activities", ai)
            if activity.id in activity_at:
                other = _dotted(activity_at[activity.id])
                out.append(
                    ((*loc, "id"), f"duplicate activity id '{activity.id}' (also {other})", False)
                )
            else:
                activity_at[activity.id] = loc

    subjects = {s.id for s in policy.subjects}
    categories = {c.id for c in policy.categories}
    consents = {c.id for c in policy.consent_categories}
    purposes = {p.id for p in policy.purposes}
    recipients = {r.id for r in policy.recipients}

    for pi, purpose in enumerate(policy.purposes):
        for ai, activity in enumerate(purpose.activities):
            loc = ("purposes", pi, "activities", ai)
            if len(out) >= limit:
                return out[:limit]
            take(_refs(activity.categories, categories, (*loc, "categories"), "data category"))
            take(_refs(activity.subjects, subjects, (*loc, "subjects"), "data subject"))
            take(
                _refs(
                    [activity.consent], consents, (*loc, "consent"), "consent category", single=True
                )
            )
    for ti, tech in enumerate(policy.tracking):
        if len(out) >= limit:
            return out[:limit]
        loc = ("tracking", ti)
        take(_refs([tech.vendor], recipients, (*loc, "vendor"), "recipient", single=True))
        take(_refs(tech.purposes, purposes, (*loc, "purposes"), "purpose"))
        if tech.category not in consents:
            out.append(
                (
                    (*loc, "category"),
                    f"tracking category '{tech.category}' is not declared in consent_categories",
                    False,
                )
            )
    for ri, recipient in enumerate(policy.recipients):
        if len(out) >= limit:
            return out[:limit]
        loc = ("recipients", ri)
        take(_refs(recipient.purposes, purposes, (*loc, "purposes"), "purpose"))
        take(_refs(recipient.categories, categories, (*loc, "categories"), "data category"))
    for ci, choice in enumerate(policy.choices):
        take(_refs(choice.applies_to, consents, ("choices", ci, "applies_to"), "consent category"))
    for ji, jurisdiction in enumerate(policy.jurisdictions):
        take(
            _refs(
                jurisdiction.gpc_refuses,
                consents,
                ("jurisdictions", ji, "gpc_refuses"),
                "consent category",
            )
        )
    return out
