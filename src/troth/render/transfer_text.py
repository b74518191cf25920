"""What the privacy policy says about each transfer abroad, in words a reader understands.

For every recipient with a transfer mechanism: where the data goes, the safeguard and what
it means, and its specifics — the adequacy decisions relied on (from troth's shipped data
set, :mod:`troth.policy.adequacy`) with the partial scope the recipient meets, the standard
contractual clauses' decision and module, binding corporate rules, or the Art. 49
derogation and the situation it covers. Pure: a policy and a translator in, sentences out.

Official references from the data set are in English; they are put into the reader's
language through message patterns (e.g. "Commission Implementing Decision {number} of
{date}"), so another language is another catalogue, not code. A reference that matches no
pattern is quoted as it is.
"""

from __future__ import annotations

import datetime as dt
import re

from troth.policy.adequacy import (
    ADEQUACY,
    SCC,
    Decision,
    adequacy_data,
    covered_countries,
    decisions_relied_on,
)
from troth.policy.model import Policy, Recipient
from troth.render.i18n import Translator

__all__ = ["decision_title", "official_reference", "transfer_statements"]

BCR = "eu-gdpr:A46-2-b"
_NUMBER = r"(?:\(EU\) )?\d{4}/\d+(?:/E[CU])?"
_DATE = r"\d{1,2} [A-Z][a-z]+ \d{4}"
_DECISION = re.compile(rf"^Commission (Implementing )?Decision ({_NUMBER})(?: of ({_DATE}))?$")
_EXTENDED = re.compile(rf"^(.+), as extended by the Commission Implementing Decision of ({_DATE})$")
_RENEWING = re.compile(
    rf"^Commission Implementing Decision of ({_DATE}) renewing the adequacy finding of "
    rf"Implementing Decision ({_NUMBER})$"
)
_TITLE = re.compile(r"^(.+?) \((.+)\)$")


def _date(text: str, t: Translator) -> str:
    return t.date(dt.datetime.strptime(text, "%d %B %Y").date())


def _decision(m: re.Match[str], t: Translator) -> str:
    _ = t.gettext
    implementing, number, date = m.groups()
    if implementing:
        if date:
            message = _("Commission Implementing Decision {number} of {date}")
        else:
            message = _("Commission Implementing Decision {number}")
    elif number.endswith("/EC"):  # adopted before the Lisbon Treaty (e.g. "Entscheidung")
        number = number.removesuffix("/EC")
        if date:
            message = _("Commission Decision {number}/EC of {date}")
        else:
            message = _("Commission Decision {number}/EC")
    elif date:
        message = _("Commission Decision {number} of {date}")
    else:
        message = _("Commission Decision {number}")
    return message.format(number=number, date=_date(date, t) if date else "")


def official_reference(reference: str, t: Translator) -> str:
    """An EU Commission decision's reference in the reader's language; anything else (UK
    legislation, an unknown form) as it is."""
    _ = t.gettext
    m = _DECISION.match(reference)
    if m:
        return _decision(m, t)
    m = _EXTENDED.match(reference)
    if m:
        inner = _DECISION.match(m.group(1))
        if inner:
            return _(
                "{decision}, as extended by the Commission Implementing Decision of {date}"
            ).format(decision=_decision(inner, t), date=_date(m.group(2), t))
    m = _RENEWING.match(reference)
    if m:
        return _(
            "Commission Implementing Decision of {date} renewing the adequacy finding of "
            "Implementing Decision {number}"
        ).format(date=_date(m.group(1), t), number=m.group(2))
    return reference


def _qualifiers(t: Translator) -> dict[str, str]:
    _ = t.gettext
    return {
        "EU-U.S. Data Privacy Framework": _("EU-U.S. Data Privacy Framework"),
        "EU-U.S. Privacy Shield": _("EU-U.S. Privacy Shield"),
        "Safe Harbour": _("Safe Harbour"),
        "UK-US data bridge": _("UK-US data bridge"),
        "commercial organisations": _("commercial organisations"),
        "private sector": _("private sector"),
        "2021 decision": _("2021 decision"),
        "renewed": _("renewed"),
        "international organisation": _("international organisation"),
        "EEA states and Gibraltar": _("EEA states and Gibraltar"),
        "European Patent Organisation": _("European Patent Organisation"),
    }


