"""`troth scan` as a CI job runs it: exit codes, the three report formats, bad input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SITE_POLICY, Site

TROTH = str(Path(sys.executable).with_name("troth"))


def troth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TROTH, *args], capture_output=True, text=True, timeout=120)


def scan_args(site: Site, *more: str) -> list[str]:
    return ["scan", site.url, "--policy", str(site.policy_path), "--accept-selector", "#accept",
            *site.map_host_args(), *more]  # fmt: skip


def test_json_report_and_exit_one_on_violations(site: Site) -> None:
    result = troth(*scan_args(site, "--pages", "1", "--format", "json"))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["pages"] == {"before": [site.url], "after": [site.url]}
    assert report["violations"] == 7
    kinds = {(f["kind"], f["subject"]) for f in report["findings"]}
    assert ("expiry_too_long", "prefs_theme") in kinds
    # on a single page the 'lang' cookie of the about page is not seen: declared, not seen
    assert ("declared_not_seen", "lang") in kinds
    assert "Open Cookie Database" in report["attribution"]
    assert "scanning" in result.stderr  # the progress bar goes to stderr, never into the report


def test_html_report_is_self_contained_with_screenshots(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "scan.html"
    result = troth(*scan_args(site, "--pages", "1", "--format", "html", "-o", str(out)))
    assert result.returncode == 1, result.stderr
    html = out.read_text(encoding="utf-8")
    shots = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert [alt.rsplit(" — ", 1)[1] for alt, _ in shots] == ["before consent", "after consent"]
    assert all(len(data) > 1000 for _, data in shots)
    assert "<script" not in html
    assert 'src="http' not in html
    assert 'href="http' not in html
    assert "undeclared_host" in html
    assert "cdn.unknown.test" in html
    assert "7 violation(s)" in result.stderr


def test_text_report_with_suggestions(site: Site) -> None:
    result = troth(*scan_args(site, "--pages", "1"))
    assert result.returncode == 1
    assert "violation undeclared_cookie        cookie _fbp (shop.test)" in result.stdout
    assert (
        "    tracking:\n      - id: fbp\n        type: cookie\n        name: _fbp\n"
        in result.stdout
    )


def test_without_violations_exit_zero(site: Site) -> None:
    """The contact page alone does nothing wrong; it has no banner, which --no-accept says."""
    args = ["scan", site.url + "contact.html", "--pages", "1", "--timeout", "2",
            "--policy", str(site.policy_path), *site.map_host_args()]  # fmt: skip
    result = troth(*args, "--no-accept", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["violations"], report["accepted"]) == (0, False)
    assert report["pages"] == {"before": [site.url + "contact.html"], "after": []}


def test_an_accept_control_never_found_exits_two(site: Site) -> None:
    """Without consent given, the 'after' half of the scan proved nothing: not a pass."""
    result = troth("scan", site.url + "contact.html", "--pages", "1", "--timeout", "2",
                   "--policy", str(site.policy_path), "--accept-selector", "#accept",
                   *site.map_host_args())  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "0 violation(s)" in result.stdout  # the report is still written
    assert "no accept control '#accept'" in result.stdout
    assert "the accept control '#accept' was not found or did not answer" in result.stderr
    assert "--no-accept" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "ftp://shop.test/"], "URL: 'ftp://shop.test/' is not an http:// or https://"),
        (
            ["scan", "http://shop.test/", "--map-host", "shop.test"],
            "--map-host: 'shop.test' is not",
        ),
        (["scan", "http://shop.test/", "--pages", "0"], "--pages: must be between 1 and 1000"),
        (["scan", "http://[::1"], "URL: 'http://[::1' is not a valid address (Invalid IPv6 URL)"),
        (
            ["scan", "http://127.0.0.1:99999/"],
            "URL: 'http://127.0.0.1:99999/' is not a valid address (Port out of range",
        ),
        (
            ["scan", "http://shop.test/", "--policy", "missing.yaml"],
            "missing.yaml:1:1: no such file",
        ),
        (
            ["scan", "http://shop.test/", "--exclude", "(unclosed"],
            "--exclude: '(unclosed' is not a regular expression: missing ), unterminated",
        ),
        (
            ["scan", "http://shop.test/", "--policy", str(SITE_POLICY), "--jurisdiction", "mars"],
            "--jurisdiction: 'mars' is not a jurisdiction of the policy; it has eu",
        ),
        (
            ["scan", "http://shop.test/", "--jurisdiction", "eu"],
            "--jurisdiction: names a jurisdiction of the policy; give --policy too",
        ),
    ],
)
def test_bad_input_exits_two_without_traceback(args: list[str], message: str) -> None:
    result = troth(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_selector_and_unreachable_site_exit_two(site: Site) -> None:
    bad = troth(*scan_args(site, "--pages", "1", "--accept-selector", "[[["))
    assert bad.returncode == 2
    assert "--accept-selector: '[[[' is not a valid CSS selector" in bad.stderr
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = troth("scan", f"http://gone.test:{port}/", "--map-host", "*.test=127.0.0.1")
    assert gone.returncode == 2
    assert f"http://gone.test:{port}/: cannot load: net::ERR_CONNECTION_REFUSED" in gone.stderr
    assert "Traceback" not in bad.stderr + gone.stderr


def test_a_hanging_page_does_not_hang_the_scan(site: Site) -> None:
    never = troth("scan", site.url + "hang.html", "--timeout", "1", *site.map_host_args())
    assert never.returncode == 2
    assert f"{site.url}hang.html: cannot load: Page.goto: Timeout 1000ms exceeded" in never.stderr
    later = troth("scan", site.url + "hang-later.html", "--timeout", "1", "--format", "json",
                  "--no-accept", *site.map_host_args())  # fmt: skip
    assert later.returncode == 0, later.stderr
    problems = json.loads(later.stdout)["problems"]
    assert f"{site.url}hang-later.html: the page does not answer; storage not read" in problems


def test_without_a_policy_an_inventory(site: Site) -> None:
    result = troth("scan", site.url, "--pages", "1", "--accept-selector", "#accept",
                   "--format", "json", *site.map_host_args())  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["policy"] is None
    assert report["findings"] == []
    before = {c["name"] for c in report["cookies"] if c["phase"] == "before"}
    assert before == {"sid", "visitor_fp", "_fbp"}
    hosts = {(r["phase"], r["host"]) for r in report["requests"]}
    assert ("before", "cdn.unknown.test") in hosts
    assert ("after", "px.tracker.test") in hosts


def test_credentials_in_the_url_never_reach_a_report(site: Site, tmp_path: Path) -> None:
    url = site.url.replace("http://", "http://ada:s3cret@") + "contact.html"
    result = troth("scan", url, "--pages", "2", "--timeout", "2", "--format", "json",
                   *site.map_host_args())  # fmt: skip
    assert result.returncode == 2, result.stderr  # no banner there: said with the address
    assert "s3cret" not in result.stdout + result.stderr
    assert "ada" not in result.stdout
    assert "user name and password are used to load the pages" in result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == site.url + "contact.html"
    assert report["pages"]["before"][0] == site.url + "contact.html"
    assert f"{site.url}contact.html: no accept control" in " ".join(report["problems"])
    html = tmp_path / "scan.html"
    troth("scan", url, "--pages", "1", "--timeout", "2", "--format", "html", "-o", str(html),
          *site.map_host_args())  # fmt: skip
    assert "s3cret" not in html.read_text(encoding="utf-8")
    with socket.socket() as s:  # a port nobody listens on: the error names the address
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = troth("scan", f"http://ada:s3cret@gone.test:{port}/", *site.map_host_args())
    assert gone.returncode == 2
    assert f"http://gone.test:{port}/: cannot load" in gone.stderr
    assert "s3cret" not in gone.stderr + gone.stdout


def test_reports_show_pages_without_their_query_strings(site: Site) -> None:
    """A query string may carry a token or a visitor's address: reports leave it out."""
    result = troth("scan", site.url + "contact.html?visitor=v123&t=1#form", "--pages", "2",
                   "--timeout", "2", "--no-accept", "--format", "json",
                   *site.map_host_args())  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == site.url + "contact.html"
    assert report["pages"]["before"] == [site.url + "contact.html", site.url + "about.html"]
    assert "v123" not in result.stdout
