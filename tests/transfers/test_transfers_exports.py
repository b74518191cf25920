"""Exports: the record of processing in the ICO and CNIL layouts (CSV and XLSX, controller
and processor views), and the App Store / Google Play answers for the seed service, checked
against expectations worked out by hand from examples/seed-service/policy.yaml."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from troth.render.exports import app_store_label, play_data_safety, ropa_csv, ropa_xlsx

ICO_CONTROLLER = [
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
]
ICO_PROCESSOR = [
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
]
CNIL_CONTROLLER = [
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
]
CNIL_PROCESSOR = [
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
]
HEADERS = {
    ("ico", "controller"): ICO_CONTROLLER,
    ("ico", "processor"): ICO_PROCESSOR,
    ("cnil", "controller"): CNIL_CONTROLLER,
    ("cnil", "processor"): CNIL_PROCESSOR,
}
# The seed has 24 activities (controller view: one row each) and three processors:
# group_companies serves 4 purposes, service_providers 3, google_analytics 1 (8 rows).
ROWS = {"controller": 24, "processor": 8}


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.mark.parametrize(("layout", "view"), list(HEADERS))
def test_csv_headers_are_exact_per_layout(seed, layout, view):
    rows = read_csv(ropa_csv(seed.policy, layout, view))
    assert rows[0] == HEADERS[(layout, view)]
    assert len(rows) - 1 == ROWS[view]
    assert all(len(r) == len(rows[0]) for r in rows)


@pytest.mark.parametrize(("layout", "view"), list(HEADERS))
def test_xlsx_headers_are_exact_per_layout(seed, layout, view):
    book = load_workbook(io.BytesIO(ropa_xlsx(seed.policy, layout, view)))
    sheet = book.active
    values = [[c.value or "" for c in row] for row in sheet.iter_rows()]
    assert values[0] == HEADERS[(layout, view)]
    assert len(values) - 1 == ROWS[view]
    assert ropa_xlsx(seed.policy, layout, view) == ropa_xlsx(seed.policy, layout, view)


def test_ico_controller_row_for_an_activity_with_a_transfer(seed):
    rows = read_csv(ropa_csv(seed.policy, "ico", "controller"))
    header = rows[0]
    analytics = next(p for p in seed.policy.purposes if p.id == "analytics")
    activity = next(a for a in analytics.activities if a.id == "usage_analytics")
    usage = next(
        dict(zip(header, r, strict=True)) for r in rows[1:] if r[1] == activity.description["en"]
    )
    assert usage["Article 6 lawful basis for processing personal data"] == "Art. 6(1)(a) GDPR"
    assert usage["Link to record of consent"] == "troth consent ledger"
    countries = usage[ICO_CONTROLLER[7]]
    assert "US (Google Analytics)" in countries
    assert "2023/1795" in usage[ICO_CONTROLLER[8]]


def test_german_locale_translates_cells_not_headers(seed):
    rows = read_csv(ropa_csv(seed.policy, "ico", "controller", "de"))
    assert rows[0] == ICO_CONTROLLER
    assert any("DSGVO" in cell for cell in rows[1])


# --- App Store and Google Play answers, worked out by hand --------------------------------
#
# People who use the app: subjects `customer` and `app_user`. Their activities are every
# activity of the seed except `marketing_prospects` (prospects only).
#
# Apple data types from each category's `maps_to` (see APPLE_TYPES in render/exports.py):
#   account  (Name, EmailAddress, Username, Password) -> Name, Email Address, User ID
#   contact  (EmailAddress, TelephoneNumber)          -> Email Address, Phone Number
#   billing  (Purchase, Transaction, PhysicalAddress) -> Purchase History, Physical Address
#   bandwidth_usage, service_time, usage (consumption/browsing) -> Product Interaction
#   email_interaction (LinkClicked)                   -> Product Interaction
#   ad_interaction (LinkClicked, Behavioural)         -> Product Interaction, Advertising Data
#   device (OS, software, user agent, Identifier)     -> Other Diagnostic Data, Device ID
#   cookie_ids, payment_fraud_signals                 -> Device ID
#   ip_address, preferences, consent_records, threat_events (no mapping) -> Other Data Types
#   feedback -> Other User Content; communications -> Customer Support, Emails or Text Messages
#
# Apple purposes from each purpose's DPV terms: provide_service and prevent_harm -> App
# Functionality; communicate -> App Functionality + Developer's Advertising or Marketing
# (DirectMarketing); develop_services and analytics -> Analytics; legal_compliance -> Other
# Purposes (no Apple purpose for legal compliance); remember_preferences -> Product
# Personalization; advertising -> Third-Party Advertising.
AF, DEV, AN = "App Functionality", "Developer's Advertising or Marketing", "Analytics"
OTHER, PERS, TPA = "Other Purposes", "Product Personalization", "Third-Party Advertising"
APPLE = {
    # account is used by provide_service, communicate, prevent_harm and legal_compliance
    "Contact Info/Name": [AF, DEV, OTHER],
    "Contact Info/Email Address": [AF, DEV, OTHER],  # account and contact: the same purposes
    "Identifiers/User ID": [AF, DEV, OTHER],
    "Contact Info/Phone Number": [AF, DEV, OTHER],  # contact: support, communicate, vital
    # interests (prevent_harm), comply_with_law and legal_claims
    # billing: metered_plan (provide_service), comply_with_law, record_keeping, legal_claims
    "Purchases/Purchase History": [AF, OTHER],
    "Contact Info/Physical Address": [AF, OTHER],
    # usage: security and fraud (AF), legal (Other), visit counting and usage analytics
    # (Analytics), ad measurement, retargeting and similar audiences (TPA)
    "Usage Data/Product Interaction": [AN, AF, OTHER, TPA],
    "Usage Data/Advertising Data": [TPA],  # ad_interaction: only advertising activities
    # device: threat protection, support, security, fraud (AF), legal (Other), usage
    # analytics (Analytics), network ads (TPA)
    "Diagnostics/Other Diagnostic Data": [AN, AF, OTHER, TPA],
    # device as above, plus cookie_ids in remember_preferences (Product Personalization)
    "Identifiers/Device ID": [AN, AF, OTHER, PERS, TPA],
    # ip_address as device; preferences: remember_preferences; consent_records: legal
    "Other Data/Other Data Types": [AN, AF, OTHER, PERS, TPA],
    "User Content/Other User Content": [AN],  # feedback: develop_services only
    # communications: support (AF), service_communications (communicate: AF + DEV),
    # vital_interests (AF), comply_with_law and legal_claims (Other)
    "User Content/Customer Support": [AF, DEV, OTHER],
    "User Content/Emails or Text Messages": [AF, DEV, OTHER],
}
# Tracking: google_ads, ad_network and marketing_partners are advertising networks or
# partners acting as controllers for `advertising`; together they receive ad_interaction,
# cookie_ids, usage, device and ip_address. The types those categories map to are used
# to track: Product Interaction, Advertising Data, Device ID, Other Diagnostic Data and
# Other Data Types (through ip_address).
APPLE_TRACKING = [
    "Diagnostics/Other Diagnostic Data",
    "Identifiers/Device ID",
    "Other Data/Other Data Types",
    "Usage Data/Advertising Data",
    "Usage Data/Product Interaction",
]


def test_app_store_label_for_the_seed(seed):
    label = app_store_label(seed.policy, ["customer", "app_user"])
    types = label["data_types"]
    assert {k: sorted(v["purposes"]) for k, v in types.items()} == {
        k: sorted(v) for k, v in APPLE.items()
    }
    assert label["data_used_to_track_you"] == APPLE_TRACKING
    # the policy keeps everything per account or identifier and states no de-identification
    assert label["data_linked_to_you"] == sorted(APPLE)
    assert label["data_not_linked_to_you"] == []


# Google Play types from `maps_to` (GOOGLE_TYPES): account -> Name, Email address, User IDs;
# contact -> Email address, Phone number; billing -> Purchase history, Address; bandwidth,
# service time, usage -> App interactions; email_interaction, ad_interaction and the
# unmapped threat_events -> Other actions; device -> Diagnostics, Device or other IDs;
# cookie_ids, payment_fraud_signals -> Device or other IDs; ip_address, preferences,
# consent_records -> Other info; feedback -> Other user-generated content; communications ->
# Other in-app messages, Emails.
# Purposes: provide_service -> App functionality + Account management (IdentityAuthentication);
# communicate -> Developer communications + Advertising or marketing; prevent_harm and
# legal_compliance -> Fraud prevention, security, and compliance; develop_services and
# analytics -> Analytics; remember_preferences -> Personalization; advertising -> Advertising
# or marketing.
ACC, ADV, GAN, APP = (
    "Account management",
    "Advertising or marketing",
    "Analytics",
    "App functionality",
)
COM, SEC, GPERS = (
    "Developer communications",
    "Fraud prevention, security, and compliance",
    "Personalization",
)
CONTACTS = [ACC, ADV, APP, COM, SEC]  # provide_service, communicate, prevent_harm, legal
BILLING = [ACC, APP, SEC]  # metered_plan and the legal activities
BEHAVIOUR = [ACC, ADV, GAN, APP, SEC]  # provide_service, prevent_harm, legal, analytics, ads
GOOGLE_COLLECTED = {
    "Personal info/Name": CONTACTS,
    "Personal info/Email address": CONTACTS,
    "Personal info/User IDs": CONTACTS,
    "Personal info/Phone number": CONTACTS,
    "Financial info/Purchase history": BILLING,
    "Personal info/Address": BILLING,
    "App activity/App interactions": BEHAVIOUR,
    "App activity/Other actions": BEHAVIOUR,  # threat events, e-mail and ad interactions
    "App info and performance/Diagnostics": BEHAVIOUR,
    "Device or other IDs/Device or other IDs": [*BEHAVIOUR, GPERS],  # + preference cookies
    "Personal info/Other info": [*BEHAVIOUR, GPERS],  # ip_address, preferences, consents
    "App activity/Other user-generated content": [GAN],
    "Messages/Other in-app messages": CONTACTS,
    "Messages/Emails": CONTACTS,
}
# Shared: recipients acting as controllers, except authorities. payment_processor
# (provide_service, prevent_harm -> ACC, APP, SEC) receives billing, payment_fraud_signals,
# cookie_ids, device, ip_address; google_ads, ad_network and marketing_partners (advertising
# -> ADV) receive ad_interaction, cookie_ids, usage, device and ip_address between them.
GOOGLE_SHARED = {
    "Financial info/Purchase history": [ACC, APP, SEC],
    "Personal info/Address": [ACC, APP, SEC],
    "Device or other IDs/Device or other IDs": [ACC, ADV, APP, SEC],
    "App info and performance/Diagnostics": [ACC, ADV, APP, SEC],
    "Personal info/Other info": [ACC, ADV, APP, SEC],
    "App activity/Other actions": [ADV],
    "App activity/App interactions": [ADV],
}


def test_play_data_safety_for_the_seed(seed):
    answers = play_data_safety(seed.policy, ["customer", "app_user"])
    types = answers["data_types"]
    assert {k: v["collection_purposes"] for k, v in types.items()} == {
        k: sorted(v) for k, v in GOOGLE_COLLECTED.items()
    }
    assert {k: v["sharing_purposes"] for k, v in types.items() if v["shared"]} == {
        k: sorted(v) for k, v in GOOGLE_SHARED.items()
    }
    # every type is also collected by an activity that needs no consent (contract, legal
    # obligation or legitimate interest), so none is optional
    assert not any(v["optional"] for v in types.values())
    assert answers["data_shared"] is True
    # a technical measure `encryption_in_transit`; the right to erasure is stated
    assert answers["security_practices"] == {
        "data_encrypted_in_transit": True,
        "users_can_request_deletion": True,
    }


def test_the_app_store_label_for_prospects_lists_only_their_data(seed):
    # the label covers the activities of the chosen subjects only: prospects are e-mailed
    # and kept in legal records, never shown advertising
    label = app_store_label(seed.policy, ["prospect"])
    assert "Purchases/Purchase History" in label["data_types"]  # legal_claims keeps billing
    assert "Usage Data/Advertising Data" not in label["data_types"]
