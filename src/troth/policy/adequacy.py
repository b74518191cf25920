"""Adequacy decisions and transfer mechanisms: is a transfer lawful on a given date?

The shipped, versioned data set ``data/adequacy.json`` lists the EU Commission's adequacy
decisions (GDPR Art. 45(3)) and the UK's adequacy regulations, each with its countries,
scope, the condition a recipient must meet where the decision is partial (the EU-U.S. Data
Privacy Framework covers certified organisations only), and its dates; and the standard
contractual clauses decisions with theirs. A decision applies from ``applies_from`` and no
longer applies from ``expires`` or ``ended`` (the first day it is gone).

:func:`transfer_problems` is the one rule both ``troth check`` (on the policy's effective
date) and the disclosure decisions of :mod:`troth.transfers` (on the day of a disclosure)
use. It is pure: no I/O beyond reading the shipped data once.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from troth.policy.model import Policy, Recipient
from troth.policy.vocabulary import vocabulary

__all__ = [
    "AdequacyData",
    "Decision",
    "SccDecision",
    "TransferProblem",
    "adequacy_data",
    "controller_region",
    "covered_countries",
    "decisions_relied_on",
    "regimes_of",
    "transfer_countries",
    "transfer_problems",
]

ADEQUACY = "eu-gdpr:A45-3"
SCC = "eu-gdpr:A46-2-c"


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class Decision:
    """One adequacy decision (or UK adequacy regulation)."""

    id: str
    regime: str
    countries: frozenset[str]
    title: str
    reference: str
    applies_from: dt.date
    expires: dt.date | None = None
    ended: dt.date | None = None
    ended_by: str | None = None
    condition: str | None = None
    scope: str | None = None
    organisation: str | None = None

    def in_force(self, on: dt.date) -> bool:
        gone = min((d for d in (self.expires, self.ended) if d is not None), default=None)
        return self.applies_from <= on and (gone is None or on < gone)

    def gone_since(self) -> dt.date | None:
        return min((d for d in (self.expires, self.ended) if d is not None), default=None)

    def covers(self, country: str, organisation: str | None) -> bool:
        """A decision for an international organisation covers transfers to that
        organisation only (wherever it is), and only when the recipient says it is it. A
        union such as ``EEA`` is covered when all its members are."""
        if self.organisation is not None:
            return organisation == self.organisation
        return vocabulary().members(country) <= self.countries


@dataclass(frozen=True, slots=True)
class SccDecision:
    id: str
    title: str
    applies_from: dt.date
    expires: dt.date | None
    modules: bool

    def in_force(self, on: dt.date) -> bool:
        return self.applies_from <= on and (self.expires is None or on < self.expires)


@dataclass(frozen=True)
class AdequacyData:
    version: str
    reviewed: dt.date
    regimes: dict[str, tuple[frozenset[str], tuple[Decision, ...]]]
    decisions: dict[str, Decision]
    conditions: dict[str, str]
    scc: dict[str, SccDecision]
    sources: tuple[str, ...]

    def for_country(self, regime: str, country: str) -> list[Decision]:
        """The regime's decisions for a country (for a union: for all its members)."""
        return [d for d in self.regimes[regime][1] if d.covers(country, None)]

    def for_organisation(self, organisation: str | None) -> list[Decision]:
        if organisation is None:
            return []
        return [d for d in self.decisions.values() if d.organisation == organisation]

    @property
    def organisations(self) -> dict[str, str]:
        """International organisations with a decision: id -> title."""
        return {d.organisation: d.title for d in self.decisions.values() if d.organisation}

    def pool(self, kind: str) -> Mapping[str, object]:
        """The known ids of a kind: 'decision', 'condition' or 'organisation'."""
        pools: dict[str, Mapping[str, object]] = {
            "decision": self.decisions,
            "condition": self.conditions,
            "organisation": self.organisations,
        }
        return pools[kind]

    def suggest(self, kind: str, value: str) -> str:
        pool = self.pool(kind)
        close = difflib.get_close_matches(value, list(pool), n=3, cutoff=0.6)
        return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _members(codes: list[str]) -> frozenset[str]:
    vocab = vocabulary()
    out: set[str] = set()
    for code in codes:
        out |= vocab.members(code)
    return frozenset(out)


