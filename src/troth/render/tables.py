"""The policy's tables as rows: tracking technologies, recipients and transfers, and the
record of processing activities (GDPR Art. 30(1))."""

from __future__ import annotations

from typing import Any

from troth.policy.adequacy import decisions_relied_on
from troth.policy.model import Policy
from troth.policy.vocabulary import vocabulary
from troth.render.document import (
    legal_article,
    recipient_type_names,
    tracking_type_names,
    transfer_mechanism_names,
)
from troth.render.i18n import Translator

__all__ = ["TABLE_COLUMNS", "recipient_rows", "record_of_processing", "tracking_rows"]

Row = dict[str, Any]


def tracking_rows(policy: Policy, t: Translator) -> list[Row]:
    types = tracking_type_names(t)
    consents = {c.id: t.text(c.name) for c in policy.consent_categories}
    vendors = {r.id: t.text(r.name) for r in policy.recipients}
    purposes = {p.id: t.text(p.title) for p in policy.purposes}
    return [
        {
            "id": x.id,
            "name": x.name or x.pattern,
            "match": "exact" if x.name else "pattern",
            "type": types[x.type],
            "party": x.party,
            "vendor": vendors.get(x.vendor or "", ""),
            "category": consents.get(x.category, x.category),
            "purposes": "; ".join(purposes.get(p, p) for p in x.purposes),
            "expiry": str(x.expiry) if x.expiry is not None else "",
            "expiry_text": t.duration(x.expiry) if x.expiry is not None else "",
            "domain": x.domain or "",
            "platforms": ", ".join(x.platforms),
            "description": t.text(x.description),
        }
        for x in policy.tracking
    ]


def recipient_rows(policy: Policy, t: Translator) -> list[Row]:
    types = recipient_type_names(t)
    mechanisms = transfer_mechanism_names(t)
    purposes = {p.id: t.text(p.title) for p in policy.purposes}
    categories = {c.id: t.text(c.name) for c in policy.categories}
    rows = []
    for r in policy.recipients:
        transfer = r.transfer
        rows.append(
            {
                "id": r.id,
                "name": t.text(r.name),
                "type": types[r.type],
                "role": r.role,
                "countries": ", ".join(r.countries),
                "purposes": "; ".join(purposes.get(p, p) for p in r.purposes),
                "categories": "; ".join(categories.get(c, c) for c in r.categories),
                "transfer_mechanism": mechanisms.get(transfer.mechanism, transfer.mechanism)
                if transfer
                else "",
                "transfer_article": legal_article(transfer.mechanism, t) if transfer else "",
                "scc_module": str(transfer.scc_module or "") if transfer else "",
                "transfer_reference": (transfer.reference or "") if transfer else "",
                "scc_decision": transfer.scc
                if transfer and transfer.mechanism == "eu-gdpr:A46-2-c"
                else "",
                "adequacy_decisions": "; ".join(
                    f"{d.title}: {d.reference}"
                    for d in decisions_relied_on(policy, r, policy.effective)
                ),
                "adequacy_scope": ", ".join(transfer.adequacy_scope) if transfer else "",
                "transfer_assessed": transfer.assessed.isoformat()
                if transfer and transfer.assessed
                else "",
                "opt_out": r.opt_out or "",
                "privacy_policy": r.privacy_policy or "",
            }
        )
    return rows


def record_of_processing(policy: Policy, t: Translator) -> list[Row]:
    """One row per processing activity, with every column GDPR Art. 30(1) asks for."""
    vocab = vocabulary()
    c = policy.controller
    dpo = ", ".join(x for x in ((t.text(c.dpo.name), c.dpo.email) if c.dpo else ()) if x)
    categories = {x.id: t.text(x.name) for x in policy.categories}
    subjects = {x.id: t.text(x.name) for x in policy.subjects}
    measures = "; ".join(t.text(m.title) for m in policy.security_measures)
    mechanisms = transfer_mechanism_names(t)
    rows = []
    for purpose, a in policy.activities():
        recipients = [r for r in policy.recipients if purpose.id in r.purposes]
        transfers = [
            f"{', '.join(r.countries)} ({t.text(r.name)}): "
            f"{mechanisms.get(r.transfer.mechanism, r.transfer.mechanism)}"
            for r in recipients
            if r.transfer is not None
        ]
        kind = vocab.basis_kind(vocab.legal_basis(a.basis))
        rows.append(
            {
                "controller": c.name,
                "controller_contact": c.email,
                "dpo": dpo,
                "purpose_id": purpose.id,
                "purpose": t.text(purpose.title),
                "activity_id": a.id,
                "activity": t.text(a.description),
                "legal_basis": legal_article(a.basis, t),
                "basis_kind": kind or "",
                "legitimate_interest": t.text(a.legitimate_interest),
                "consent_category": a.consent or "",
                "data_subjects": "; ".join(subjects.get(s, s) for s in a.subjects),
                "data_categories": "; ".join(categories.get(x, x) for x in a.categories),
                "recipients": "; ".join(t.text(r.name) for r in recipients),
                "third_country_transfers": "; ".join(transfers),
                "retention": str(a.retention.period) if a.retention else "",
                "retention_text": t.duration(a.retention.period) if a.retention else "",
                "security_measures": measures,
            }
        )
    return rows


TABLE_COLUMNS: dict[str, list[str]] = {
    "tracking": [
        "id", "name", "match", "type", "party", "vendor", "category", "purposes",
        "expiry", "expiry_text", "domain", "platforms", "description",
    ],
    "recipients": [
        "id", "name", "type", "role", "countries", "purposes", "categories",
        "transfer_mechanism", "transfer_article", "scc_decision", "scc_module",
        "adequacy_decisions", "adequacy_scope", "transfer_reference", "transfer_assessed",
        "opt_out", "privacy_policy",
    ],
    "record-of-processing": [
        "controller", "controller_contact", "dpo", "purpose_id", "purpose", "activity_id",
        "activity", "legal_basis", "basis_kind", "legitimate_interest", "consent_category",
        "data_subjects", "data_categories", "recipients", "third_country_transfers",
        "retention", "retention_text", "security_measures",
    ],
}  # fmt: skip
