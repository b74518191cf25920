"""Exports derived from the policy: the record of processing (GDPR Art. 30) in the ICO and
CNIL column layouts, controller and processor views, as CSV or XLSX; and the answers for
Apple's App Store privacy label and Google Play's data safety form, as JSON.

Pure: a policy (and a locale) in, bytes or data out. Same input, same bytes.

Views. The *controller* view is the controller's own record (Art. 30(1)): one row per
processing activity. The *processor* view is the record each of its processors keeps for
it (Art. 30(2)): one row per processor recipient and purpose it serves.

Store answers. The label covers the data the policy processes about the people who use the
app (``subjects``, e.g. customers and app users). Each data category is mapped to the
stores' data types through the DPV concepts it ``maps_to`` (:data:`APPLE_TYPES`,
:data:`GOOGLE_TYPES`; unmapped categories are "other"); each purpose to the stores'
purposes through its DPV purposes (:data:`APPLE_PURPOSES`, :data:`GOOGLE_PURPOSES`).
Apple: every type is linked to the user (the policy keeps data per account or identifier;
it states no de-identification); a type is used for tracking when a recipient that is an
advertising network or partner, as a controller, receives a category of it for advertising.
Google: a type is shared when a recipient acting as a controller receives it, except
authorities (legal requests are not sharing under Google's definition); it is optional when
every activity collecting it rests on consent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Collection, Iterable
from typing import Any, Literal

from troth.policy.adequacy import covered_countries
from troth.policy.model import Activity, Policy, Purpose, Recipient
from troth.policy.vocabulary import vocabulary
from troth.render.document import (
    legal_article,
    recipient_type_names,
    right_names,
    transfer_mechanism_names,
)
from troth.render.i18n import Translator, translator

__all__ = [
    "APPLE_PURPOSES",
    "APPLE_TYPES",
    "GOOGLE_PURPOSES",
    "GOOGLE_TYPES",
    "LAYOUTS",
    "Layout",
    "View",
    "app_store_label",
    "play_data_safety",
    "ropa_csv",
    "ropa_rows",
    "ropa_xlsx",
]

Layout = Literal["ico", "cnil"]
View = Literal["controller", "processor"]

LAYOUTS: dict[tuple[Layout, View], list[str]] = {
    ("ico", "controller"): [
        "Business function",
        "Purpose of processing",
        "Name and contact details of joint controller (if applicable)",
        "Categories of individuals",
        "Categories of personal data",
        "Categories of recipients",
        "Link to contract with processor",
        "Names of third countries or international organisations that personal data are "
        "transferred to (if applicable)",
        "Safeguards for exceptional transfers of personal data to third countries or "
        "international organisations (if applicable)",
        "Retention schedule (if possible)",
        "General description of technical and organisational security measures (if possible)",
        "Article 6 lawful basis for processing personal data",
        "Article 9 basis for processing special category data",
        "Legitimate interests for the processing (if applicable)",
        "Link to record of legitimate interests assessment (if applicable)",
        "Rights available to individuals",
        "Existence of automated decision-making, including profiling (if applicable)",
        "The source of the personal data (if applicable)",
        "Link to record of consent",
        "Location of personal data",
    ],
    ("ico", "processor"): [
        "Name and contact details of processor",
        "Name and contact details of controller",
        "Name and contact details of controller's representative (if applicable)",
        "Name and contact details of joint controller (if applicable)",
        "Name and contact details of data protection officer (if applicable)",
        "Categories of processing",
        "Names of third countries or international organisations that personal data are "
        "transferred to (if applicable)",
        "Safeguards for exceptional transfers of personal data to third countries or "
        "international organisations (if applicable)",
        "General description of technical and organisational security measures (if possible)",
    ],
    ("cnil", "controller"): [
        "Référence",
        "Nom du traitement",
        "Date de création",
        "Date de dernière mise à jour",
        "Responsable du traitement",
        "Délégué à la protection des données",
        "Responsables conjoints",
        "Finalité principale",
        "Sous-finalités",
        "Base légale",
        "Catégories de personnes concernées",
        "Catégories de données personnelles",
        "Données sensibles",
        "Source des données",
        "Destinataires",
        "Sous-traitants",
        "Transferts hors UE : destinataires et pays",
        "Garanties des transferts hors UE",
        "Durées de conservation",
        "Mesures de sécurité",
    ],
    ("cnil", "processor"): [
        "Référence",
        "Sous-traitant",
        "Responsable du traitement",
        "Représentant du responsable du traitement",
        "Délégué à la protection des données",
        "Catégories de traitements effectués pour le compte du responsable",
        "Catégories de données personnelles",
        "Transferts hors UE : pays",
        "Garanties des transferts hors UE",
        "Mesures de sécurité",
    ],
}


# --- the record of processing ------------------------------------------------------------


def _join(items: Iterable[str]) -> str:
    return "; ".join(x for x in items if x)


def _contact(name: str | None, email: str | None, extra: str | None = None) -> str:
    return ", ".join(x for x in (name, email, extra) if x)


class _Ropa:
    def __init__(self, policy: Policy, t: Translator) -> None:
        self.p = policy
        self.t = t
        self.types = recipient_type_names(t)
        self.mechanisms = transfer_mechanism_names(t)
        self.categories = {c.id: c for c in policy.categories}
        self.subjects = {s.id: t.text(s.name) for s in policy.subjects}
        self.measures = _join(t.text(m.title) for m in policy.security_measures)
        c = policy.controller
        self.controller = _contact(c.name, c.email, t.text(c.address))
        self.dpo = _contact(t.text(c.dpo.name), c.dpo.email) if c.dpo else ""
        self.representative = (
            _contact(t.text(c.representative.name), c.representative.email)
            if c.representative
            else ""
        )

    def recipients(self, purpose: Purpose) -> list[Recipient]:
        return [r for r in self.p.recipients if purpose.id in r.purposes]

    def transfers(self, recipients: list[Recipient]) -> tuple[str, str]:
        countries: list[str] = []
        safeguards: list[str] = []
        for r in recipients:
            moving = sorted({c for cs in covered_countries(self.p, r).values() for c in cs})
            if not moving:
                continue
            countries.append(f"{', '.join(moving)} ({self.t.text(r.name)})")
            if r.transfer is not None:
                t = r.transfer
                what = self.mechanisms.get(t.mechanism, t.mechanism)
                detail = [legal_article(t.mechanism, self.t)]
                if t.scc_module:
                    detail.append(f"{t.scc} module {t.scc_module}")
                detail += t.adequacy
                if t.reference:
                    detail.append(t.reference)
                safeguards.append(f"{self.t.text(r.name)}: {what} ({', '.join(detail)})")
        return _join(countries), _join(safeguards)

    def category_names(self, ids: Iterable[str]) -> str:
        return _join(self.t.text(self.categories[c].name) for c in ids if c in self.categories)

    def sources(self, ids: Iterable[str]) -> str:
        out = []
        for cid in ids:
            c = self.categories.get(cid)
            if c is not None and c.source in ("third_party", "public"):
                out.append(f"{self.t.text(c.name)}: {self.t.text(c.source_detail)}")
        return _join(out)

    def controller_row(self, purpose: Purpose, a: Activity) -> dict[str, str]:
        t = self.t
        recipients = self.recipients(purpose)
        countries, safeguards = self.transfers(recipients)
        joint = _join(t.text(r.name) for r in recipients if r.role == "joint_controller")
        processors = _join(t.text(r.name) for r in recipients if r.role == "processor")
        special = _join(
            t.text(self.categories[c].name)
            for c in a.categories
            if c in self.categories and self.categories[c].special
        )
        retention = t.duration(a.retention.period) if a.retention else ""
        if a.retention and a.retention.after:
            retention = f"{retention} ({t.text(a.retention.after)})"
        kind = vocabulary().basis_kind(vocabulary().legal_basis(a.basis))
        rights = right_names(t)
        return {
            "ref": f"{purpose.id}.{a.id}",
            "function": t.text(purpose.title),
            "activity": t.text(a.description),
            "joint": joint,
            "subjects": _join(self.subjects.get(s, s) for s in a.subjects),
            "categories": self.category_names(a.categories),
            "special": special,
            "recipients": _join(
                dict.fromkeys(f"{self.types[r.type]} ({t.text(r.name)})" for r in recipients)
            ),
            "processors": processors,
            "countries": countries,
            "safeguards": safeguards,
            "retention": retention,
            "measures": self.measures,
            "basis": legal_article(a.basis, t),
            "interest": t.text(a.legitimate_interest) if kind == "legitimate_interest" else "",
            "rights": _join(rights[r.right] for r in self.p.rights if r.right != "complaint"),
            "automated": _join(
                t.text(r.how) for r in self.p.rights if r.right == "automated_decisions"
            ),
            "source": self.sources(a.categories),
            "consent": "troth consent ledger" if kind == "consent" else "",
            "location": ", ".join(self.p.controller.establishments),
        }


def ropa_rows(
    policy: Policy, layout: Layout, view: View, locale: str | None = None
) -> list[list[str]]:
    """The record as rows of cells in the layout's column order (without the header)."""
    t = translator(locale or policy.default_language, policy.default_language)
    r = _Ropa(policy, t)
    rows: list[list[str]] = []
    if view == "controller":
        for purpose, a in policy.activities():
            x = r.controller_row(purpose, a)
            if layout == "ico":
                rows.append(
                    [
                        x["function"], x["activity"], x["joint"], x["subjects"], x["categories"],
                        x["recipients"], "", x["countries"], x["safeguards"], x["retention"],
                        x["measures"], x["basis"], "", x["interest"], "", x["rights"],
                        x["automated"], x["source"], x["consent"], x["location"],
                    ]
                )  # fmt: skip
            else:
                rows.append(
                    [
                        x["ref"], x["activity"], policy.effective.isoformat(),
                        policy.effective.isoformat(), r.controller, r.dpo, x["joint"],
                        x["function"], x["activity"], x["basis"], x["subjects"],
                        x["categories"], x["special"], x["source"], x["recipients"],
                        x["processors"], x["countries"], x["safeguards"], x["retention"],
                        x["measures"],
                    ]
                )  # fmt: skip
        return rows
    for rec in policy.recipients:
        if rec.role != "processor":
            continue
        countries, safeguards = r.transfers([rec])
        for pid in rec.purposes:
            found = next((p for p in policy.purposes if p.id == pid), None)
            if found is None:
                continue
            purpose = found
            processing = f"{t.text(purpose.title)}: " + _join(
                t.text(a.description) for a in purpose.activities
            )
            cats = [c for c in rec.categories if any(c in a.categories for a in purpose.activities)]
            if layout == "ico":
                rows.append(
                    [
                        t.text(rec.name), r.controller, r.representative, "", r.dpo,
                        processing, countries, safeguards, r.measures,
                    ]
                )  # fmt: skip
            else:
                rows.append(
                    [
                        f"{rec.id}.{pid}", t.text(rec.name), r.controller, r.representative,
                        r.dpo, processing, r.category_names(cats), countries, safeguards,
                        r.measures,
                    ]
                )  # fmt: skip
    return rows


