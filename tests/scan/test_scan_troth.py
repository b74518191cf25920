"""Scan the seed service's demo page as `troth serve` serves it, accepting through troth's own
banner (the scanner's default accept control): the seed policy declares everything it does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SEED, running_server
from troth.policy.loader import load_policy
from troth.scan import ScanOptions, ScanReport, scan_site
from troth.scan.compare import compare


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScanReport]:
    tmp: Path = tmp_path_factory.mktemp("scan-troth")
    with running_server(SEED, f"sqlite:///{tmp}/troth.db", tmp) as server:
        yield scan_site(server.url + "/", ScanOptions(pages=3), load_policy(SEED).policy)


def test_seed_demo_agrees_with_the_seed_policy(report: ScanReport) -> None:
    assert report.observations.accepted
    assert report.violations == []
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
