"""Compare what a crawl saw with what the policy declares, and say what disagrees.

Violations (a scan exits 1 on any):

* ``undeclared_cookie`` / ``undeclared_storage``: no tracking technology of the policy has
  that name or pattern (classified with the Open Cookie Database where it knows the name);
* ``undeclared_host``: a third party the pages contacted that no ``recipients[].hosts`` lists;
* ``cookie_before_consent`` / ``storage_before_consent``: a cookie or storage key whose
  category needs consent before the click (declared, or as classified) was there before any
  consent. What needs it depends on the jurisdiction the scan is judged under (the policy's
  default one unless another is named): under ``opt_in`` every category but the necessary and
  required ones; under ``opt_out`` and ``notice`` none, except the categories a Global Privacy
  Control signal refuses there (``gpc: opt_out``, ``gpc_refuses``) when the scan sent one;
* ``request_before_consent``: a request, before any consent, to a third party whose declared
  tracking technologies all need consent, or (under opt-in) a beacon-like one to a third party
  no tracking technology covers (a Google request whose Consent Mode ``gcs`` says
  storage is denied is a cookieless ping and is not counted);
* ``expiry_too_long``: a cookie that lives longer than its declared expiry.

Warnings: ``consent_mode_not_updated`` (Google requests after "accept all" still say storage is
denied), ``declared_not_seen`` (a declared web cookie or storage key the crawl never met) and
``host_not_seen`` (a host in ``recipients[].hosts`` the pages never contacted).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from troth.policy.model import Jurisdiction, Policy, TrackingTechnology
from troth.policy.types import Duration
from troth.scan.classify import Classification, classify_cookie
from troth.scan.errors import ScanError
from troth.scan.observations import (
    Observations,
    ObservedCookie,
    ObservedRequest,
    ObservedStorage,
    is_first_party,
    is_google_host,
)
from troth.scan.suggest import Suggestions

__all__ = [
    "Finding",
    "FindingKind",
    "Severity",
    "choose_jurisdiction",
    "compare",
    "gcs_denies_storage",
]

Severity = Literal["violation", "warning"]
FindingKind = Literal[
    "undeclared_cookie",
    "undeclared_storage",
    "undeclared_host",
    "cookie_before_consent",
    "storage_before_consent",
    "request_before_consent",
    "expiry_too_long",
    "consent_mode_not_updated",
    "declared_not_seen",
    "host_not_seen",
]
_STORAGE_TYPES = ("local_storage", "session_storage")
_MAX_DAYS = {"years": 366, "months": 31, "weeks": 7, "days": 1}
_SLACK = 60  # seconds between a cookie being set and the crawler reading the jar


@dataclass(frozen=True)
class Finding:
    """One disagreement between the site and the policy."""

    kind: FindingKind
    severity: Severity
    subject: str  # the cookie name, storage key, host or tracking technology id
    message: str
    suggestion: str | None = None  # YAML to add to the policy
    classification: Classification | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "suggestion": self.suggestion,
            "classification": self.classification.as_dict() if self.classification else None,
        }


def gcs_denies_storage(gcs: str | None) -> bool:
    """``G100``: Consent Mode says ad_storage and analytics_storage are both denied."""
    return gcs is not None and len(gcs) == 4 and gcs.startswith("G1") and gcs[2:] == "00"


def choose_jurisdiction(policy: Policy, jid: str | None) -> Jurisdiction | None:
    """The jurisdiction ``jid``, or the policy's default one (else its first opt-in one, else
    its first); None for a policy without jurisdictions. A ScanError for an unknown id."""
    if jid is not None:
        found = next((j for j in policy.jurisdictions if j.id == jid), None)
        if found is None:
            known = ", ".join(j.id for j in policy.jurisdictions) or "none"
            raise ScanError(
                f"--jurisdiction: {jid!r} is not a jurisdiction of the policy; it has {known}"
            )
        return found
    return next(
        (j for j in policy.jurisdictions if j.default),
        next(
            (j for j in policy.jurisdictions if j.consent_model == "opt_in"),
            policy.jurisdictions[0] if policy.jurisdictions else None,
        ),
    )


class _Consent:
    """Which categories must wait for the click, under one jurisdiction's consent model."""

    def __init__(self, policy: Policy, jurisdiction: Jurisdiction | None, gpc: bool) -> None:
        required = {c.id for c in policy.consent_categories if c.required}
        self.free = {"necessary", *required}
        self.model = jurisdiction.consent_model if jurisdiction is not None else "opt_in"
        refused = (
            jurisdiction.gpc_refuses
            if jurisdiction is not None and gpc and jurisdiction.gpc == "opt_out"
            else []
        )
        self.refused = set(refused) - self.free

    @property
    def strict(self) -> bool:
        """Opt-in: nothing but the necessary before the click."""
        return self.model == "opt_in"

    def before_click(self, category: str) -> bool:
        if self.model == "opt_in":
            return category not in self.free
        return category in self.refused


