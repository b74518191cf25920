"""Regenerate troth's shipped vocabulary subset from the third-party source data.

Usage::

    python scripts/build_vocabulary.py [--source DIR] [--out DIR]

``--source`` is the folder holding ``dpv-2.3/`` and ``open-cookie-database/`` (default:
``../shared/data`` relative to the repository root); ``--out`` is where the JSON files and
notices are written (default: ``src/troth/policy/data`` in the repository).

Only facts are carried over (identifiers, IRIs, labels, broader links, categories, retention
strings); prose definitions and descriptions are dropped. The output is deterministic: running
the script twice on the same sources gives byte-identical files. Pure standard library.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "src" / "troth" / "policy" / "data"

DPV_COMMIT = "f01a55c3c0983e35cdfdf80593ece3353faba7b8"
OCD_COMMIT = "0ee5a17fe1cb002943f89370d24fc26a4226061c"

# Namespace IRI -> canonical key prefix. Countries are the exception: plain ISO codes.
NAMESPACES = {
    "https://w3id.org/dpv#": "dpv:",
    "https://w3id.org/dpv/legal/eu/gdpr#": "eu-gdpr:",
    "https://w3id.org/dpv/pd#": "pd:",
    "https://w3id.org/dpv/loc#": "",
}

DPV_CORE_BASES = (
    "Consent",
    "Contract",
    "LegalObligation",
    "VitalInterest",
    "PublicInterest",
    "LegitimateInterest",
)

# ---------------------------------------------------------------------------------------------
# Hand-curated fideslang -> DPV mapping. Every target is checked against the generated subset
# when the script runs; a target that does not exist in DPV 2.3 stops the build.
# DPV 2.3 has no dedicated device identifier or cookie identifier concept, so
# user.device.device_id and user.device.cookie_id map to the generic tracking pd:Identifier;
# it has no "account" or "search history" concept (user.account -> pd:Username).
# ---------------------------------------------------------------------------------------------
FIDESLANG_DATA_CATEGORIES: dict[str, str] = {
    "user": "dpv:PersonalData",
    "user.account": "pd:Username",
    "user.account.username": "pd:Username",
    "user.authorization": "pd:Authenticating",
    "user.authorization.credentials": "pd:Authenticating",
    "user.authorization.password": "pd:Password",
    "user.behavior": "pd:Behavioural",
    "user.behavior.browsing_history": "pd:BrowserHistory",
    "user.behavior.media_consumption": "pd:ServiceConsumptionBehaviour",
    "user.behavior.purchase_history": "pd:Purchase",
    "user.biometric": "pd:Biometric",
    "user.biometric.fingerprint": "pd:Fingerprint",
    "user.biometric.retinal": "pd:Retina",
    "user.contact": "pd:Contact",
    "user.contact.address": "pd:PhysicalAddress",
    "user.contact.address.city": "pd:City",
    "user.contact.address.country": "pd:Country",
    "user.contact.address.postal_code": "pd:PostalCode",
    "user.contact.address.street": "pd:Street",
    "user.contact.email": "pd:EmailAddress",
    "user.contact.phone_number": "pd:TelephoneNumber",
    "user.content": "pd:Communication",
    "user.content.self_image": "pd:Picture",
    "user.criminal_history": "pd:Criminal",
    "user.demographic": "pd:Demographic",
    "user.demographic.age_range": "pd:AgeRange",
    "user.demographic.date_of_birth": "pd:BirthDate",
    "user.demographic.gender": "pd:Gender",
    "user.demographic.language": "pd:Language",
    "user.demographic.marital_status": "pd:MaritalStatus",
    "user.demographic.political_opinion": "pd:PoliticalOpinion",
    "user.demographic.race_ethnicity": "pd:EthnicOrigin",
    "user.demographic.religious_belief": "pd:ReligiousBelief",
    "user.demographic.sexual_orientation": "pd:SexualPreference",
    "user.device": "pd:DeviceBased",
    "user.device.cookie_id": "pd:Identifier",
    "user.device.device_id": "pd:Identifier",
    "user.device.ip_address": "pd:IPAddress",
    "user.financial": "pd:Financial",
    "user.financial.bank_account": "pd:BankAccount",
    "user.financial.credit_card": "pd:CreditCardNumber",
    "user.genetic": "pd:Genetic",
    "user.government_id": "pd:OfficialID",
    "user.government_id.passport_number": "pd:Passport",
    "user.health_and_medical": "pd:MedicalHealth",
    "user.job_title": "pd:Job",
    "user.location": "pd:Location",
    "user.location.imprecise": "pd:Location",
    "user.location.precise": "pd:GPSCoordinate",
    "user.name": "pd:Name",
    "user.payment": "pd:PaymentCard",
    "user.privacy_preferences": "pd:PrivacyPreference",
    "user.unique_id": "pd:UID",
    "user.workplace": "pd:WorkLocation",
}

FIDESLANG_DATA_USES: dict[str, str] = {
    "analytics": "dpv:ServiceUsageAnalytics",
    "analytics.reporting": "dpv:ServiceUsageAnalytics",
    "employment": "dpv:HumanResourceManagement",
    "employment.recruitment": "dpv:RecruitmentManagement",
    "essential": "dpv:ServiceProvision",
    "essential.fraud_detection": "dpv:FraudPreventionAndDetection",
    "essential.service": "dpv:ServiceProvision",
    "essential.service.authentication": "dpv:IdentityAuthentication",
    "essential.service.notifications": "dpv:CommunicationManagement",
    "essential.service.operations": "dpv:ServiceManagement",
    "essential.service.payment_processing": "dpv:PaymentManagement",
    "essential.service.security": "dpv:EnforceSecurity",
    "functional": "dpv:ServiceProvision",
    "improve": "dpv:ServiceOptimisation",
    "improve.system": "dpv:IncreaseServiceRobustness",
    "legal": "dpv:LegalCompliance",
    "legal_obligation": "dpv:LegalCompliance",
    "marketing": "dpv:Marketing",
    "marketing.advertising": "dpv:Advertising",
    "marketing.advertising.first_party.targeted": "dpv:TargetedAdvertising",
    "marketing.advertising.profiling": "dpv:PersonalisedAdvertising",
    "marketing.advertising.third_party.targeted": "dpv:TargetedAdvertising",
    "marketing.communications": "dpv:DirectMarketing",
    "marketing.communications.email": "dpv:DirectMarketing",
    "marketing.communications.sms": "dpv:DirectMarketing",
    "personalize": "dpv:ServicePersonalisation",
    "personalize.content": "dpv:ServicePersonalisation",
    "product_development": "dpv:ResearchAndDevelopment",
}

DPV_DERIVATION = (
    "This package includes material derived from the W3C Data Privacy Vocabulary (DPV) 2.3, "
    "https://w3id.org/dpv, Copyright © 2022–2026 World Wide Web Consortium. "
    "Derived: identifiers, labels and broader/narrower links only; definitions omitted."
)

Row = dict[str, str]
Entry = dict[str, Any]


def read_csv(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def split_iris(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def key_of(iri: str) -> str | None:
    """Canonical key of an IRI in a known namespace, else None."""
    for namespace, prefix in NAMESPACES.items():
        if iri.startswith(namespace):
            return prefix + iri[len(namespace) :]
    return None


class Graph:
    """Every class of the loaded CSVs: key -> (iri, label, direct broader keys)."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.rows: dict[str, Row] = {}
        self.broader: dict[str, list[str]] = {}
        for row in rows:
            if row["type"] != "class":
                continue
            key = key_of(row["iri"])
            if key is None:
                continue
            self.rows[key] = row
            links = [key_of(iri) for iri in split_iris(row["hasbroader"])]
            self.broader[key] = [link for link in links if link is not None]

    def nearest_in(self, key: str, subset: Mapping[str, object] | set[str]) -> list[str]:
        """Nearest ancestors of ``key`` inside ``subset``, walking through terms outside it."""
        found: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(self.broader.get(key, [])))
        while stack:
            current = stack.pop()
            if current in seen or current == key:
                continue
            seen.add(current)
            if current in subset:
                if current not in found:
                    found.append(current)
                continue
            stack.extend(reversed(self.broader.get(current, [])))
        return sorted(found)

    def entries(self, keys: Iterable[str]) -> dict[str, Entry]:
        selected = sorted(set(keys))
        members = set(selected)
        return {
            key: {
                "iri": self.rows[key]["iri"],
                "label": self.rows[key]["label"].strip(),
                "broader": self.nearest_in(key, members),
            }
            for key in selected
        }


