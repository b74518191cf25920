"""The comparison rules on hand-made observations (no browser): edges of each rule."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import yaml

from troth.policy.model import Policy
from troth.scan.classify import iso_duration
from troth.scan.compare import compare, gcs_denies_storage
from troth.scan.errors import ScanError
from troth.scan.observations import (
    Observations,
    ObservedCookie,
    ObservedRequest,
    ObservedStorage,
    Phase,
    is_first_party,
)

from .conftest import SITE_POLICY

DAY = 86400
UNSEEN = ("declared_not_seen", "host_not_seen")


@pytest.fixture(scope="module")
def policy() -> Policy:
    from troth.policy.loader import load_policy

    return load_policy(SITE_POLICY).policy


def observed(
    *,
    cookies: Sequence[ObservedCookie] = (),
    requests: Sequence[ObservedRequest] = (),
    accepted: bool = True,
) -> Observations:
    obs = Observations("https://www.shop.example/", "www.shop.example", accepted=accepted)
    obs.cookies.extend(cookies)
    obs.requests.extend(requests)
    return obs


def cookie(name: str, lifetime: int | None, phase: Phase = "after") -> ObservedCookie:
    return ObservedCookie(name, "www.shop.example", "/", lifetime, phase)


def google(gcs: str | None, phase: Phase) -> ObservedRequest:
    query = f"?v=2&gcs={gcs}" if gcs else "?v=2"
    return ObservedRequest.from_url(
        "https://www.google-analytics.com/g/collect" + query, "image", "GET", phase
    )


def violations(obs: Observations, policy: Policy) -> list[tuple[str, str]]:
    return [(f.kind, f.subject) for f in compare(obs, policy) if f.severity == "violation"]


@pytest.mark.parametrize(
    ("name", "lifetime", "too_long"),
    [
        ("prefs_theme", 30 * DAY + 60, False),  # P30D, and a minute for reading the jar
        ("prefs_theme", 31 * DAY, True),
        ("consent", 186 * DAY, False),  # P6M: six months may have 186 days
        ("consent", 187 * DAY, True),
        ("consent", None, False),
    ],
)
def test_expiry_against_the_longest_declared_length(
    policy: Policy, name: str, lifetime: int | None, too_long: bool
) -> None:
    found = violations(observed(cookies=[cookie(name, lifetime)]), policy)
    assert found == ([("expiry_too_long", name)] if too_long else [])


def test_session_cookie_that_persists_is_too_long(policy: Policy) -> None:
    assert violations(observed(cookies=[cookie("sid", 3600)]), policy) == [
        ("expiry_too_long", "sid")
    ]


def test_pattern_declares_a_family_of_cookies(policy: Policy) -> None:
    obs = observed(cookies=[cookie("_stats_a", 10 * DAY), cookie("_statsb", DAY)])
    assert violations(obs, policy) == [("undeclared_cookie", "_statsb")]


def test_necessary_cookie_before_consent_is_fine(policy: Policy) -> None:
    obs = observed(cookies=[cookie("sid", None, "before"), cookie("_stats_a", DAY, "before")])
    assert violations(obs, policy) == [("cookie_before_consent", "_stats_a")]


@pytest.mark.parametrize(
    ("gcs", "flagged"), [("G100", False), ("G101", True), ("G111", True), (None, True)]
)
def test_google_before_consent_only_as_a_cookieless_ping(policy: Policy, gcs: str | None,
                                                         flagged: bool) -> None:  # fmt: skip
    found = violations(observed(requests=[google(gcs, "before")]), policy)
    assert (found == [("request_before_consent", "www.google-analytics.com")]) is flagged
    assert found == [] or flagged


def test_consent_mode_not_updated_after_accept(policy: Policy) -> None:
    findings = compare(observed(requests=[google("G100", "after")]), policy)
    assert [(f.severity, f.kind) for f in findings if f.kind not in UNSEEN] == [
        ("warning", "consent_mode_not_updated")
    ]
    not_accepted = compare(observed(requests=[google("G100", "after")], accepted=False), policy)
    assert [f.kind for f in not_accepted if f.kind not in UNSEEN] == []


def test_undeclared_host_of_a_declared_technology_names_its_recipient(policy: Policy) -> None:
    recipients = [
        r.model_copy(update={"hosts": []}) if r.id == "ad_partner" else r for r in policy.recipients
    ]
    trimmed = policy.model_copy(update={"recipients": recipients})
    pixel = ObservedRequest.from_url("http://px.tracker.test/px.gif?e=1", "image", "GET", "after")
    obs = observed(requests=[pixel])
    found = [f for f in compare(obs, trimmed) if f.kind == "undeclared_host"]
    assert [f.subject for f in found] == ["px.tracker.test"]
    assert (
        found[0].suggestion
        == "# add to recipients[ad_partner].hosts:\n    hosts: [px.tracker.test]"
    )


def test_helpers() -> None:
    assert gcs_denies_storage("G100")
    assert not gcs_denies_storage("G110")
    assert not gcs_denies_storage(None)
    assert is_first_party(".shop.example", "www.shop.example")
    assert is_first_party("cdn.shop.example", "www.shop.example")
    assert not is_first_party("shop.example.evil", "www.shop.example")
    assert iso_duration(730 * DAY) == "P2Y"
    assert iso_duration(90 * DAY - 1) == "P90D"
    assert iso_duration(5) == "P1D"


def test_every_suggestion_parses_and_declares_what_it_names(policy: Policy) -> None:
    """Snippets for a category the policy has no technology of yet (security, by the Open
    Cookie Database), an unknown cookie, a third-party cookie and a new recipient."""
    obs = observed(
        cookies=[
            cookie("__AntiXsrfToken", None, "before"),
            cookie("mystery", 5 * DAY),
            ObservedCookie("trk", ".ads.partner.example", "/", 365 * DAY, "after"),
        ],
        requests=[
            ObservedRequest.from_url("https://cdn.other.example/x.js", "script", "GET", "after")
        ],
    )
    found = [f for f in compare(obs, policy) if f.suggestion]
    assert [f.subject for f in found] == ["__AntiXsrfToken", "mystery", "trk", "cdn.other.example"]
    data = policy.model_dump(mode="python")
    for finding in found:
        for section, entries in yaml.safe_load(finding.suggestion).items():
            data[section].extend(entries)
    fixed = Policy.model_validate(data)
    left = [(f.kind, f.subject) for f in compare(obs, fixed) if f.kind.startswith("undeclared")]
    assert left == []
    security = next(t for t in fixed.tracking if t.name == "__AntiXsrfToken")
    assert (security.category, security.purposes) == ("security", ["provide_service"])
    trk = next(t for t in fixed.tracking if t.name == "trk")
    assert (trk.party, trk.domain, str(trk.expiry)) == ("third", "ads.partner.example", "P1Y")


def with_regions(policy: Policy) -> Policy:
    data = policy.model_dump(mode="python")
    data["jurisdictions"] += [
        {"id": "us_ca", "name": "California", "regions": ["US"], "consent_model": "opt_out",
         "gpc": "opt_out", "gpc_refuses": ["advertising"]},
        {"id": "au", "name": "Australia", "regions": ["AU"], "consent_model": "notice"},
    ]  # fmt: skip
    return Policy.model_validate(data)


@pytest.mark.parametrize(
    ("jurisdiction", "gpc", "expected"),
    [
        (None, False, ["_fbp", "_stats_a"]),  # the policy's default: eu, opt-in
        ("eu", True, ["_fbp", "_stats_a"]),
        ("us_ca", False, []),
        ("us_ca", True, ["_fbp"]),  # GPC refuses advertising there (Facebook's _fbp)
        ("au", True, []),  # notice: no click needed, and no GPC rule there
    ],
)
def test_consent_before_the_click_depends_on_the_jurisdiction(
    policy: Policy, jurisdiction: str | None, gpc: bool, expected: list[str]
) -> None:
    obs = observed(
        cookies=[cookie("sid", None, "before"), cookie("_stats_a", DAY, "before"),
                 cookie("_fbp", 90 * DAY, "before")]
    )  # fmt: skip
    obs.gpc = gpc
    found = compare(obs, with_regions(policy), jurisdiction)
    assert [f.subject for f in found if f.kind == "cookie_before_consent"] == expected


def test_an_unknown_jurisdiction_is_refused(policy: Policy) -> None:
    with pytest.raises(ScanError, match=r"--jurisdiction: 'mars' is not .*; it has eu, us_ca, au"):
        compare(observed(), with_regions(policy), "mars")


def test_a_beacon_before_consent_to_an_untracked_host_stays_flagged(policy: Policy) -> None:
    """Adding the suggested recipient (with its pixel) declares the host, but the pixel still
    fired before any consent: the finding stays until the site waits for the click."""
    beacon = ObservedRequest.from_url("https://px.new.example/b?e=pv", "image", "GET", "before")
    obs = observed(requests=[beacon])
    found = [f for f in compare(obs, policy) if f.severity == "violation"]
    assert [(f.kind, f.subject) for f in found] == [
        ("request_before_consent", "px.new.example"),
        ("undeclared_host", "px.new.example"),
    ]
    data = policy.model_dump(mode="python")
    for section, entries in yaml.safe_load(found[1].suggestion or "").items():
        data[section].extend(entries)
    fixed = Policy.model_validate(data)
    pixel = next(t for t in fixed.tracking if t.domain == "px.new.example")
    assert (pixel.type, pixel.vendor, pixel.category) == ("pixel", "px_new_example", "advertising")
    assert violations(obs, fixed) == [("request_before_consent", "px.new.example")]
    # a declared recipient without a technology: flagged too, with the pixel to declare
    bare = policy.model_copy(update={"recipients": [*policy.recipients, fixed.recipients[-1]]})
    flagged = [f for f in compare(obs, bare) if f.severity == "violation"]
    assert [(f.kind, f.subject) for f in flagged] == [("request_before_consent", "px.new.example")]
    assert "vendor: px_new_example" in (flagged[0].suggestion or "")
    # a script, not a beacon, is only an undeclared host; opt-out lets a beacon come early
    script = ObservedRequest.from_url("https://px.new.example/t.js", "script", "GET", "before")
    assert violations(observed(requests=[script]), bare) == []
    assert [
        f.kind for f in compare(obs, with_regions(bare), "us_ca") if f.severity == "violation"
    ] == []


def test_open_cookie_database_platform_only_where_its_domain_fits(policy: Policy) -> None:
    obs = observed(
        cookies=[
            cookie("SID", None, "before"),  # a shop's own session: not Google's 'SID'
            ObservedCookie("SID", ".google.com", "/", 730 * DAY, "after"),
            cookie("PHPSESSID", None, "before"),  # Functional: preferences, to be checked
        ]
    )
    findings = compare(obs, policy)
    undeclared = {
        (f.subject, "google.com" in f.message): f for f in findings if f.kind == "undeclared_cookie"
    }
    assert undeclared[("SID", False)].classification is None
    google = undeclared[("SID", True)].classification
    assert google is not None
    assert (google.platform, google.category) == ("Google", "advertising")
    php = undeclared[("PHPSESSID", False)]
    assert php.classification is not None
    assert (php.classification.category, php.classification.source_category) == (
        "preferences",
        "Functional",
    )
    assert "category: preferences  # check: the Open Cookie Database says Functional" in (
        php.suggestion or ""
    )
    # neither a name another site uses nor a guessed category proves a cookie came too early
    assert [f for f in findings if f.kind == "cookie_before_consent"] == []


def test_suggestions_escape_names_and_never_reuse_an_id(policy: Policy) -> None:
    """A storage key can hold anything; ids must be new to the policy and to each other."""
    from troth.policy.model import TrackingTechnology

    weird = 'k"ey\nnext: 1 # x'
    obs = observed(cookies=[cookie("SID", None), cookie("ab-test", DAY)])
    obs.storage.extend([
        ObservedStorage("local_storage", "ab_test", "https://www.shop.example", "after"),
        ObservedStorage("local_storage", weird, "https://www.shop.example", "after"),
    ])  # fmt: skip
    found = [f for f in compare(obs, policy) if f.suggestion]
    entries: list[dict[str, object]] = []
    for f in found:
        entries.extend(yaml.safe_load(f.suggestion or "")["tracking"])
    ids = [str(e["id"]) for e in entries]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {t.id for t in policy.tracking}  # 'sid' is the policy's own
    assert weird in {e["name"] for e in entries}
    data = policy.model_dump(mode="python")
    data["tracking"].extend(entries)
    fixed = Policy.model_validate(data)
    assert all(isinstance(t, TrackingTechnology) for t in fixed.tracking)
    left = [f.kind for f in compare(obs, fixed) if f.kind.startswith("undeclared")]
    assert left == []
