"""Scan the seed service's demo page as `troth serve` serves it, accepting through troth's own
banner (the scanner's default accept control): the seed policy declares everything it does.

The demo links to its other regions (``?region=us_ca``, ``?region=au``: opt-out and notice
jurisdictions, where analytics runs without a click); one scan judges one jurisdiction, so
those links are not followed, and a region's own page is judged under its own jurisdiction.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SEED, running_server
from troth.policy.loader import load_policy
from troth.scan import ScanOptions, ScanReport, scan_site
from troth.scan.compare import compare
from troth.scan.observations import ObservedCookie

TROTH = str(Path(sys.executable).with_name("troth"))
ANALYTICS = ["_ga", "_ga_DEMO123", "_gid"]


@dataclass(frozen=True)
class Demo:
    url: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp: Path = tmp_path_factory.mktemp("scan-troth")
    with running_server(SEED, f"sqlite:///{tmp}/troth.db", tmp) as server:
        yield Demo(server.url + "/")


@pytest.fixture(scope="module")
def report(demo: Demo) -> ScanReport:
    return scan_site(demo.url, ScanOptions(), load_policy(SEED).policy)


def test_seed_demo_agrees_with_the_seed_policy(report: ScanReport) -> None:
    assert report.observations.accepted
    assert report.violations == []
    assert report.jurisdiction == "eu (opt_in)"
    # the other regions of the demo page are skipped, not scanned as the default region
    pages = report.observations.pages["before"]
    assert not any("region=" in p for p in pages)
    assert report.observations.skipped >= 4
    # declared for pages the demo does not have (signed-in pages, support chat, payments, ads)
    unseen = sorted(f.subject for f in report.warnings if f.kind == "declared_not_seen")
    assert unseen == ["csrf_token", "fraud_sid", "ide", "remember_user", "session", "support_chat"]
    # the demo's tags are local stand-ins: none of the recipients' hosts is contacted
    assert sorted(f.subject for f in report.warnings if f.kind == "host_not_seen") == [
        "googleads.g.doubleclick.net",
        "pay.example.com",
        "px.ads-partner.example",
        "region1.google-analytics.com",
        "support-widget.example.com",
        "www.google-analytics.com",
        "www.googleadservices.com",
        "www.googletagmanager.com",
    ]
    assert {f.kind for f in report.warnings} == {"declared_not_seen", "host_not_seen"}


def test_troth_scan_of_the_demo_exits_zero(demo: Demo) -> None:
    """As the README tells a user to run it: default settings, the seed policy."""
    result = subprocess.run(
        [TROTH, "scan", demo.url, "--policy", str(SEED), "--format", "json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    data = json.loads(result.stdout)
    assert data["violations"] == 0
    assert len(data["pages"]["before"]) > 1


def test_troth_banner_holds_every_cookie_until_consent(report: ScanReport) -> None:
    cookies = report.observations.cookies
    assert [c.name for c in cookies if c.phase == "before"] == []
    after = {c.name for c in cookies if c.phase == "after"}
    assert after == {"troth_consent", "_ga", "_ga_DEMO123", "_gid", "_gcl_au", "lang"}


def test_a_cookie_dropped_from_the_policy_is_reported(report: ScanReport) -> None:
    policy = load_policy(SEED).policy
    trimmed = policy.model_copy(update={"tracking": [t for t in policy.tracking if t.id != "gid"]})
    found = [f for f in compare(report.observations, trimmed) if f.severity == "violation"]
    assert [(f.kind, f.subject) for f in found] == [("undeclared_cookie", "_gid")]
    assert found[0].classification is not None
    assert found[0].classification.platform == "Google Analytics"
    assert found[0].classification.category == "analytics"


def test_an_opt_out_region_is_judged_under_its_own_jurisdiction(demo: Demo) -> None:
    policy = load_policy(SEED).policy
    us = scan_site(demo.url + "?region=us_ca", ScanOptions(pages=1), policy, jurisdiction="us_ca")
    assert us.jurisdiction == "us_ca (opt_out)"
    before = {c.name for c in us.observations.cookies if c.phase == "before"}
    assert set(ANALYTICS) <= before  # opt-out: analytics runs before any click
    assert us.violations == []
    # the same page judged under the opt-in default: every such cookie came too early
    as_eu = [(f.kind, f.subject) for f in compare(us.observations, policy)
             if f.severity == "violation"]  # fmt: skip
    assert as_eu == [
        ("cookie_before_consent", name) for name in sorted([*ANALYTICS, "_gcl_au", "lang"])
    ]


def test_global_privacy_control_refuses_advertising_in_us_ca(demo: Demo) -> None:
    policy = load_policy(SEED).policy
    options = ScanOptions(pages=1, gpc=True)
    report = scan_site(demo.url + "?region=us_ca", options, policy, jurisdiction="us_ca")
    assert report.observations.gpc
    before = {c.name for c in report.observations.cookies if c.phase == "before"}
    assert "_gcl_au" not in before  # the banner honours the signal: no advertising cookie
    assert set(ANALYTICS) <= before
    assert report.violations == []
    after = {c.name for c in report.observations.cookies if c.phase == "after"}
    assert "_gcl_au" not in after  # not even after "accept all"
    # had the banner ignored the signal, the scan would say so
    ignored = copy.deepcopy(report.observations)
    ignored.cookies.append(ObservedCookie("_gcl_au", "127.0.0.1", "/", 90 * 86400, "before"))
    found = [(f.kind, f.subject) for f in compare(ignored, policy, "us_ca")
             if f.severity == "violation"]  # fmt: skip
    assert found == [("cookie_before_consent", "_gcl_au")]
    ignored.gpc = False  # ... and without a signal, opt-out lets it come before the click
    assert [f for f in compare(ignored, policy, "us_ca") if f.severity == "violation"] == []


def test_variants_follows_the_other_regions_which_the_default_judges(demo: Demo) -> None:
    """Asked to crawl every region's variant, the scan meets the opt-out regions' analytics
    and, judged under the opt-in default, says it came before any click."""
    policy = load_policy(SEED).policy
    report = scan_site(demo.url, ScanOptions(variants=True), policy)
    assert any("region=us_ca" in p for p in report.observations.pages["before"])
    assert ("cookie_before_consent", "_ga") in {(f.kind, f.subject) for f in report.violations}