@functools.cache
def adequacy_data() -> AdequacyData:
    """The shipped data set, read once."""
    raw = json.loads(
        resources.files("troth.policy").joinpath("data/adequacy.json").read_text("utf-8")
    )
    regimes: dict[str, tuple[frozenset[str], tuple[Decision, ...]]] = {}
    decisions: dict[str, Decision] = {}
    for name, regime in raw["regimes"].items():
        found = []
        for d in regime["decisions"]:
            decision = Decision(
                id=d["id"],
                regime=name,
                countries=_members(d["countries"]),
                title=d["title"],
                reference=d["reference"],
                applies_from=dt.date.fromisoformat(d["applies_from"]),
                expires=_date(d.get("expires")),
                ended=_date(d.get("ended")),
                ended_by=d.get("ended_by"),
                condition=d.get("condition"),
                scope=d.get("scope"),
                organisation=d.get("organisation"),
            )
            found.append(decision)
            decisions[decision.id] = decision
        regimes[name] = (_members(regime["from"]), tuple(found))
    scc = {
        key: SccDecision(
            key,
            v["title"],
            dt.date.fromisoformat(v["applies_from"]),
            _date(v.get("expires")),
            bool(v["modules"]),
        )
        for key, v in raw["scc"].items()
    }
    return AdequacyData(
        version=raw["version"],
        reviewed=dt.date.fromisoformat(raw["reviewed"]),
        regimes=regimes,
        decisions=decisions,
        conditions=dict(raw["conditions"]),
        scc=scc,
        sources=tuple(raw["sources"]),
    )


def regimes_of(policy: Policy) -> list[str]:
    """The transfer regimes that bind the controller: 'eu' for an establishment in the
    EEA, 'uk' for one in the United Kingdom."""
    data = adequacy_data()
    members = _members(list(policy.controller.establishments))
    return [name for name, (home, _) in data.regimes.items() if members & home]


def covered_countries(policy: Policy, recipient: Recipient) -> dict[str, list[str]]:
    """Per regime, the recipient's countries that receive data as a transfer (outside the
    regime's own area)."""
    data = adequacy_data()
    vocab = vocabulary()
    out: dict[str, list[str]] = {}
    for regime in regimes_of(policy):
        home = data.regimes[regime][0]
        outside = [c for c in recipient.countries if not vocab.members(c) <= home]
        if outside:
            out[regime] = outside
    return out


def controller_region(policy: Policy) -> frozenset[str]:
    """The countries data moves between freely: the EEA for an establishment in it, else
    the establishments' own countries."""
    vocab = vocabulary()
    eea = vocab.members("EEA")
    region: set[str] = set()
    for code in policy.controller.establishments:
        members = vocab.members(code)
        region |= eea if members & eea else members
    return frozenset(region)


def transfer_countries(policy: Policy, recipient: Recipient) -> list[str]:
    """The recipient's countries whose data is a transfer: outside the area of a regime that
    binds the controller, or, where none binds, outside the controller's region."""
    if regimes_of(policy):
        moving = covered_countries(policy, recipient)
        return sorted({c for cs in moving.values() for c in cs})
    vocab = vocabulary()
    region = controller_region(policy)
    return [c for c in recipient.countries if not vocab.members(c) <= region]


def decisions_relied_on(policy: Policy, recipient: Recipient, on: dt.date) -> list[Decision]:
    """The adequacy decisions in force on ``on`` that the recipient's transfer rests on:
    those it names, else those covering its transfer countries."""
    t = recipient.transfer
    if t is None or t.mechanism != ADEQUACY:
        return []
    data = adequacy_data()
    if t.adequacy:
        named = [data.decisions[i] for i in t.adequacy]
        found = [d for d in named if d.organisation in (None, t.organisation)]
    else:
        found = [
            d
            for regime, countries in covered_countries(policy, recipient).items()
            for c in countries
            for d in data.for_country(regime, c)
        ]
        bound = regimes_of(policy)
        found += [d for d in data.for_organisation(t.organisation) if d.regime in bound]
    return sorted({d.id: d for d in found if d.in_force(on)}.values(), key=lambda d: d.id)


@dataclass(frozen=True)
class TransferProblem:
    """Why a recipient's transfer mechanism does not hold on a date."""

    code: str
    field: tuple[str | int, ...]  # relative to the recipient, e.g. ("transfer", "adequacy")
    message: str
    country: str | None = None


