"""Lint: what a valid policy file can still get wrong, legally or logically.

Each rule has a stable code. Errors make ``troth check`` exit 1; warnings are reported.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel

from troth.errors import Location
from troth.policy.adequacy import (
    adequacy_data,
    regimes_of,
    transfer_countries,
    transfer_problems,
)
from troth.policy.loader import LoadedPolicy
from troth.policy.model import Policy, Recipient
from troth.policy.vocabulary import vocabulary

__all__ = ["Finding", "lint"]

Loc = tuple[str | int, ...]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    loc: Loc
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.severity} {self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "path": _dotted(self.loc),
            "file": self.location.path if self.location else None,
            "line": self.location.line if self.location else None,
            "column": self.location.column if self.location else None,
        }


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def lint(
    loaded: LoadedPolicy,
    locales: Collection[str] | None = None,
    *,
    today: dt.date | None = None,
) -> list[Finding]:
    """Every finding for a loaded policy, errors first, each with its place in the file.

    ``today`` (default: the current date) decides whether the shipped adequacy data set is
    too old to trust."""
    policy = loaded.policy
    found: list[Finding] = []
    for rule in _RULES:
        found.extend(rule(policy))
    found.extend(_stale_data(policy, today or dt.date.today()))
    if locales is not None:
        for i, lang in enumerate(policy.languages):
            if lang not in locales:
                found.append(
                    Finding(
                        "error",
                        "T053",
                        ("languages", i),
                        f"troth has no message catalogue for '{lang}'; available: "
                        + ", ".join(sorted(locales)),
                    )
                )
    located = [
        Finding(f.severity, f.code, f.loc, f.message, loaded.source.location(f.loc)) for f in found
    ]
    return sorted(
        located,
        key=lambda f: (f.severity != "error", f.location.line if f.location else 0, f.code),
    )


def _basis_kind(basis: str) -> str | None:
    vocab = vocabulary()
    return vocab.basis_kind(vocab.legal_basis(basis))


def _activities(policy: Policy) -> Iterator[tuple[Loc, Any]]:
    for pi, purpose in enumerate(policy.purposes):
        for ai, activity in enumerate(purpose.activities):
            yield ("purposes", pi, "activities", ai), activity


def _bases(policy: Policy) -> Iterator[Finding]:
    required = {c.id for c in policy.consent_categories if c.required}
    for loc, a in _activities(policy):
        kind = _basis_kind(a.basis)
        if kind == "legitimate_interest" and not a.legitimate_interest:
            yield Finding(
                "error",
                "T001",
                (*loc, "basis"),
                f"activity '{a.id}' relies on legitimate interest but does not state the "
                "interest (add 'legitimate_interest'; GDPR Art. 13(1)(d))",
            )
        if kind == "consent" and not a.consent:
            yield Finding(
                "error",
                "T002",
                (*loc, "basis"),
                f"activity '{a.id}' relies on consent but does not name its consent category "
                "(add 'consent')",
            )
        if kind != "consent" and a.consent:
            yield Finding(
                "error",
                "T003",
                (*loc, "consent"),
                f"activity '{a.id}' names consent '{a.consent}' but its legal basis is "
                f"{kind or a.basis}; give it its own activity with basis 'consent'",
            )
        if kind == "consent" and a.consent in required:
            yield Finding(
                "error",
                "T005",
                (*loc, "consent"),
                f"activity '{a.id}' depends on consent '{a.consent}', which cannot be refused "
                "(required: true); consent that cannot be refused is not consent",
            )
        if kind == "legal_obligation" and not a.legal_obligation:
            yield Finding(
                "warning",
                "T004",
                (*loc, "basis"),
                f"activity '{a.id}' relies on a legal obligation but does not name it "
                "(add 'legal_obligation')",
            )
        if a.retention is None:
            yield Finding(
                "error",
                "T042",
                loc,
                f"activity '{a.id}' does not say how long its data is kept (add 'retention'; "
                "GDPR Art. 13(2)(a))",
            )


def _shared_categories(policy: Policy) -> Iterator[Finding]:
    """Where a purpose uses a category on several bases, code must name the activity."""
    for pi, purpose in enumerate(policy.purposes):
        by_category: dict[str, dict[str, str]] = {}
        for a in purpose.activities:
            for c in a.categories:
                by_category.setdefault(c, {})[a.id] = _basis_kind(a.basis) or a.basis
        mixed = [c for c, acts in by_category.items() if len(set(acts.values())) > 1]
        if mixed:
            yield Finding(
                "warning",
                "T015",
                ("purposes", pi, "activities"),
                f"purpose '{purpose.id}' uses {', '.join(mixed)} on different legal bases in "
                "different activities; code using them must name the activity (the vault "
                "refuses to choose a basis)",
            )


def _tracking(policy: Policy) -> Iterator[Finding]:
    required = {c.id for c in policy.consent_categories if c.required}
    purposes = {p.id: p for p in policy.purposes}
    recipients = {r.id: r for r in policy.recipients}
    for ti, tech in enumerate(policy.tracking):
        loc: Loc = ("tracking", ti)
        acts = [a for pid in tech.purposes if pid in purposes for a in purposes[pid].activities]
        if tech.category in required:
            if acts and all(_basis_kind(a.basis) == "consent" for a in acts):
                yield Finding(
                    "error",
                    "T010",
                    (*loc, "purposes"),
                    f"'{tech.id}' is {tech.category} (set without consent) but every activity "
                    "of its purposes needs consent",
                )
        elif not any(
            _basis_kind(a.basis) == "consent" and a.consent == tech.category for a in acts
        ):
            yield Finding(
                "error",
                "T010",
                (*loc, "purposes"),
                f"'{tech.id}' is a {tech.category} technology, but none of its purposes "
                f"({', '.join(tech.purposes)}) has an activity based on consent '{tech.category}'",
            )
        if tech.without_consent == "aggregate" and not any(
            _basis_kind(a.basis) != "consent" for a in acts
        ):
            yield Finding(
                "error",
                "T016",
                (*loc, "without_consent"),
                f"'{tech.id}' counts hits in aggregate without consent, but none of its "
                "purposes has an activity whose basis needs no consent",
            )
        if tech.type in ("pixel", "web_beacon", "tracking_link", "sdk") and tech.retention is None:
            yield Finding(
                "warning",
                "T017",
                loc,
                f"'{tech.id}' records hits but does not say how long they are kept "
                "(add 'retention'; `troth purge` enforces it)",
            )
        if tech.party == "third" and tech.vendor is None:
            yield Finding(
                "error",
                "T011",
                loc,
                f"third-party '{tech.id}' does not name its vendor (add 'vendor': a recipient id)",
            )
        if tech.type in ("cookie", "local_storage") and tech.expiry is None:
            yield Finding(
                "error", "T012", loc, f"{tech.type} '{tech.id}' does not say when it expires"
            )
        vendor = recipients.get(tech.vendor or "")
        if vendor is not None:
            missing = [p for p in tech.purposes if p not in vendor.purposes]
            if missing:
                yield Finding(
                    "warning",
                    "T013",
                    (*loc, "vendor"),
                    f"'{tech.id}' serves {', '.join(missing)} but its vendor '{vendor.id}' is "
                    "not declared as a recipient for that",
                )


def _recipients(policy: Policy) -> Iterator[Finding]:
    bound = regimes_of(policy)
    for ri, r in enumerate(policy.recipients):
        loc: Loc = ("recipients", ri)
        for p in transfer_problems(policy, r, policy.effective):
            yield Finding("error", p.code, (*loc, *p.field), _on_effective(p.message, policy))
        if r.transfer is not None and transfer_countries(policy, r):
            yield from _transfer_practice(r, loc)
            yield from _unbound_decisions(r, loc, bound)
        if r.type == "advertising_network" and r.opt_out is None:
            yield Finding(
                "warning",
                "T023",
                loc,
                f"advertising network '{r.id}' has no opt-out link (add 'opt_out')",
            )
        served = {
            c for pid in r.purposes for _, a in _purpose_acts(policy, pid) for c in a.categories
        }
        for ci, cat in enumerate(r.categories):
            if cat not in served:
                yield Finding(
                    "warning",
                    "T033",
                    (*loc, "categories", ci),
                    f"recipient '{r.id}' receives '{cat}', which none of its purposes processes",
                )


def _on_effective(message: str, policy: Policy) -> str:
    return message.replace(
        f"before {policy.effective}", f"before the policy takes effect ({policy.effective})"
    ).replace(f"on {policy.effective}", f"on the policy's effective date ({policy.effective})")


_DEROGATION_PREFIX = "eu-gdpr:A49-"


def _transfer_practice(r: Recipient, loc: Loc) -> Iterator[Finding]:
    t = r.transfer
    assert t is not None
    if t.mechanism.startswith(_DEROGATION_PREFIX) and r.type != "authority":
        yield Finding(
            "warning",
            "T028",
            (*loc, "transfer", "mechanism"),
            f"'{r.id}' receives data under an Art. 49 derogation, which covers only occasional, "
            "non-repetitive transfers (EDPB Guidelines 2/2018); a regular recipient needs "
            "adequacy or Art. 46 safeguards",
        )
    if t.mechanism != "eu-gdpr:A45-3" and (t.adequacy or t.adequacy_scope or t.organisation):
        named = "adequacy" if t.adequacy else "adequacy_scope" if t.adequacy_scope else None
        yield Finding(
            "warning",
            "T019",
            (*loc, "transfer", named or "organisation"),
            f"'{r.id}' names adequacy decisions, scope or organisation but its mechanism is "
            "not adequacy; they are ignored",
        )


_REGIME_HOME = {"eu": "in the EEA", "uk": "in the United Kingdom"}


def _unbound_decisions(r: Recipient, loc: Loc, bound: list[str]) -> Iterator[Finding]:
    """A named decision of a regime that does not bind the controller is ignored: say so."""
    t = r.transfer
    assert t is not None
    if t.mechanism != "eu-gdpr:A45-3":
        return  # T019 says the decisions are ignored
    data = adequacy_data()
    for i, decision_id in enumerate(t.adequacy):
        regime = data.decisions[decision_id].regime
        if regime not in bound:
            yield Finding(
                "warning",
                "T027",
                (*loc, "transfer", "adequacy", i),
                f"'{r.id}' names {decision_id}, a decision for transfers from a controller "
                f"{_REGIME_HOME.get(regime, regime)}, but this controller is not established "
                "there; the decision is ignored (name a decision of the regime that binds it)",
            )


def _stale_data(policy: Policy, today: dt.date) -> Iterator[Finding]:
    data = adequacy_data()
    if not any(r.transfer for r in policy.recipients):
        return
    if data.reviewed < _months_before(today, 6):
        yield Finding(
            "warning",
            "T029",
            ("recipients",),
            f"troth's adequacy data set ({data.version}) was last reviewed on {data.reviewed}, "
            f"more than six months before today ({today}); adequacy decisions may have been "
            "adopted, renewed or annulled since: update troth",
        )


def _months_before(day: dt.date, months: int) -> dt.date:
    month = day.month - months
    year = day.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _purpose_acts(policy: Policy, pid: str) -> list[tuple[str, Any]]:
    return [(p.id, a) for p in policy.purposes if p.id == pid for a in p.activities]


def _usage(policy: Policy) -> Iterator[Finding]:
    used_cats = {c for _, a in policy.activities() for c in a.categories}
    used_subjects = {s for _, a in policy.activities() for s in a.subjects}
    used_consents = {a.consent for _, a in policy.activities() if a.consent} | {
        t.category for t in policy.tracking
    }
    for i, c in enumerate(policy.categories):
        if c.id not in used_cats:
            yield Finding(
                "error",
                "T030",
                ("categories", i),
                f"data category '{c.id}' is declared but no activity uses it",
            )
        if c.source in ("third_party", "public") and c.source_detail is None:
            yield Finding(
                "error",
                "T043",
                ("categories", i, "source"),
                f"data category '{c.id}' is not collected from the person; say where it comes "
                "from (add 'source_detail'; GDPR Art. 14(2)(f))",
            )
    for i, s in enumerate(policy.subjects):
        if s.id not in used_subjects:
            yield Finding("warning", "T031", ("subjects", i), f"data subject '{s.id}' is not used")
    for i, cc in enumerate(policy.consent_categories):
        if cc.id not in used_consents and not cc.required:
            yield Finding(
                "warning",
                "T032",
                ("consent_categories", i),
                f"consent category '{cc.id}' is not asked for by any activity or technology",
            )
        if cc.required and cc.id != "necessary" and cc.required_reason is None:
            yield Finding(
                "error",
                "T047",
                ("consent_categories", i, "required"),
                f"'{cc.id}' cannot be refused; say why it is strictly necessary "
                "(add 'required_reason')",
            )


_RIGHT_ARTICLES = {
    "access": "Art. 15",
    "rectification": "Art. 16",
    "erasure": "Art. 17",
    "restriction": "Art. 18",
    "portability": "Art. 20",
    "objection": "Art. 21",
    "withdraw_consent": "Art. 7(3), 13(2)(c)",
    "complaint": "Art. 13(2)(d), 77",
}


def _transparency(policy: Policy) -> Iterator[Finding]:
    given = {r.right for r in policy.rights}
    uses_consent = any(_basis_kind(a.basis) == "consent" for _, a in policy.activities())
    for right, article in _RIGHT_ARTICLES.items():
        if right == "withdraw_consent" and not uses_consent:
            continue
        if right not in given:
            yield Finding(
                "error",
                "T040",
                ("rights",),
                f"the policy does not tell people about the right '{right}' (GDPR {article})",
            )
    if "automated_decisions" not in given:
        yield Finding(
            "warning",
            "T045",
            ("rights",),
            "the policy does not say whether automated decision-making is used "
            "(GDPR Art. 13(2)(f))",
        )
    if not any(j.authority for j in policy.jurisdictions):
        yield Finding(
            "error",
            "T041",
            ("jurisdictions",),
            "no supervisory authority is named for complaints (GDPR Art. 13(2)(d))",
        )
    if not policy.recipients:
        yield Finding(
            "warning",
            "T044",
            ("recipients",),
            "no recipients are declared; if none receive data, say so (GDPR Art. 13(1)(e))",
        )
    if policy.controller.dpo is None:
        yield Finding(
            "warning",
            "T046",
            ("controller",),
            "no data protection officer contact (GDPR Art. 13(1)(b), where one is designated)",
        )
    defaults = [i for i, j in enumerate(policy.jurisdictions) if j.default]
    if policy.jurisdictions and len(defaults) != 1:
        yield Finding(
            "error" if defaults else "warning",
            "T052",
            ("jurisdictions",),
            "exactly one jurisdiction should be 'default: true' (used when a visitor's region "
            "is unknown)",
        )
    for i, j in enumerate(policy.jurisdictions):
        if j.gpc == "opt_out" and not j.gpc_refuses:
            yield Finding(
                "warning",
                "T054",
                ("jurisdictions", i, "gpc"),
                f"jurisdiction '{j.id}' honours GPC but lists no category it refuses "
                "(add 'gpc_refuses')",
            )


def _examples(policy: Policy) -> Iterator[Finding]:
    paths = policy.example_values
    if paths:
        shown = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
        yield Finding(
            "warning",
            "T051",
            ("example_values",),
            f"{len(paths)} example value{'s' if len(paths) != 1 else ''} to replace before "
            f"publishing: {shown}",
        )


def _translations(policy: Policy) -> Iterator[Finding]:
    if len(policy.languages) < 2:
        return
    yield from _walk_texts(policy, (), policy.languages, policy.default_language)


def _walk_texts(model: BaseModel, loc: Loc, langs: list[str], default: str) -> Iterator[Finding]:
    text_fields = _text_fields(type(model))
    for name in type(model).model_fields:
        value = getattr(model, name)
        here: Loc = (*loc, name)
        if name in text_fields and value is not None:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                at = (*here, i) if isinstance(value, list) else here
                if isinstance(item, str) and name == "name":
                    continue  # a name given once is a proper name, the same in every language
                have = {default} if isinstance(item, str) else set(item)
                missing = [lang for lang in langs if lang not in have]
                if missing:
                    yield Finding(
                        "warning",
                        "T050",
                        at,
                        f"{_dotted(at)} has no {', '.join(missing)} translation",
                    )
        elif isinstance(value, BaseModel):
            yield from _walk_texts(value, here, langs, default)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _walk_texts(item, (*here, i), langs, default)


@functools.cache
def _text_fields(cls: type[BaseModel]) -> frozenset[str]:
    out = set()
    for name, info in cls.model_fields.items():
        if _mentions_text(info.annotation):
            out.add(name)
    return frozenset(out)


def _mentions_text(annotation: Any) -> bool:
    if annotation == dict[str, str]:
        return True
    return any(_mentions_text(arg) for arg in get_args(annotation))


_RULES = (
    _bases,
    _shared_categories,
    _tracking,
    _recipients,
    _usage,
    _transparency,
    _examples,
    _translations,
)