def dpv_types(row: Row) -> list[str]:
    return split_iris(row["dpvtype"])


def is_legal_basis(row: Row) -> bool:
    return "https://w3id.org/dpv#LegalBasis" in dpv_types(row)


def build_legal_bases(graph: Graph) -> dict[str, Entry]:
    keys: list[str] = []
    for key, row in graph.rows.items():
        term = row["term"]
        if not key.startswith("eu-gdpr:") or not term.startswith(("A6-", "A9-")):
            continue
        if any(word in term for word in ("Denied", "Impact", "Consequence")):
            continue
        if is_legal_basis(row):
            keys.append(key)
    keys.extend(f"dpv:{term}" for term in DPV_CORE_BASES)
    return graph.entries(keys)


def build_transfer_bases(graph: Graph) -> dict[str, Entry]:
    keys = [
        key
        for key, row in graph.rows.items()
        if key.startswith("eu-gdpr:")
        and (row["term"] == "A45-3" or row["term"].startswith(("A46-", "A47", "A49-")))
        and is_legal_basis(row)
    ]
    return graph.entries(keys)


def build_purposes(graph: Graph) -> dict[str, Entry]:
    keys = [
        key
        for key, row in graph.rows.items()
        if key.startswith("dpv:") and "https://w3id.org/dpv#Purpose" in dpv_types(row)
    ]
    keys.append("dpv:Purpose")  # the root, so top-level purposes keep a broader link
    return graph.entries(keys)