def transfer_problems(policy: Policy, recipient: Recipient, on: dt.date) -> list[TransferProblem]:
    """Everything that keeps ``recipient``'s transfer from being lawful on ``on``.

    Where no regime troth knows binds the controller, only a missing mechanism is found
    (T020): troth has no adequacy list to check the mechanism against."""
    leaving = transfer_countries(policy, recipient)
    if not leaving:
        return []
    moving = covered_countries(policy, recipient)
    r = recipient
    t = r.transfer
    where = ", ".join(leaving)
    if t is None:
        return [
            TransferProblem(
                "T020",
                ("countries",),
                f"recipient '{r.id}' is in {where}, outside the controller's region, but has "
                "no transfer mechanism (add 'transfer'; GDPR Chapter V)",
            )
        ]
    if not moving:
        return []
    problems: list[TransferProblem] = []
    if t.valid_from is not None and on < t.valid_from:
        problems.append(
            TransferProblem(
                "T022",
                ("transfer", "valid_from"),
                f"the transfer mechanism of '{r.id}' only applies from {t.valid_from}, after {on}",
            )
        )
    if t.valid_until is not None and t.valid_until < on:
        problems.append(
            TransferProblem(
                "T022",
                ("transfer", "valid_until"),
                f"the transfer mechanism of '{r.id}' expired on {t.valid_until}, before {on}",
            )
        )
    if t.mechanism == ADEQUACY:
        for regime, countries in moving.items():
            for country in countries:
                problems.extend(_adequacy(r, regime, country, on))
    elif t.mechanism == SCC:
        problems.extend(_scc(r, on))
    return problems


def _adequacy(r: Recipient, regime: str, country: str, on: dt.date) -> list[TransferProblem]:
    assert r.transfer is not None
    data = adequacy_data()
    named = [data.decisions[i] for i in r.transfer.adequacy if data.decisions[i].regime == regime]
    organisation = r.transfer.organisation
    pool = named or [*data.for_country(regime, country), *data.for_organisation(organisation)]
    candidates = [d for d in pool if d.covers(country, organisation)]
    label = "EU" if regime == "eu" else "UK"
    if not candidates:
        what = (
            f"none of the named decisions ({', '.join(d.id for d in named)}) covers {country}"
            if named
            else f"there is no {label} adequacy decision for {country}"
        )
        for d in named:
            if d.organisation is not None:
                what += (
                    f" ({d.id} covers only transfers to the international organisation "
                    f"'{d.organisation}'; state 'organisation: {d.organisation}' in the "
                    "transfer only if the recipient is that organisation)"
                )
        return [
            TransferProblem(
                "T024",
                ("transfer", "adequacy") if named else ("transfer", "mechanism"),
                f"recipient '{r.id}' relies on adequacy, but {what}; use standard contractual "
                "clauses, binding corporate rules or a derogation",
                country,
            )
        ]
    current = [d for d in candidates if d.in_force(on)]
    if not current:
        latest = max(candidates, key=lambda d: d.applies_from)
        gone = latest.gone_since()
        why = (
            f"has not applied since {gone}" + (f" ({latest.ended_by})" if latest.ended_by else "")
            if gone is not None and gone <= on
            else f"applies only from {latest.applies_from}"
        )
        return [
            TransferProblem(
                "T025",
                ("transfer", "adequacy") if named else ("transfer", "mechanism"),
                f"the {label} adequacy decision for {country} relied on by '{r.id}' "
                f"({latest.id}: {latest.reference}) {why}; it is not valid on {on}",
                country,
            )
        ]
    stated = set(r.transfer.adequacy_scope)
    if any(d.condition is None or d.condition in stated for d in current):
        return []
    d = current[0]
    assert d.condition is not None
    return [
        TransferProblem(
            "T026",
            ("transfer", "adequacy_scope"),
            f"the {label} adequacy decision for {country} ({d.id}) is partial: it covers only "
            f"transfers where {data.conditions[d.condition]}; recipient '{r.id}' does not state "
            f"this (add '{d.condition}' to 'adequacy_scope' if it is true, else use standard "
            "contractual clauses)",
            country,
        )
    ]


def _scc(r: Recipient, on: dt.date) -> list[TransferProblem]:
    assert r.transfer is not None
    t = r.transfer
    data = adequacy_data()
    clauses = data.scc[t.scc]
    problems: list[TransferProblem] = []
    if not clauses.in_force(on):
        when = (
            f"apply only from {clauses.applies_from}"
            if on < clauses.applies_from
            else f"no longer apply from {clauses.expires} (use the clauses of Implementing "
            "Decision (EU) 2021/914 with the right module)"
        )
        problems.append(
            TransferProblem(
                "T025",
                ("transfer", "scc"),
                f"recipient '{r.id}' uses the standard contractual clauses of Decision "
                f"{t.scc}, which {when}; they are not valid on {on}",
            )
        )
    if clauses.modules and t.scc_module is None:
        problems.append(
            TransferProblem(
                "T021",
                ("transfer",),
                f"recipient '{r.id}' uses standard contractual clauses but does not say which "
                "module (add 'scc_module': 1-4)",
            )
        )
    return problems
