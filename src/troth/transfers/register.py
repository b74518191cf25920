"""The register of recipients and transfers as of a date: for each recipient, where the data
goes, under which mechanism, on which decisions, and whether that holds on the date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from troth.policy.adequacy import decisions_relied_on, transfer_countries, transfer_problems
from troth.policy.model import Policy
from troth.policy.types import text_for
from troth.policy.vocabulary import vocabulary
from troth.transfers.decide import mechanism_detail

__all__ = ["CountryRow", "TransferStatus", "by_country", "transfer_register"]


@dataclass(frozen=True)
class TransferStatus:
    recipient: str
    name: str
    type: str
    role: str
    countries: list[str]
    transfer_countries: list[str]  # outside the controller's region
    mechanism: str | None
    mechanism_label: str
    detail: str
    decisions: list[str]  # adequacy decisions relied on, with their references
    assessed: dt.date | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "recipient": self.recipient,
            "name": self.name,
            "type": self.type,
            "role": self.role,
            "countries": self.countries,
            "transfer_countries": self.transfer_countries,
            "mechanism": self.mechanism,
            "mechanism_label": self.mechanism_label,
            "detail": self.detail,
            "decisions": self.decisions,
            "transfer_impact_assessment": self.assessed.isoformat() if self.assessed else None,
            "ok": self.ok,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class CountryRow:
    country: str
    name: str
    recipients: list[str]
    transfer: bool
    ok: bool


def transfer_register(policy: Policy, on: dt.date) -> list[TransferStatus]:
    vocab = vocabulary()
    lang = policy.default_language
    out = []
    for r in policy.recipients:
        moving = transfer_countries(policy, r)
        t = r.transfer
        mechanism = t.mechanism if (t is not None and moving) else None
        label = vocab.transfer_basis(mechanism).label if mechanism else ""
        decisions = (
            [f"{d.id}: {d.reference}" for d in decisions_relied_on(policy, r, on)]
            if mechanism
            else []
        )
        out.append(
            TransferStatus(
                recipient=r.id,
                name=text_for(r.name, lang, lang) or r.id,
                type=r.type,
                role=r.role,
                countries=list(r.countries),
                transfer_countries=moving,
                mechanism=mechanism,
                mechanism_label=label,
                detail=mechanism_detail(r) if mechanism else "",
                decisions=decisions,
                assessed=t.assessed if t is not None else None,
                problems=[p.message for p in transfer_problems(policy, r, on)],
            )
        )
    return out


def by_country(rows: list[TransferStatus]) -> list[CountryRow]:
    vocab = vocabulary()
    countries: dict[str, list[TransferStatus]] = {}
    for row in rows:
        for c in row.countries:
            countries.setdefault(c, []).append(row)
    return [
        CountryRow(
            c,
            vocab.country(c).label,
            [r.recipient for r in found],
            any(c in r.transfer_countries for r in found),
            all(r.ok for r in found if c in r.transfer_countries),
        )
        for c, found in sorted(countries.items())
    ]