def compare(obs: Observations, policy: Policy, jurisdiction: str | None = None) -> list[Finding]:
    """Every finding, violations first, then by kind and subject; consent is judged under
    ``jurisdiction`` (the policy's default one when None)."""
    matcher = _Matcher(policy)
    consent = _Consent(policy, choose_jurisdiction(policy, jurisdiction), obs.gpc)
    suggest = Suggestions(policy)
    findings = [
        *_cookies(obs, matcher, consent, suggest),
        *_storage(obs, matcher, consent, suggest),
        *_hosts(obs, policy, consent, suggest),
        *_not_seen(obs, policy, matcher),
    ]
    order = {"violation": 0, "warning": 1}
    return sorted(findings, key=lambda f: (order[f.severity], f.kind, f.subject))


class _Matcher:
    def __init__(self, policy: Policy) -> None:
        self.techs = [t for t in policy.tracking if "web" in t.platforms]
        self.patterns = {
            t.id: re.compile(fnmatch.translate(t.pattern)) for t in self.techs if t.pattern
        }

    def find(self, name: str, types: Iterable[str]) -> TrackingTechnology | None:
        wanted = tuple(types)
        for tech in self.techs:
            if tech.type in wanted and tech.name == name:
                return tech
        for tech in self.techs:
            if (
                tech.type in wanted
                and tech.id in self.patterns
                and self.patterns[tech.id].match(name)
            ):
                return tech
        return None


def _max_seconds(expiry: Duration) -> int:
    """The longest a declared expiry can be in seconds (months of 31 days, leap years)."""
    return sum(
        n * _MAX_DAYS[unit] * 86400
        if unit in _MAX_DAYS
        else n * {"hours": 3600, "minutes": 60}.get(unit, 1)
        for unit, n in expiry.parts()
    )


def _lifetime_text(seconds: int | None) -> str:
    if seconds is None:
        return "a session cookie"
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds} seconds"


def _cookies(
    obs: Observations, matcher: _Matcher, consent: _Consent, suggest: Suggestions
) -> list[Finding]:
    groups: dict[tuple[str, str], list[ObservedCookie]] = {}
    for cookie in obs.cookies:
        groups.setdefault((cookie.name, cookie.host), []).append(cookie)
    out: list[Finding] = []
    for (name, host), seen in sorted(groups.items()):
        before = any(c.phase == "before" for c in seen)
        lifetimes = [c.lifetime for c in seen if c.lifetime is not None]
        lifetime = max(lifetimes) if lifetimes else None
        first_party = is_first_party(host, obs.site_host)
        where = f"{name} ({host})"
        tech = matcher.find(name, ("cookie",))
        if tech is None:
            cls = classify_cookie(name, host)
            known = f"; Open Cookie Database: {cls.platform}, {cls.source_category}" if cls else ""
            out.append(
                Finding(
                    "undeclared_cookie",
                    "violation",
                    name,
                    f"cookie {where} is not declared in the policy"
                    f" ({_lifetime_text(lifetime)}, set {'before' if before else 'after'} consent"
                    f"{known})",
                    suggest.cookie(name, host, first_party, lifetime, cls),
                    cls,
                )
            )
            if before and cls is not None and cls.certain and consent.before_click(cls.category):
                out.append(
                    Finding(
                        "cookie_before_consent",
                        "violation",
                        name,
                        f"cookie {where} ({cls.category}, by the Open Cookie Database) "
                        "was set before any consent",
                        classification=cls,
                    )
                )
            continue
        if before and consent.before_click(tech.category):
            out.append(
                Finding(
                    "cookie_before_consent",
                    "violation",
                    name,
                    f"cookie {where} ({tech.category}, tracking technology {tech.id}) "
                    "was set before any consent",
                )
            )
        if tech.expiry is not None:
            too_long = (
                lifetime is not None
                if isinstance(tech.expiry, str)
                else lifetime is not None and lifetime > _max_seconds(tech.expiry) + _SLACK
            )
            if too_long:
                out.append(
                    Finding(
                        "expiry_too_long",
                        "violation",
                        name,
                        f"cookie {where} lives {_lifetime_text(lifetime)}; tracking technology "
                        f"{tech.id} declares {tech.expiry}",
                    )
                )
    return out


def _storage(
    obs: Observations, matcher: _Matcher, consent: _Consent, suggest: Suggestions
) -> list[Finding]:
    groups: dict[tuple[str, str], list[ObservedStorage]] = {}
    for item in obs.storage:
        groups.setdefault((item.kind, item.key), []).append(item)
    out: list[Finding] = []
    for (kind, key), seen in sorted(groups.items()):
        before = any(s.phase == "before" for s in seen)
        label = kind.replace("_", " ")
        tech = matcher.find(key, (kind,))
        category: str | None
        if tech is None:
            cls = classify_cookie(key, _host_of(seen[0].origin))
            out.append(
                Finding(
                    "undeclared_storage",
                    "violation",
                    key,
                    f"{label} key {key!r} is not declared in the policy"
                    f" (written {'before' if before else 'after'} consent)",
                    suggest.storage(kind, key, cls),
                    cls,
                )
            )
            category = cls.category if cls and cls.certain else None
        else:
            category = tech.category
        if before and category is not None and consent.before_click(category):
            out.append(
                Finding(
                    "storage_before_consent",
                    "violation",
                    key,
                    f"{label} key {key!r} ({category}) was written before any consent",
                )
            )
    return out


