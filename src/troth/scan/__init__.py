"""Reality check: scan the live site and the databases against the policy.

``scan_site`` crawls a site in headless Chromium before and after consent and compares the
cookies, storage keys and third-party requests it saw with the policy's tracking technologies
and recipients (:mod:`troth.scan.compare`); ``troth.scan.discover`` does the same for the
personal-data columns of a database and the dataset annotations.
"""

from __future__ import annotations

from troth.policy.model import Policy
from troth.scan.compare import Finding, choose_jurisdiction, compare
from troth.scan.crawler import Progress, ScanOptions, crawl, parse_map_host
from troth.scan.errors import ScanError
from troth.scan.report import ScanReport, render_html, render_json, render_text

__all__ = [
    "Finding",
    "ScanError",
    "ScanOptions",
    "ScanReport",
    "choose_jurisdiction",
    "parse_map_host",
    "render_html",
    "render_json",
    "render_text",
    "scan_site",
]


def scan_site(
    url: str,
    options: ScanOptions,
    policy: Policy | None = None,
    progress: Progress | None = None,
    jurisdiction: str | None = None,
) -> ScanReport:
    """Crawl ``url`` and compare what it does with ``policy`` (an inventory without one),
    judging consent under ``jurisdiction`` (the policy's default one when None)."""
    judged = choose_jurisdiction(policy, jurisdiction) if policy is not None else None
    observations = crawl(url, options, progress)
    findings = compare(observations, policy, jurisdiction) if policy is not None else []
    label = f"{policy.service} {policy.version}" if policy is not None else None
    under = f"{judged.id} ({judged.consent_model})" if judged is not None else None
    return ScanReport(observations, findings, label, under)
