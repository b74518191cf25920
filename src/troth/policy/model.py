"""The policy model: what a service declares about the personal data it processes.

Every YAML key of ``policy.yaml`` is a field here. Models are frozen and forbid unknown
keys; cross-references between ids are checked by :mod:`troth.policy.references`, which
knows where in the file each reference was written.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from troth.policy.types import (
    CountryCode,
    DataCategoryKey,
    DurationField,
    Expiry,
    Identifier,
    LanguageCode,
    LegalBasisKey,
    PurposeKey,
    Text,
    TransferBasisKey,
    Url,
)

__all__ = [
    "CONSENT_MODE_SIGNALS",
    "RIGHTS",
    "TRACKING_CATEGORIES",
    "Activity",
    "Authority",
    "Choice",
    "ConsentCategory",
    "Contact",
    "Controller",
    "DataCategory",
    "Jurisdiction",
    "Policy",
    "Purpose",
    "Recipient",
    "Retention",
    "Right",
    "SecurityMeasure",
    "Subject",
    "Texts",
    "TrackingTechnology",
    "Transfer",
]

Platform = Literal["web", "email", "ios", "android"]
TrackingCategory = Literal["necessary", "preferences", "analytics", "security", "advertising"]
TRACKING_CATEGORIES: tuple[str, ...] = TrackingCategory.__args__  # type: ignore[attr-defined]

ConsentModeSignal = Literal[
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
]
CONSENT_MODE_SIGNALS: tuple[str, ...] = ConsentModeSignal.__args__  # type: ignore[attr-defined]

RightKind = Literal[
    "access",
    "rectification",
    "erasure",
    "restriction",
    "portability",
    "objection",
    "withdraw_consent",
    "automated_decisions",
    "complaint",
]
RIGHTS: tuple[str, ...] = RightKind.__args__  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Contact(_Model):
    name: Text | None = None
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = None
    url: Url | None = None
    address: Text | None = None


class Authority(_Model):
    """A supervisory authority people can complain to."""

    name: str
    country: CountryCode
    url: Url


class Controller(_Model):
    name: str
    address: Text
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    url: Url | None = None
    phone: str | None = None
    dpo: Contact | None = None
    representative: Contact | None = None
    establishments: list[CountryCode] = Field(min_length=1)


class Subject(_Model):
    id: Identifier
    name: Text
    description: Text | None = None


class DataCategory(_Model):
    id: Identifier
    name: Text
    description: Text | None = None
    maps_to: list[DataCategoryKey] = Field(default_factory=list)
    source: Literal["data_subject", "observed", "derived", "third_party", "public"] = "data_subject"
    source_detail: Text | None = None
    special: bool = False


class ConsentCategory(_Model):
    """Something a person can agree to or refuse: a tracking category or another consent."""

    id: Identifier
    name: Text
    description: Text
    required: bool = False
    required_reason: Text | None = None
    consent_mode: list[ConsentModeSignal] = Field(default_factory=list)


class Retention(_Model):
    period: DurationField
    after: Text | None = None
    reason: Text | None = None


class Activity(_Model):
    """One processing activity: one legal basis, the data it uses, how long it is kept."""

    id: Identifier
    description: Text
    categories: list[Identifier] = Field(min_length=1)
    subjects: list[Identifier] = Field(min_length=1)
    basis: LegalBasisKey
    consent: Identifier | None = None
    legitimate_interest: Text | None = None
    legal_obligation: Text | None = None
    retention: Retention | None = None
    examples: list[Text] = Field(default_factory=list)

    @field_validator("basis", mode="before")
    @classmethod
    def _one_basis(cls, value: object) -> object:
        if isinstance(value, list):
            raise ValueError(
                "an activity has exactly one legal basis; split it into one activity per basis"
            )
        return value


class Purpose(_Model):
    id: Identifier
    title: Text
    description: Text | None = None
    dpv: list[PurposeKey] = Field(default_factory=list)
    activities: list[Activity] = Field(min_length=1)


class TrackingTechnology(_Model):
    id: Identifier
    type: Literal[
        "cookie", "local_storage", "session_storage", "pixel", "web_beacon", "tracking_link", "sdk"
    ]
    name: str | None = None
    pattern: str | None = None
    party: Literal["first", "third"]
    vendor: Identifier | None = None
    category: TrackingCategory
    expiry: Expiry | None = None
    domain: str | None = None
    path: str = "/"
    platforms: list[Platform] = Field(default_factory=lambda: list[Platform](["web"]))
    purposes: list[Identifier] = Field(min_length=1)
    description: Text
    # Without consent a hit is dropped, or counted only in aggregate (no identifier, no
    # detail) where one of the technology's purposes has a basis that needs no consent.
    without_consent: Literal["drop", "aggregate"] = "drop"
    # best_effort: acknowledged before it is durable (pixels); durable: only once committed.
    delivery: Literal["durable", "best_effort"] = "durable"
    retention: DurationField | None = None

    @model_validator(mode="after")
    def _name_or_pattern(self) -> TrackingTechnology:
        if (self.name is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'name' or 'pattern'")
        return self


_NOUNS = {
    "decision": "adequacy decision",
    "condition": "adequacy scope condition",
    "organisation": "international organisation with an adequacy decision",
}


def _known(kind: Literal["decision", "condition", "organisation"]) -> Any:
    def check(values: list[str]) -> list[str]:
        from troth.policy.adequacy import adequacy_data  # the data set imports this module

        data = adequacy_data()
        pool = data.pool(kind)
        for value in values:
            if value not in pool:
                noun = _NOUNS[kind]
                hint = data.suggest(kind, value) or (
                    f" (troth's adequacy data set {data.version} lists: {', '.join(sorted(pool))})"
                )
                raise ValueError(f"unknown {noun} {value!r}{hint}")
        return values

    return check


def _known_organisation(value: str | None) -> str | None:
    if value is not None:
        _known("organisation")([value])
    return value


SccDecisionKey = Literal["2021/914", "2010/87", "2004/915", "2001/497"]


class Transfer(_Model):
    """How personal data may lawfully leave the controller's region for a recipient.

    ``mechanism`` is the GDPR Chapter V basis: adequacy (Art. 45), standard contractual
    clauses, binding corporate rules (Art. 46) or one named Art. 49 derogation. For adequacy,
    ``adequacy`` may name the decisions relied on (ids of troth's adequacy data set; by
    default every decision covering the recipient's countries is considered), and
    ``adequacy_scope`` states what the recipient meets to fall inside a partial decision
    (e.g. ``dpf_certified``). A decision for an international organisation (the European
    Patent Organisation) counts only for a recipient that states it is that organisation in
    ``organisation``. ``assessed`` is the date of the transfer impact assessment.
    """

    mechanism: TransferBasisKey
    adequacy: Annotated[list[str], AfterValidator(_known("decision"))] = Field(
        default_factory=list, max_length=8
    )
    adequacy_scope: Annotated[list[str], AfterValidator(_known("condition"))] = Field(
        default_factory=list
    )
    organisation: Annotated[str | None, AfterValidator(_known_organisation)] = None
    scc: SccDecisionKey = "2021/914"
    scc_module: Literal[1, 2, 3, 4] | None = None
    reference: str | None = Field(default=None, max_length=200)  # the disclosure log keeps it
    assessed: dt.date | None = None
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    note: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Transfer:
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_from > self.valid_until
        ):
            raise ValueError(
                f"valid_from ({self.valid_from}) is after valid_until ({self.valid_until})"
            )
        if self.scc_module is not None:
            from troth.policy.adequacy import adequacy_data  # the data set imports this module

            if not adequacy_data().scc[self.scc].modules:
                raise ValueError(
                    f"scc_module: the standard contractual clauses of Decision {self.scc} have "
                    "no modules (only those of Implementing Decision (EU) 2021/914 do); remove "
                    "'scc_module' or move to the 2021/914 clauses"
                )
        return self


class Recipient(_Model):
    id: Identifier
    name: Text
    type: Literal[
        "group_company", "service_provider", "partner", "advertising_network", "authority"
    ]
    role: Literal["processor", "controller", "joint_controller"]
    description: Text
    countries: list[CountryCode] = Field(min_length=1)
    purposes: list[Identifier] = Field(min_length=1)
    categories: list[Identifier] = Field(default_factory=list)
    transfer: Transfer | None = None
    opt_out: Url | None = None
    privacy_policy: Url | None = None
    hosts: list[str] = Field(default_factory=list)


class Choice(_Model):
    id: Identifier
    provider: Literal["ours", "third_party"]
    title: Text
    description: Text | None = None
    url: Url | None = None
    applies_to: list[Identifier] = Field(default_factory=list)
    regions: list[CountryCode] = Field(default_factory=list)
    note: Text | None = None


class SecurityMeasure(_Model):
    id: Identifier
    type: Literal["management", "organisational", "technical", "physical"]
    title: Text
    description: Text
    implemented_by: (
        Literal[
            "audit_log",
            "vault_encryption",
            "crypto_shredding",
            "access_control",
            "consent_ledger",
            "rate_limiting",
        ]
        | None
    ) = None


class Jurisdiction(_Model):
    id: Identifier
    name: Text
    regions: list[CountryCode] = Field(min_length=1)
    consent_model: Literal["opt_in", "opt_out", "notice"]
    gpc: Literal["ignore", "opt_out"] = "ignore"
    gpc_refuses: list[Identifier] = Field(default_factory=list)
    authority: Authority | None = None
    default: bool = False


class Right(_Model):
    right: RightKind
    how: Text
    url: Url | None = None


class Texts(_Model):
    """The policy's own prose for the places troth would otherwise say something generic."""

    intro: Text | None = None
    personal_data: Text | None = None
    collection: Text | None = None
    use: Text | None = None
    tracking: Text | None = None
    cookies: Text | None = None
    pixels: Text | None = None
    sdks: Text | None = None
    tracking_links: Text | None = None
    local_storage: Text | None = None
    third_parties: Text | None = None
    choices: Text | None = None
    sharing: Text | None = None
    transfers: Text | None = None
    retention: Text | None = None
    security: Text | None = None
    rights: Text | None = None
    automated_decisions: Text | None = None
    changes: Text | None = None


class Policy(_Model):
    troth: Literal[1]
    id: Identifier
    service: str
    url: Url | None = None
    version: str = Field(pattern=r"^\d+(\.\d+){0,2}$")
    effective: dt.date
    languages: list[LanguageCode] = Field(min_length=1)
    example_values: list[str] = Field(default_factory=list)
    controller: Controller
    texts: Texts = Field(default_factory=Texts)
    subjects: list[Subject] = Field(min_length=1)
    categories: list[DataCategory] = Field(min_length=1)
    consent_categories: list[ConsentCategory] = Field(default_factory=list)
    purposes: list[Purpose] = Field(min_length=1)
    tracking: list[TrackingTechnology] = Field(default_factory=list)
    recipients: list[Recipient] = Field(default_factory=list)
    choices: list[Choice] = Field(default_factory=list)
    security_measures: list[SecurityMeasure] = Field(default_factory=list)
    jurisdictions: list[Jurisdiction] = Field(default_factory=list)
    rights: list[Right] = Field(default_factory=list)

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def activities(self) -> list[tuple[Purpose, Activity]]:
        return [(p, a) for p in self.purposes for a in p.activities]
