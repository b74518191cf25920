"""Scan the local test shop (tests/scan/site) in real Chromium and check every finding.

The shop does, on purpose: an undeclared cookie unknown to the Open Cookie Database
(visitor_fp), an undeclared advertising cookie before consent (_fbp), an undeclared local
storage key (ab_test), a declared advertising pixel firing before consent (px.tracker.test),
a third party missing from the recipients (cdn.unknown.test), and a declared 30-day cookie
set for 90 days (prefs_theme). It also does things right that must not be reported: a
session cookie (sid), a cookie banner's own cookie, an analytics cookie after consent, a
Google Analytics cookieless ping (gcs=G100) before consent and G111 after.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from troth.policy.model import Policy
from troth.scan import ScanOptions, ScanReport, scan_site
from troth.scan.compare import compare

from .conftest import Site

EXPECTED = [
    ("violation", "cookie_before_consent", "_fbp"),
    ("violation", "expiry_too_long", "prefs_theme"),
    ("violation", "request_before_consent", "px.tracker.test"),
    ("violation", "undeclared_cookie", "_fbp"),
    ("violation", "undeclared_cookie", "visitor_fp"),
    ("violation", "undeclared_host", "cdn.unknown.test"),
    ("violation", "undeclared_storage", "ab_test"),
    ("warning", "declared_not_seen", "newsletter_popup"),
    ("warning", "host_not_seen", "stats.shop.example"),
]


@pytest.fixture(scope="module")
def report(site: Site) -> ScanReport:
    options = ScanOptions(pages=10, accept_selector="#accept", map_hosts=site.map_hosts)
    return scan_site(site.url, options, site.policy().policy)


def test_findings_are_exactly_what_the_shop_does_wrong(report: ScanReport) -> None:
    assert [(f.severity, f.kind, f.subject) for f in report.findings] == EXPECTED
    assert report.observations.accepted
    assert report.observations.problems == []


def test_crawl_follows_same_origin_pages_only(report: ScanReport, site: Site) -> None:
    pages = {site.url, site.url + "about.html", site.url + "contact.html"}
    assert set(report.observations.pages["before"]) == pages
    assert set(report.observations.pages["after"]) == pages


def test_cookies_before_consent_and_their_lifetimes(report: ScanReport) -> None:
    before = {c.name: c for c in report.observations.cookies if c.phase == "before"}
    assert set(before) == {"sid", "visitor_fp", "_fbp", "lang"}
    assert before["sid"].lifetime is None
    assert before["sid"].http_only
    assert 30 * 86400 - 120 <= (before["visitor_fp"].lifetime or 0) <= 30 * 86400
    after = {c.name for c in report.observations.cookies if c.phase == "after"}
    assert {"consent", "_stats_id", "prefs_theme"} <= after


def test_consent_mode_signals_are_recorded(report: ScanReport) -> None:
    google = {
        (r.phase, r.gcs)
        for r in report.observations.requests
        if r.host == "www.google-analytics.com"
    }
    assert google == {("before", "G100"), ("after", "G111")}


def test_beacons_are_recognised(report: ScanReport) -> None:
    tracker = {(r.phase, r.resource_type, r.beacon) for r in report.observations.requests
               if r.host == "px.tracker.test"}  # fmt: skip
    assert tracker == {("before", "image", True), ("after", "ping", True)}


def test_unknown_cookie_classified_by_the_open_cookie_database(report: ScanReport) -> None:
    fbp = next(f for f in report.findings if f.kind == "undeclared_cookie" and f.subject == "_fbp")
    assert fbp.classification is not None
    assert (fbp.classification.platform, fbp.classification.category) == ("Facebook", "advertising")
    unknown = next(f for f in report.findings if f.subject == "visitor_fp")
    assert unknown.classification is None


def test_suggested_yaml_declares_what_was_undeclared(report: ScanReport, site: Site) -> None:
    """Adding every suggested snippet to the policy leaves no 'undeclared' finding."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(site.policy_path.read_text()))
    for finding in report.findings:
        if finding.suggestion is None:
            continue
        snippet = yaml.safe_load(finding.suggestion)
        assert set(snippet) <= {"tracking", "recipients"}, finding.suggestion
        for section, entries in snippet.items():
            data[section].extend(entries)
    fixed = Policy.model_validate(data)
    left = [(f.kind, f.subject) for f in compare(report.observations, fixed)]
    assert [k for k in left if k[0].startswith("undeclared")] == []
    # the snippets keep what they know: _fbp is advertising, so it is still set too early
    assert ("cookie_before_consent", "_fbp") in left


def test_a_redirected_start_page_is_visited_once_and_pages_keep_link_order(site: Site) -> None:
    options = ScanOptions(pages=10, accept_selector="#accept", map_hosts=site.map_hosts)
    report = scan_site(site.url + "start", options)
    expected = [site.url, site.url + "about.html", site.url + "contact.html"]
    assert report.observations.pages == {"before": expected, "after": expected}
    assert report.findings == []  # no policy: an inventory


def test_excluded_links_are_not_followed(site: Site) -> None:
    options = ScanOptions(
        pages=10, accept_selector="#accept", map_hosts=site.map_hosts, exclude=(r"/about\.",)
    )
    report = scan_site(site.url, options)
    expected = [site.url, site.url + "contact.html"]
    assert report.observations.pages == {"before": expected, "after": expected}
    assert report.observations.skipped == 1


def test_a_start_page_redirected_to_another_origin_is_the_site(site: Site) -> None:
    """old-shop.test redirects to shop.test: the crawl goes on there, and the shop's own host
    is not a third party."""
    options = ScanOptions(pages=10, accept_selector="#accept", map_hosts=site.map_hosts)
    start = site.url.replace("shop.test", "old-shop.test")
    report = scan_site(start, options, site.policy().policy)
    expected = [site.url, site.url + "about.html", site.url + "contact.html"]
    assert report.observations.pages == {"before": expected, "after": expected}
    assert report.observations.site_host == "shop.test"
    assert [(f.severity, f.kind, f.subject) for f in report.findings] == EXPECTED