def _safe(value: str) -> str:
    """Keep spreadsheet programs from running a cell that starts like a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def ropa_csv(policy: Policy, layout: Layout, view: View, locale: str | None = None) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LAYOUTS[(layout, view)])
    for row in ropa_rows(policy, layout, view, locale):
        writer.writerow([_safe(cell) for cell in row])
    # UTF-8 with a byte order mark: what spreadsheet programs need to read accents right
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def ropa_xlsx(policy: Policy, layout: Layout, view: View, locale: str | None = None) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Record of processing" if layout == "ico" else "Registre"
    headers = LAYOUTS[(layout, view)]
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row in ropa_rows(policy, layout, view, locale):
        # openpyxl stores strings as text: nothing here becomes a formula
        sheet.append([_safe(cell) for cell in row])
    sheet.freeze_panes = "A2"
    for index in range(1, len(headers) + 1):
        sheet.column_dimensions[get_column_letter(index)].width = 28
    stamp = dt.datetime.combine(policy.effective, dt.time())
    book.properties.creator = "troth"
    book.properties.created = stamp
    book.properties.modified = stamp
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- app store answers -------------------------------------------------------------------

# DPV personal-data concept -> Apple data types ("Category/Type", as App Store Connect names them)
APPLE_TYPES: dict[str, list[str]] = {
    "pd:Name": ["Contact Info/Name"],
    "pd:EmailAddress": ["Contact Info/Email Address"],
    "pd:TelephoneNumber": ["Contact Info/Phone Number"],
    "pd:PhysicalAddress": ["Contact Info/Physical Address"],
    "pd:Username": ["Identifiers/User ID"],
    "pd:Password": [],
    "pd:Purchase": ["Purchases/Purchase History"],
    "pd:Transaction": ["Purchases/Purchase History"],
    "pd:ServiceConsumptionBehaviour": ["Usage Data/Product Interaction"],
    "pd:BrowsingBehaviour": ["Usage Data/Product Interaction"],
    "pd:LinkClicked": ["Usage Data/Product Interaction"],
    "pd:Behavioural": ["Usage Data/Advertising Data"],
    "pd:DeviceOperatingSystem": ["Diagnostics/Other Diagnostic Data"],
    "pd:DeviceSoftware": ["Diagnostics/Other Diagnostic Data"],
    "pd:UserAgent": ["Diagnostics/Other Diagnostic Data"],
    "pd:Identifier": ["Identifiers/Device ID"],
    "pd:BrowserFingerprint": ["Identifiers/Device ID"],
    "pd:IPAddress": ["Other Data/Other Data Types"],
    "pd:Opinion": ["User Content/Other User Content"],
    "pd:Communication": ["User Content/Customer Support"],
    "pd:EmailContent": ["User Content/Emails or Text Messages"],
    "pd:Preference": ["Other Data/Other Data Types"],
    "pd:Language": ["Other Data/Other Data Types"],
    "pd:PrivacyPreference": ["Other Data/Other Data Types"],
}
APPLE_OTHER = "Other Data/Other Data Types"

# DPV purpose -> Apple purposes
APPLE_PURPOSES: dict[str, str] = {
    "dpv:ServiceProvision": "App Functionality",
    "dpv:CustomerCare": "App Functionality",
    "dpv:IdentityAuthentication": "App Functionality",
    "dpv:CommunicationManagement": "App Functionality",
    "dpv:CommunicationForCustomerCare": "App Functionality",
    "dpv:EnforceSecurity": "App Functionality",
    "dpv:FraudPreventionAndDetection": "App Functionality",
    "dpv:MisusePreventionAndDetection": "App Functionality",
    "dpv:DirectMarketing": "Developer's Advertising or Marketing",
    "dpv:Marketing": "Developer's Advertising or Marketing",
    "dpv:ResearchAndDevelopment": "Analytics",
    "dpv:ServiceUsageAnalytics": "Analytics",
    "dpv:ImproveExistingProductsAndServices": "Analytics",
    "dpv:ServicePersonalisation": "Product Personalization",
    "dpv:UserInterfacePersonalisation": "Product Personalization",
    "dpv:Advertising": "Third-Party Advertising",
    "dpv:PersonalisedAdvertising": "Third-Party Advertising",
    "dpv:TargetedAdvertising": "Third-Party Advertising",
}
APPLE_OTHER_PURPOSE = "Other Purposes"

# DPV personal-data concept -> Google Play data types ("Category/Type")
GOOGLE_TYPES: dict[str, list[str]] = {
    "pd:Name": ["Personal info/Name"],
    "pd:EmailAddress": ["Personal info/Email address"],
    "pd:TelephoneNumber": ["Personal info/Phone number"],
    "pd:PhysicalAddress": ["Personal info/Address"],
    "pd:Username": ["Personal info/User IDs"],
    "pd:Password": [],
    "pd:Purchase": ["Financial info/Purchase history"],
    "pd:Transaction": ["Financial info/Purchase history"],
    "pd:ServiceConsumptionBehaviour": ["App activity/App interactions"],
    "pd:BrowsingBehaviour": ["App activity/App interactions"],
    "pd:LinkClicked": ["App activity/Other actions"],
    "pd:Behavioural": ["App activity/Other actions"],
    "pd:DeviceOperatingSystem": ["App info and performance/Diagnostics"],
    "pd:DeviceSoftware": ["App info and performance/Diagnostics"],
    "pd:UserAgent": ["App info and performance/Diagnostics"],
    "pd:Identifier": ["Device or other IDs/Device or other IDs"],
    "pd:BrowserFingerprint": ["Device or other IDs/Device or other IDs"],
    "pd:IPAddress": ["Personal info/Other info"],
    "pd:Opinion": ["App activity/Other user-generated content"],
    "pd:Communication": ["Messages/Other in-app messages"],
    "pd:EmailContent": ["Messages/Emails"],
    "pd:Preference": ["Personal info/Other info"],
    "pd:Language": ["Personal info/Other info"],
    "pd:PrivacyPreference": ["Personal info/Other info"],
}
GOOGLE_OTHER = "App activity/Other actions"

GOOGLE_PURPOSES: dict[str, list[str]] = {
    "dpv:ServiceProvision": ["App functionality"],
    "dpv:CustomerCare": ["App functionality"],
    "dpv:IdentityAuthentication": ["App functionality", "Account management"],
    "dpv:CommunicationManagement": ["Developer communications"],
    "dpv:CommunicationForCustomerCare": ["Developer communications"],
    "dpv:DirectMarketing": ["Advertising or marketing"],
    "dpv:Marketing": ["Advertising or marketing"],
    "dpv:EnforceSecurity": ["Fraud prevention, security, and compliance"],
    "dpv:FraudPreventionAndDetection": ["Fraud prevention, security, and compliance"],
    "dpv:MisusePreventionAndDetection": ["Fraud prevention, security, and compliance"],
    "dpv:LegalCompliance": ["Fraud prevention, security, and compliance"],
    "dpv:RecordManagement": ["Fraud prevention, security, and compliance"],
    "dpv:DisputeManagement": ["Fraud prevention, security, and compliance"],
    "dpv:ResearchAndDevelopment": ["Analytics"],
    "dpv:ServiceUsageAnalytics": ["Analytics"],
    "dpv:ImproveExistingProductsAndServices": ["Analytics"],
    "dpv:ServicePersonalisation": ["Personalization"],
    "dpv:UserInterfacePersonalisation": ["Personalization"],
    "dpv:Advertising": ["Advertising or marketing"],
    "dpv:PersonalisedAdvertising": ["Advertising or marketing"],
    "dpv:TargetedAdvertising": ["Advertising or marketing"],
}


def _types(policy: Policy, category: str, table: dict[str, list[str]], other: str) -> set[str]:
    found = next(c for c in policy.categories if c.id == category)
    out: set[str] = set()
    mapped = False
    for key in found.maps_to:
        if key in table:
            mapped = True
            out.update(table[key])
    return out if mapped else {other}


def _app_activities(policy: Policy, subjects: Collection[str]) -> list[tuple[Purpose, Activity]]:
    return [(p, a) for p, a in policy.activities() if set(a.subjects) & set(subjects)]


def app_store_label(policy: Policy, subjects: Collection[str]) -> dict[str, Any]:
    """Answers for the App Store privacy label ("App Privacy" in App Store Connect)."""
    kinds: dict[str, dict[str, Any]] = {}
    for purpose, a in _app_activities(policy, subjects):
        purposes = {APPLE_PURPOSES.get(k, APPLE_OTHER_PURPOSE) for k in purpose.dpv} or {
            APPLE_OTHER_PURPOSE
        }
        for c in a.categories:
            for kind in _types(policy, c, APPLE_TYPES, APPLE_OTHER):
                entry = kinds.setdefault(kind, {"purposes": set(), "categories": set()})
                entry["purposes"] |= purposes
                entry["categories"].add(c)
    tracking_categories = {
        c
        for r in policy.recipients
        if r.role == "controller" and r.type in ("advertising_network", "partner")
        for pid in r.purposes
        for p in policy.purposes
        if p.id == pid and any(APPLE_PURPOSES.get(k) == "Third-Party Advertising" for k in p.dpv)
        for c in r.categories
    }
    data_types = {
        kind: {
            "linked_to_user": True,
            "used_for_tracking": bool(entry["categories"] & tracking_categories),
            "purposes": sorted(entry["purposes"]),
            "policy_categories": sorted(entry["categories"]),
        }
        for kind, entry in sorted(kinds.items())
    }
    return {
        "policy": policy.id,
        "version": policy.version,
        "subjects": sorted(subjects),
        "data_collected": bool(data_types),
        "data_used_to_track_you": sorted(
            k for k, v in data_types.items() if v["used_for_tracking"]
        ),
        "data_linked_to_you": sorted(data_types),
        "data_not_linked_to_you": [],
        "data_types": data_types,
    }


def play_data_safety(policy: Policy, subjects: Collection[str]) -> dict[str, Any]:
    """Answers for Google Play's data safety form."""
    kinds: dict[str, dict[str, Any]] = {}
    for purpose, a in _app_activities(policy, subjects):
        purposes = {g for k in purpose.dpv for g in GOOGLE_PURPOSES.get(k, [])}
        consent = vocabulary().basis_kind(vocabulary().legal_basis(a.basis)) == "consent"
        for c in a.categories:
            for kind in _types(policy, c, GOOGLE_TYPES, GOOGLE_OTHER):
                entry = kinds.setdefault(
                    kind,
                    {"purposes": set(), "categories": set(), "required": False, "shared": set()},
                )
                entry["purposes"] |= purposes
                entry["categories"].add(c)
                entry["required"] = entry["required"] or not consent
    for r in policy.recipients:
        if r.role == "processor" or r.type == "authority":
            continue
        purposes = {
            g for p in policy.purposes if p.id in r.purposes for k in p.dpv
            for g in GOOGLE_PURPOSES.get(k, [])
        }  # fmt: skip
        for c in r.categories:
            for kind in _types(policy, c, GOOGLE_TYPES, GOOGLE_OTHER):
                if kind in kinds:
                    kinds[kind]["shared"] |= purposes
    rights = {x.right for x in policy.rights}
    # the policy states encryption in transit as a technical measure named for it
    encrypted = any(m.type == "technical" and "transit" in m.id for m in policy.security_measures)
    return {
        "policy": policy.id,
        "version": policy.version,
        "subjects": sorted(subjects),
        "data_collected": bool(kinds),
        "data_shared": any(e["shared"] for e in kinds.values()),
        "security_practices": {
            "data_encrypted_in_transit": encrypted,
            "users_can_request_deletion": "erasure" in rights,
        },
        "data_types": {
            kind: {
                "collected": True,
                "collection_purposes": sorted(e["purposes"]),
                "optional": not e["required"],
                "shared": bool(e["shared"]),
                "sharing_purposes": sorted(e["shared"]),
                "policy_categories": sorted(e["categories"]),
            }
            for kind, e in sorted(kinds.items())
        },
    }