def build_personal_data(graph: Graph) -> dict[str, Entry]:
    keys = [key for key in graph.rows if key.startswith("pd:")]
    # DPV core personal-data concepts: dpv:PersonalData and every dpv: class below it.
    core = {"dpv:PersonalData"}
    changed = True
    while changed:
        changed = False
        for key, links in graph.broader.items():
            if key.startswith("dpv:") and key not in core and core.intersection(links):
                core.add(key)
                changed = True
    keys.extend(core)
    return graph.entries(keys)


def build_countries(rows: Iterable[Row]) -> dict[str, dict[str, Entry]]:
    countries: dict[str, Row] = {}
    unions: dict[str, Row] = {}
    for row in rows:
        types = dpv_types(row)
        if "https://w3id.org/dpv#Country" in types:
            countries[row["term"]] = row
        elif "https://w3id.org/dpv#SupraNationalUnion" in types:
            unions[row["term"]] = row
    known = set(countries) | set(unions)

    def broader(row: Row) -> list[str]:
        links = (key_of(iri) for iri in split_iris(row["hasbroader"]))
        return sorted({link for link in links if link is not None and link in known})

    members: dict[str, set[str]] = {code: set() for code in unions}
    for code, row in countries.items():
        for parent in broader(row):
            if parent in members:
                members[parent].add(code)
    # Membership comes from the data (countries list their unions under hasbroader). If a
    # future DPV release stopped doing so, fail loudly rather than ship empty unions.
    for code in ("EU", "EEA"):
        if code not in members or not members[code]:
            raise SystemExit(f"loc.csv gives no members for {code}")

    def entry(row: Row) -> Entry:
        return {"iri": row["iri"], "label": row["label"].strip(), "broader": broader(row)}

    return {
        "countries": {code: entry(row) for code, row in sorted(countries.items())},
        "unions": {
            code: {**entry(row), "members": sorted(members[code])}
            for code, row in sorted(unions.items())
        },
    }


def build_cookies(rows: Iterable[Row]) -> dict[str, Any]:
    fields = ["name", "platform", "category", "domain", "retention", "wildcard"]
    entries = [
        [
            row["Cookie / Data Key name"].strip(),
            row["Platform"].strip(),
            row["Category"].strip(),
            row["Domain"].strip(),
            row["Retention period"].strip(),
            row["Wildcard match"].strip() == "1",
        ]
        for row in rows
        if row["Cookie / Data Key name"].strip()
    ]
    return {"fields": fields, "rows": entries}