def _host_of(origin: str) -> str | None:
    return urlsplit(origin).hostname or None


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def _hosts(
    obs: Observations, policy: Policy, consent: _Consent, suggest: Suggestions
) -> list[Finding]:
    by_host: dict[str, list[ObservedRequest]] = {}
    for request in obs.requests:
        by_host.setdefault(request.host, []).append(request)
    out: list[Finding] = []
    for host, requests in sorted(by_host.items()):
        recipients = [r for r in policy.recipients if any(_host_matches(host, h) for h in r.hosts)]
        vendors = {r.id for r in recipients}
        techs = [
            t
            for t in policy.tracking
            if (t.vendor is not None and t.vendor in vendors)
            or (t.domain is not None and _host_matches(host, t.domain))
        ]
        categories = {t.category for t in techs}
        early = [
            r
            for r in requests
            if r.phase == "before" and not (is_google_host(host) and gcs_denies_storage(r.gcs))
        ]
        # beacon-like requests before the click to a host no tracking technology covers
        untracked = [r for r in early if r.beacon] if not categories and consent.strict else []
        if not recipients:
            out.append(
                Finding(
                    "undeclared_host",
                    "violation",
                    host,
                    f"third party {host} was contacted ({_request_summary(requests)}) "
                    "but no recipient lists it in recipients[].hosts",
                    suggest.host(host, techs, pixel=bool(untracked)),
                )
            )
        if untracked:
            out.append(
                Finding(
                    "request_before_consent",
                    "violation",
                    host,
                    f"{len(untracked)} beacon-like request(s) to {host} before any consent "
                    f"({_request_summary(untracked)}); no tracking technology of the policy "
                    "covers the host",
                    suggest.pixel(host, recipients[0].id) if recipients else None,
                )
            )
        elif early and categories and all(consent.before_click(c) for c in categories):
            gcs = sorted({r.gcs or "none" for r in early}) if is_google_host(host) else []
            signal = f"; Consent Mode gcs: {', '.join(gcs)}" if gcs else ""
            out.append(
                Finding(
                    "request_before_consent",
                    "violation",
                    host,
                    f"{len(early)} request(s) to {host} ({', '.join(sorted(categories))}) "
                    f"before any consent ({_request_summary(early)}){signal}",
                )
            )
        if obs.accepted and is_google_host(host):
            stale = [r for r in requests if r.phase == "after" and gcs_denies_storage(r.gcs)]
            if stale:
                out.append(
                    Finding(
                        "consent_mode_not_updated",
                        "warning",
                        host,
                        f"{len(stale)} request(s) to {host} after 'accept all' still carry "
                        f"gcs={stale[0].gcs} (storage denied)",
                    )
                )
    return out


def _request_summary(requests: list[ObservedRequest]) -> str:
    types = sorted({r.resource_type for r in requests})
    beacons = sum(r.beacon for r in requests)
    text = f"{len(requests)} request(s): {', '.join(types)}"
    return text + (f", {beacons} beacon-like" if beacons else "")


def _not_seen(obs: Observations, policy: Policy, matcher: _Matcher) -> list[Finding]:
    seen: set[str] = set()
    for cookie in obs.cookies:
        tech = matcher.find(cookie.name, ("cookie",))
        if tech is not None:
            seen.add(tech.id)
    for item in obs.storage:
        tech = matcher.find(item.key, (item.kind,))
        if tech is not None:
            seen.add(tech.id)
    contacted = {r.host for r in obs.requests}
    hosts = sorted(
        {
            (h.lower(), r.id)
            for r in policy.recipients
            for h in r.hosts
            if not h.startswith(("*", "."))
        }
    )
    unseen_hosts = [
        Finding(
            "host_not_seen",
            "warning",
            host,
            f"{host} (recipient {recipient}) is declared but the pages scanned never contacted it",
        )
        for host, recipient in hosts
        if host not in contacted
    ]
    return unseen_hosts + [
        Finding(
            "declared_not_seen",
            "warning",
            tech.id,
            f"{tech.type.replace('_', ' ')} {tech.name or tech.pattern} (tracking technology "
            f"{tech.id}) is declared but was not seen on the pages scanned",
        )
        for tech in matcher.techs
        if tech.type in ("cookie", *_STORAGE_TYPES) and tech.id not in seen
    ]