def decision_title(d: Decision, t: Translator) -> str:
    """A decision's title in the reader's language: the country's name, and the known
    qualifiers of the data set's titles ('United States (EU-U.S. Data Privacy Framework)')."""
    known = _qualifiers(t)
    m = _TITLE.match(d.title)
    head, qualifier = (m.group(1), m.group(2)) if m else (d.title, None)
    if len(d.countries) == 1 and not d.organisation:
        head = t.country(next(iter(d.countries)))
    else:
        head = known.get(head, head)
    if qualifier is None:
        return head
    return f"{head} ({known.get(qualifier, qualifier)})"


def _conditions(t: Translator) -> dict[str, str]:
    """What a recipient meets to fall inside a partial adequacy decision."""
    _ = t.gettext
    return {
        "dpf_certified": _(
            "it is certified under the EU-U.S. Data Privacy Framework (listed as an active "
            "participant on the Data Privacy Framework List of the US Department of Commerce)"
        ),
        "dpf_uk_extension": _(
            "it participates in the UK Extension to the EU-U.S. Data Privacy Framework (listed "
            "on the Data Privacy Framework List of the US Department of Commerce)"
        ),
        "pipeda": _(
            "it is a commercial organisation subject to Canada's Personal Information "
            "Protection and Electronic Documents Act (PIPEDA)"
        ),
        "appi": _(
            "it is a business subject to Japan's Act on the Protection of Personal Information "
            "(APPI) and applies the supplementary rules for data from the EU and the UK"
        ),
        "pipa": _(
            "it is subject to the Personal Information Protection Act (PIPA) of the Republic "
            "of Korea"
        ),
    }


def _situations(t: Translator) -> dict[str, str]:
    """The situation each Art. 49(1) derogation covers."""
    _ = t.gettext
    return {
        "eu-gdpr:A49-1-a": _(
            "you have explicitly agreed to the transfer after we informed you of its possible risks"
        ),
        "eu-gdpr:A49-1-b": _(
            "the transfer is necessary to perform our contract with you, or steps you asked "
            "for before entering into it"
        ),
        "eu-gdpr:A49-1-c": _(
            "the transfer is necessary to conclude or perform a contract made in your interest "
            "with another party"
        ),
        "eu-gdpr:A49-1-d": _("the transfer is necessary for important reasons of public interest"),
        "eu-gdpr:A49-1-e": _(
            "the transfer is necessary to establish, exercise or defend legal claims"
        ),
        "eu-gdpr:A49-1-f": _(
            "the transfer is necessary to protect your vital interests or those of another "
            "person where you cannot give consent"
        ),
    }


def _modules(t: Translator) -> dict[int, str]:
    _ = t.gettext
    return {
        1: _("controller to controller"),
        2: _("controller to processor"),
        3: _("processor to processor"),
        4: _("processor to controller"),
    }


def _destinations(policy: Policy, r: Recipient, t: Translator) -> list[str]:
    _ = t.gettext
    lead = {
        "eu": _("Transferred out of the European Economic Area to: {countries}."),
        "uk": _("Transferred out of the United Kingdom to: {countries}."),
    }
    return [
        lead[regime].format(countries=t.join([t.country(c) for c in countries]))
        for regime, countries in covered_countries(policy, r).items()
        if regime in lead
    ]


def _adequacy(policy: Policy, r: Recipient, t: Translator, article: str) -> list[str]:
    _ = t.gettext
    assert r.transfer is not None
    relied = decisions_relied_on(policy, r, policy.effective)
    regimes = {d.regime for d in relied} or {"eu"}
    out = []
    if "eu" in regimes:
        out.append(
            _(
                "Safeguard: an adequacy decision ({article}). The European Commission has "
                "found that the country ensures a level of data protection essentially "
                "equivalent to that in the European Union."
            ).format(article=article)
        )
    if "uk" in regimes:
        out.append(
            _(
                "Safeguard: UK adequacy regulations (Art. 45 UK GDPR). The United Kingdom has "
                "found that the country ensures an adequate level of data protection."
            )
        )
    stated = set(r.transfer.adequacy_scope)
    conditions = _conditions(t)
    data = adequacy_data()
    for d in relied:
        message = (
            _("Decision relied on: {title}, {reference}.")
            if d.regime == "eu"
            else _("UK adequacy regulations relied on: {title}, {reference}.")
        )
        out.append(
            message.format(title=decision_title(d, t), reference=official_reference(d.reference, t))
        )
        if d.expires is not None:
            out.append(_("It expires on {date}.").format(date=t.date(d.expires)))
        if d.condition is not None and d.condition in stated:
            meets = conditions.get(d.condition, data.conditions.get(d.condition, d.condition))
            out.append(
                _(
                    "This decision covers only some recipients in the country; it covers this "
                    "recipient because {condition}."
                ).format(condition=meets)
            )
    return out