def build_fideslang(purposes: Mapping[str, Entry], personal: Mapping[str, Entry]) -> Entry:
    missing = [v for v in FIDESLANG_DATA_CATEGORIES.values() if v not in personal]
    missing += [v for v in FIDESLANG_DATA_USES.values() if v not in purposes]
    if missing:
        raise SystemExit(f"fideslang mapping targets missing from DPV: {sorted(set(missing))}")
    return {"data_categories": FIDESLANG_DATA_CATEGORIES, "data_uses": FIDESLANG_DATA_USES}


def dpv_notice(source: Path) -> str:
    licence = (source / "dpv-2.3" / "LICENSE.md").read_text(encoding="utf-8").strip()
    return (
        "# W3C Data Privacy Vocabulary (DPV) 2.3 — notice\n\n"
        f"{DPV_DERIVATION}\n\n"
        f"Source: https://github.com/w3c/dpv, folder `2.3`, commit `{DPV_COMMIT}`.\n"
        "Files derived from it: `legal_bases.json`, `transfer_bases.json`, `purposes.json`, "
        "`personal_data.json`, `countries.json`, and the DPV targets of `fideslang.json`. "
        "Broader links are reduced to the nearest broader terms inside each derived subset; "
        "country and union keys are the plain codes of the DPV LOC extension.\n\n"
        "Licensed under the W3C Software and Document License, "
        "https://www.w3.org/copyright/software-license-2023/. Its text as shipped with the "
        "source follows.\n\n"
        "---\n\n"
        f"{licence}\n"
    )


def cookie_notice(source: Path) -> str:
    licence = (source / "open-cookie-database" / "LICENSE").read_text(encoding="utf-8")
    return (
        "# Open Cookie Database — notice\n\n"
        "`cookies.json` in this package is derived from the Open Cookie Database by jkwakman, "
        "https://github.com/jkwakman/Open-Cookie-Database, "
        f"commit `{OCD_COMMIT}`, licensed under the Apache License, Version 2.0.\n\n"
        "Changes: kept the fields cookie / data key name, platform, category, domain, "
        "retention period and wildcard match (as a boolean); dropped the ID, description, "
        "data controller and user privacy & GDPR rights portal URL; trimmed surrounding "
        "whitespace; re-encoded as compact JSON.\n\n"
        "The full licence text follows.\n\n"
        "---\n\n"
        f"{licence.rstrip()}\n"
    )


def dump(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def build(source: Path) -> dict[str, str]:
    """All output files: name -> text."""
    dpv = source / "dpv-2.3"
    graph = Graph(
        row for name in ("dpv.csv", "eu-gdpr.csv", "pd.csv") for row in read_csv(dpv / name)
    )
    purposes = build_purposes(graph)
    personal = build_personal_data(graph)
    cookies = read_csv(source / "open-cookie-database" / "open-cookie-database.csv")
    builders: dict[str, Callable[[], object]] = {
        "legal_bases.json": lambda: build_legal_bases(graph),
        "transfer_bases.json": lambda: build_transfer_bases(graph),
        "purposes.json": lambda: purposes,
        "personal_data.json": lambda: personal,
        "countries.json": lambda: build_countries(read_csv(dpv / "loc.csv")),
        "fideslang.json": lambda: build_fideslang(purposes, personal),
        "cookies.json": lambda: build_cookies(cookies),
    }
    files = {name: dump(make()) for name, make in builders.items()}
    files["NOTICE-dpv.md"] = dpv_notice(source)
    files["NOTICE-open-cookie-database.md"] = cookie_notice(source)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="source data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    source: Path = args.source
    out: Path = args.out
    if not (source / "dpv-2.3").is_dir():
        print(f"error: no dpv-2.3/ under {source}", file=sys.stderr)
        return 2
    files = build(source)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_bytes(text.encode("utf-8"))
        print(f"{out / name}: {len(text.encode('utf-8'))} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
