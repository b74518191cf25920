"""Is a disclosure of these categories, for this purpose, to this recipient allowed today?

Pure: the policy and a date in, a :class:`TransferDecision` out. The recipient must be
declared, serve the purpose and receive the categories (its own list, or what its purposes
process when it lists none), and, where the data leaves the controller's region (the same
rule as ``troth check``: :func:`troth.policy.adequacy.transfer_countries`), rely on a
mechanism that is valid on that date (:func:`troth.policy.adequacy.transfer_problems`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from troth.policy.adequacy import transfer_countries, transfer_problems
from troth.policy.model import Policy, Recipient
from troth.policy.vocabulary import vocabulary

__all__ = ["TransferDecision", "decide_disclosure", "mechanism_detail", "recipient_categories"]


@dataclass(frozen=True)
class TransferDecision:
    allowed: bool
    rule: str  # allowed | recipient_undeclared | purpose_undeclared | category_undeclared |
    # country_required | country_undeclared | no_mechanism
    reason: str
    field: str = ""  # the request field the refusal is about
    mechanism: str | None = None  # the transfer basis relied on; None when nothing leaves
    detail: str = ""
    problems: tuple[str, ...] = ()
    country: str = ""  # the one country the data goes to (given, or the recipient's only one)


def recipient_categories(policy: Policy, recipient: Recipient) -> set[str]:
    if recipient.categories:
        return set(recipient.categories)
    return {
        c for p in policy.purposes if p.id in recipient.purposes for a in p.activities
        for c in a.categories
    }  # fmt: skip


def mechanism_detail(recipient: Recipient) -> str:
    t = recipient.transfer
    if t is None:
        return ""
    if t.mechanism == "eu-gdpr:A46-2-c":
        return f"SCC {t.scc}" + (f" module {t.scc_module}" if t.scc_module else "")
    if t.adequacy:
        return ", ".join(t.adequacy)
    return t.reference or ""


def decide_disclosure(
    policy: Policy,
    recipient_id: str,
    purpose: str,
    categories: Sequence[str],
    on: dt.date,
    country: str | None = None,
) -> TransferDecision:
    recipient = next((r for r in policy.recipients if r.id == recipient_id), None)
    if recipient is None:
        return TransferDecision(
            False,
            "recipient_undeclared",
            f"'{recipient_id}' is not a recipient the policy declares",
            "recipient",
        )
    if purpose not in recipient.purposes:
        return TransferDecision(
            False,
            "purpose_undeclared",
            f"the policy does not declare '{recipient.id}' as a recipient for '{purpose}' "
            f"(it is declared for: {', '.join(recipient.purposes)})",
            "purpose",
        )
    allowed = recipient_categories(policy, recipient)
    extra = [c for c in categories if c not in allowed]
    if extra:
        return TransferDecision(
            False,
            "category_undeclared",
            f"the policy does not declare that '{recipient.id}' receives "
            f"{', '.join(sorted(extra))}",
            "categories",
        )
    vocab = vocabulary()
    declared = {c: vocab.members(c) for c in recipient.countries}
    places = set().union(*declared.values())
    if country is None:
        if len(places) != 1:
            return TransferDecision(
                False,
                "country_required",
                f"'{recipient.id}' is declared in {', '.join(recipient.countries)}: name the "
                "one country this disclosure goes to",
                "country",
            )
        [country] = places
    country = country.upper()
    if country not in places:
        return TransferDecision(
            False,
            "country_undeclared",
            f"the policy declares '{recipient.id}' in {', '.join(recipient.countries)}, "
            f"not in {country}",
            "country",
        )
    # the declared entries (a country, or a union such as EEA) the destination belongs to
    entries = {code for code, members in declared.items() if country in members}
    leaving = set(transfer_countries(policy, recipient))
    if not entries & leaving:
        return TransferDecision(True, "allowed", "", mechanism=None, country=country)
    problems = [
        p
        for p in transfer_problems(policy, recipient, on)
        if p.country is None or p.country in entries
    ]
    if problems:
        return TransferDecision(
            False,
            "no_mechanism",
            f"no transfer mechanism for '{recipient.id}' is valid on {on}: "
            + "; ".join(p.message for p in problems),
            "recipient",
            problems=tuple(p.message for p in problems),
        )
    assert recipient.transfer is not None
    return TransferDecision(
        True,
        "allowed",
        "",
        mechanism=recipient.transfer.mechanism,
        detail=mechanism_detail(recipient),
        country=country,
    )