def _scc(r: Recipient, t: Translator, article: str) -> list[str]:
    _ = t.gettext
    assert r.transfer is not None
    out = [
        _(
            "Safeguard: standard contractual clauses ({article}). The recipient has signed a "
            "contract in terms adopted by the European Commission that obliges it to protect "
            "the data as required in the European Union and gives you rights you can enforce."
        ).format(article=article)
    ]
    clauses = adequacy_data().scc.get(r.transfer.scc)
    decision: str = r.transfer.scc
    if clauses is not None:
        decision = official_reference(clauses.title.rpartition(", ")[2], t)
    module = r.transfer.scc_module
    if module is not None:
        out.append(
            _("Clauses used: {decision}, module {module} ({relation}).").format(
                decision=decision, module=module, relation=_modules(t)[module]
            )
        )
    else:
        out.append(_("Clauses used: {decision}.").format(decision=decision))
    return out


def _stated_elsewhere(reference: str, policy: Policy, r: Recipient) -> bool:
    """Whether the policy's own reference only names decisions already stated from the data
    set (e.g. 'EU-U.S. Data Privacy Framework (Commission Implementing Decision (EU)
    2023/1795)')."""
    assert r.transfer is not None
    numbers = set(re.findall(r"\d{4}/\d+", reference))
    if not numbers:
        return False
    relied = decisions_relied_on(policy, r, policy.effective)
    known = {n for d in relied for n in re.findall(r"\d{4}/\d+", d.reference)}
    if r.transfer.mechanism == SCC:
        known.add(r.transfer.scc)
    return numbers <= known


def transfer_statements(
    policy: Policy, r: Recipient, t: Translator, *, mechanism: str, article: str
) -> list[str]:
    """The sentences that state ``r``'s transfer: destination, safeguard and specifics.
    ``mechanism`` is the mechanism's name and ``article`` its citation, in ``t``'s
    language."""
    _ = t.gettext
    transfer = r.transfer
    if transfer is None:
        return []
    out = _destinations(policy, r, t)
    kind = transfer.mechanism
    situations = _situations(t)
    if kind == ADEQUACY:
        out += _adequacy(policy, r, t, article)
    elif kind == SCC:
        out += _scc(r, t, article)
    elif kind == BCR:
        out.append(
            _(
                "Safeguard: binding corporate rules ({article}). Data protection rules that "
                "bind every company of the recipient's group, approved by a data protection "
                "supervisory authority, give you rights you can enforce."
            ).format(article=article)
        )
    elif kind in situations:
        out.append(
            _(
                "There is no adequacy decision or other safeguard for this transfer. It rests "
                "on an exception the law allows in specific situations ({article}): "
                "{situation}."
            ).format(article=article, situation=situations[kind])
        )
    else:
        out.append(
            _("Safeguard: {mechanism} ({article}).").format(mechanism=mechanism, article=article)
        )
    if transfer.reference and not _stated_elsewhere(transfer.reference, policy, r):
        out.append(_("Reference: {reference}.").format(reference=transfer.reference.rstrip(".")))
    if transfer.note:
        out.append(t.text(transfer.note))
    if transfer.valid_until is not None:
        out.append(
            _("This safeguard applies until {date}.").format(date=t.date(transfer.valid_until))
        )
    if transfer.assessed is not None:
        assessed = _(
            "We assessed the risks of this transfer on {date} (transfer impact assessment)."
        )
        out.append(assessed.format(date=t.date(transfer.assessed)))
    return out
