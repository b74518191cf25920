"""The consent banner in a real browser, served per the banner contract by a tiny test server.

Needs Debian's Chromium at /usr/bin/chromium and axe-core from npm (node_modules/axe-core);
`make test` installs both, and their absence fails the tests rather than skipping them.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BANNER = ROOT / "src" / "troth" / "consent" / "banner"
HARNESS = ROOT / "tests" / "banner_harness"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--host-resolver-rules=MAP *.example.net 127.0.0.1",
]
GPC = "Object.defineProperty(navigator,'globalPrivacyControl',{get:()=>true})"
SIGNALS = (
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
)
BUDGET = 6144


def make_config() -> dict[str, Any]:
    def cat(cid: str, name: str, required: bool, cookies: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": cid,
            "name": name,
            "description": f"What {name.lower()} cookies do.",
            "required": required,
            "revision": 1,
            "cookies": cookies,
            "vendors": ["Our service"],
        }

    def cookie(name: str, domain: str | None = None) -> dict[str, Any]:
        return {"name": name, "glob": "*" in name, "domain": domain, "path": "/"}

    return {
        "api": "/api/consent",
        "policyVersion": "1.1.0",
        "lang": "en",
        "cookie": {"name": "troth_consent", "days": 365, "path": "/", "domain": None},
        "jurisdiction": {"id": "eu", "model": "opt_in", "gpc": False, "gpcRefuses": []},
        "categories": [
            cat("necessary", "Strictly necessary", True, [cookie("session")]),
            cat("analytics", "Analytics", False, [cookie("_ga", ".example.net"), cookie("_ga_*")]),
            cat("advertising", "Advertising", False, [cookie("ads_id")]),
        ],
        "consentMode": {
            "ad_storage": ["advertising"],
            "ad_user_data": ["advertising"],
            "ad_personalization": ["advertising"],
            "analytics_storage": ["analytics"],
            "functionality_storage": ["preferences"],
            "personalization_storage": ["preferences"],
            "security_storage": ["necessary"],
        },
        "texts": {
            "title": "Your privacy choices",
            "body": "We use cookies. Necessary ones are always on; others only if you agree.",
            "acceptAll": "Accept all",
            "rejectAll": "Reject all",
            "customise": "Customise",
            "save": "Save choices",
            "alwaysOn": "Always on",
            "gpcNote": (
                "Your browser's Global Privacy Control signal is honoured: this stays off."
            ),
            "policy": "Privacy policy",
            "preferences": "Privacy settings",
            "saved": "Your choices have been saved.",
            "error": "Your choice could not be saved; please try again.",
        },
        "links": {"policy": "/privacy", "preferences": "/privacy/preferences"},
        "events": {
            "url": "/t/e",
            "techs": {
                "analytics_sdk": "analytics",
                "ad_pixel": "advertising",
                "session_beacon": "necessary",
            },
        },
    }


def banner_script(config: dict[str, Any]) -> bytes:
    js = (BANNER / "banner.js").read_text(encoding="utf-8")
    css = (BANNER / "banner.css").read_text(encoding="utf-8")
    head = f"window.trothConfig={json.dumps(config)};window.trothCss={json.dumps(css)};\n"
    return (head + js).encode()


class Harness(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.reset()

    def reset(self) -> None:
        self.config = make_config()
        self.posts: list[dict[str, Any]] = []
        self.tracked: list[dict[str, Any]] = []
        self.tracked_types: list[str] = []
        self.hits: list[str] = []
        self.fail = False


STATIC = {
    "/harness/analytics.js": (
        "text/javascript",
        b'(window.ran = window.ran || []).push("analytics-src");',
    ),
    "/harness/frame.html": ("text/html", b"<!doctype html><title>ad</title><p>ad</p>"),
    "/harness/pixel.svg": (
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>',
    ),
}


class Handler(BaseHTTPRequestHandler):
    server: Harness

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.hits.append(path)
        if path == "/troth/banner.js":
            self.send(200, "text/javascript; charset=utf-8", banner_script(self.server.config))
        elif path in ("/", "/preferences.html"):
            page = "index.html" if path == "/" else "preferences.html"
            self.send(200, "text/html; charset=utf-8", (HARNESS / page).read_bytes())
        elif path in STATIC:
            ctype, body = STATIC[path]
            self.send(200, ctype, body)
        else:
            self.send(404, "text/plain", b"not found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/t/e":
            self.server.tracked_types.append(self.headers.get("Content-Type", ""))
            self.server.tracked.append(json.loads(body))
            self.send(202, "application/json", b"{}")
            return
        if self.path != "/api/consent":
            self.send(404, "text/plain", b"not found")
            return
        self.server.posts.append(json.loads(body))
        if self.server.fail:
            self.send(500, "application/json", b'{"detail":"down"}')
        else:
            self.send(201, "application/json", b'{"receipt":{"receipt_id":"x"}}')


@pytest.fixture(scope="module")
def server() -> Iterator[Harness]:
    srv = Harness()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed at /usr/bin/chromium: run `make test`")
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


Opener = Callable[..., Any]


@pytest.fixture
def open_page(browser: Any, server: Harness) -> Iterator[Opener]:
    """Open a harness page in a fresh context (no cookies); fail on any page error."""
    server.reset()
    contexts: list[Any] = []
    errors: list[str] = []

    def make(path: str = "/", *, gpc: bool = False, dark: bool = False) -> Any:
        ctx = browser.new_context(color_scheme="dark" if dark else "light")
        contexts.append(ctx)
        if gpc:
            ctx.add_init_script(GPC)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + path)
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    assert errors == []


def cookies(page: Any) -> dict[str, str]:
    return {c["name"]: c["value"] for c in page.context.cookies()}


def ran(page: Any) -> list[str]:
    return page.evaluate("window.ran || []")


def choose(page: Any, selector: str) -> None:
    """Click a control that makes a choice, waiting for the consent POST to be answered."""
    with page.expect_response("**/api/consent"):
        page.click(selector)


def button(label: str) -> str:
    return f"#troth-banner button:text-is('{label}')"


def test_bundle_size_within_budget() -> None:
    js = (BANNER / "banner.js").read_bytes()
    css = (BANNER / "banner.css").read_bytes()
    size = len(gzip.compress(js + css, 9))
    print(f"banner.js + banner.css: {len(js) + len(css)} bytes, {size} bytes gzip -9")
    assert size <= BUDGET


def test_before_consent_nothing_runs(open_page: Opener, server: Harness) -> None:
    page = open_page()
    assert ran(page) == []
    assert cookies(page) == {}
    assert not {"/harness/analytics.js", "/harness/frame.html", "/harness/pixel.svg"} & set(
        server.hits
    )
    first = page.evaluate("Array.from(dataLayer[0])")
    assert first[:2] == ["consent", "default"]
    expected: dict[str, Any] = dict.fromkeys(SIGNALS, "denied")
    expected["security_storage"] = "granted"
    expected["wait_for_update"] = 500
    assert first[2] == expected
    assert page.evaluate("dataLayer.length") == 1
    banner = page.locator("#troth-banner")
    assert banner.get_attribute("role") == "dialog"
    assert banner.get_attribute("aria-modal") == "true"
    assert page.locator("#troth-title").inner_text() == "Your privacy choices"
    assert page.locator("#troth-body a").get_attribute("href") == "/privacy"
    assert banner.locator("button").all_inner_texts() == ["Reject all", "Accept all", "Customise"]
    assert banner.evaluate("e => getComputedStyle(e).position") == "fixed"
    assert page.evaluate("troth.consent('analytics')") is None
    assert page.evaluate("troth.consent('necessary')") is True
    assert len(page.evaluate("troth.visitor()")) == 22
    assert server.posts == []


def test_equal_prominence_and_sizes(open_page: Opener) -> None:
    page = open_page()
    style = (
        "e => { const s = getComputedStyle(e), r = e.getBoundingClientRect();"
        " return [s.backgroundColor, s.color, s.fontSize, s.fontWeight, s.borderColor,"
        " Math.round(r.width), Math.round(r.height)]; }"
    )
    reject = page.locator(button("Reject all")).evaluate(style)
    accept = page.locator(button("Accept all")).evaluate(style)
    assert reject == accept
    page.click(button("Customise"))
    sizes = page.evaluate(
        "[...document.querySelectorAll('#troth-banner *')].filter(e => e.textContent.trim())"
        ".map(e => parseFloat(getComputedStyle(e).fontSize))"
    )
    assert min(sizes) >= 14
    heights = page.locator("#troth-banner button").evaluate_all(
        "bs => bs.map(b => b.getBoundingClientRect().height)"
    )
    assert min(heights) >= 44


def test_accept_all_runs_scripts_without_reload(open_page: Opener, server: Harness) -> None:
    page = open_page()
    page.evaluate("window.marker = 1")
    vid = page.evaluate("troth.visitor()")
    choose(page, button("Accept all"))
    assert page.evaluate("window.marker") == 1
    page.wait_for_function("(window.ran || []).length === 3")
    assert sorted(ran(page)) == ["advertising", "analytics-inline", "analytics-src"]
    jar = cookies(page)
    assert {"_ga", "_ga_ABC", "ads_id"} <= set(jar)
    assert jar["troth_consent"] == f"v1.{vid}.1.1.0.analytics:1:1~advertising:1:1"
    assert page.locator("#troth-banner").count() == 0
    assert page.locator("iframe").get_attribute("src") == "/harness/frame.html"
    assert page.locator("script[data-troth=ran]").count() == 3
    assert server.posts == [
        {
            "subject": vid,
            "choices": {"analytics": "given", "advertising": "given"},
            "method": "banner_accept_all",
            "language": "en",
            "policy_version": "1.1.0",
            "jurisdiction": "eu",
            "gpc": False,
        }
    ]
    page.wait_for_function("troth.lastReceipt !== null")
    assert page.evaluate("troth.lastReceipt") == {"receipt_id": "x"}
    update = page.evaluate("Array.from(dataLayer[dataLayer.length - 1])")
    assert update[:2] == ["consent", "update"]
    assert update[2]["analytics_storage"] == "granted"
    assert update[2]["ad_storage"] == "granted"
    assert update[2]["functionality_storage"] == "denied"
    assert page.evaluate("events") == [
        {"consents": {"necessary": True, "analytics": True, "advertising": True}}
    ]
    page.reload()
    assert page.locator("#troth-banner").count() == 0
    page.wait_for_function("(window.ran || []).length === 3")
    assert page.evaluate("Array.from(dataLayer[1])")[2]["analytics_storage"] == "granted"
    assert page.evaluate("troth.visitor()") == vid


def test_reject_all_keeps_content_blocked(open_page: Opener, server: Harness) -> None:
    page = open_page()
    choose(page, button("Reject all"))
    assert ran(page) == []
    assert set(cookies(page)) == {"troth_consent"}
    assert cookies(page)["troth_consent"].endswith(".analytics:0:1~advertising:0:1")
    assert server.posts[0]["method"] == "banner_reject_all"
    assert server.posts[0]["choices"] == {"analytics": "refused", "advertising": "refused"}
    assert page.evaluate("troth.consent('analytics')") is False
    page.reload()
    assert page.locator("#troth-banner").count() == 0
    assert ran(page) == []
    assert page.locator("iframe").get_attribute("src") is None
    assert "/harness/analytics.js" not in server.hits


def test_withdrawing_analytics_deletes_its_cookies(open_page: Opener, server: Harness) -> None:
    page = open_page()
    choose(page, button("Accept all"))
    page.wait_for_function("(window.ran || []).length === 3")
    assert {"_ga", "_ga_ABC", "ads_id"} <= set(cookies(page))
    opener = page.locator("[data-troth=open]")
    opener.click()
    switch = page.locator("#troth-banner input[data-c=analytics]")
    assert switch.get_attribute("role") == "switch"
    assert switch.is_checked()
    assert page.locator("#troth-banner input[data-c=necessary]").is_disabled()
    switch.uncheck()
    choose(page, button("Save choices"))
    jar = cookies(page)
    assert "_ga" not in jar
    assert "_ga_ABC" not in jar
    assert "ads_id" in jar
    assert server.posts[-1]["method"] == "banner_custom"
    assert server.posts[-1]["choices"] == {"analytics": "refused", "advertising": "given"}
    assert page.evaluate("troth.consent('analytics')") is False
    assert page.evaluate("document.activeElement.dataset.troth") == "open"


def test_withdrawal_deletes_domain_cookies(open_page: Opener, server: Harness) -> None:
    page = open_page()
    page.goto(server.url.replace("127.0.0.1", "www.example.net") + "/")
    choose(page, button("Accept all"))
    page.wait_for_function("(window.ran || []).length === 3")
    page.evaluate(
        "document.cookie = '_ga=1; domain=.example.net; path=/';"
        "document.cookie = '_ga_XYZ=1; domain=www.example.net; path=/';"
    )
    domains = {(c["name"], c["domain"]) for c in page.context.cookies()}
    assert {("_ga", ".example.net"), ("_ga_XYZ", ".www.example.net")} <= domains
    assert ("_ga", "www.example.net") in domains
    with page.expect_response("**/api/consent"):
        page.evaluate("troth.set({analytics: false})")
    assert sorted(cookies(page)) == ["ads_id", "troth_consent"]


def test_gpc_keeps_advertising_refused(open_page: Opener, server: Harness) -> None:
    server.config["jurisdiction"].update(gpc=True, gpcRefuses=["advertising"])
    page = open_page(gpc=True)
    page.click(button("Customise"))
    ads = page.locator("#troth-banner input[data-c=advertising]")
    assert ads.is_disabled()
    assert not ads.is_checked()
    assert "Global Privacy Control" in page.locator("#troth-b-advertising-d").inner_text()
    choose(page, button("Accept all"))
    page.wait_for_function("(window.ran || []).length === 2")
    assert sorted(ran(page)) == ["analytics-inline", "analytics-src"]
    assert "ads_id" not in cookies(page)
    assert server.posts[0]["choices"] == {"analytics": "given", "advertising": "refused"}
    assert server.posts[0]["gpc"] is True
    assert page.evaluate("troth.consent('advertising')") is False
    page.evaluate("troth.set({advertising: true}, 'preference_centre')")
    assert page.evaluate("troth.consent('advertising')") is False


def test_revision_bump_reasks_only_that_category(open_page: Opener, server: Harness) -> None:
    page = open_page()
    choose(page, button("Accept all"))
    server.config["categories"][1]["revision"] = 2
    page.reload()
    assert page.locator("#troth-banner").is_visible()
    assert page.evaluate("troth.consent('analytics')") is None
    assert page.evaluate("troth.consent('advertising')") is True
    assert ran(page) == ["advertising"]
    page.click(button("Customise"))
    assert not page.locator("#troth-banner input[data-c=analytics]").is_checked()
    assert page.locator("#troth-banner input[data-c=advertising]").is_checked()
    choose(page, button("Save choices"))
    assert cookies(page)["troth_consent"].endswith(".analytics:0:2~advertising:1:1")


def test_keyboard_only_with_focus_trap(open_page: Opener, server: Harness) -> None:
    page = open_page()
    active = "document.activeElement"
    assert page.evaluate(f"{active}.textContent") == "Reject all"
    for key in ["Tab"] * 7 + ["Shift+Tab"] * 7:
        page.keyboard.press(key)
        assert page.evaluate(f"{active}.closest('#troth-banner') !== null"), key
    page.keyboard.press("Escape")
    assert page.locator("#troth-banner").count() == 1
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate(f"{active}.textContent") == "Customise"
    page.keyboard.press("Enter")
    assert page.evaluate(f"{active}.dataset.c") == "analytics"
    page.keyboard.press("Space")
    assert page.evaluate(f"{active}.checked") is True
    page.keyboard.press("Escape")
    assert page.locator("#troth-banner input").count() == 0
    assert page.evaluate(f"{active}.textContent") == "Customise"
    assert server.posts == []
    assert ran(page) == []
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    assert page.evaluate(f"{active}.textContent") == "Accept all"
    with page.expect_response("**/api/consent"):
        page.keyboard.press("Enter")
    assert page.locator("#troth-banner").count() == 0
    assert page.evaluate(f"{active} === document.body")
    assert server.posts[0]["method"] == "banner_accept_all"
    page.wait_for_function("(window.ran || []).length === 3")


def test_opt_out_defaults_to_granted_until_refused(open_page: Opener, server: Harness) -> None:
    server.config["jurisdiction"].update(id="us-ca", model="opt_out")
    page = open_page()
    page.wait_for_function("(window.ran || []).length === 3")
    assert page.locator("#troth-banner.troth-soft").is_visible()
    assert page.evaluate("Array.from(dataLayer[1])")[2]["analytics_storage"] == "granted"
    assert page.evaluate("troth.consent('analytics')") is True
    assert {"_ga", "_ga_ABC", "ads_id"} <= set(cookies(page))
    choose(page, button("Reject all"))
    assert set(cookies(page)) == {"troth_consent"}
    assert server.posts[0]["jurisdiction"] == "us-ca"


def test_failed_post_keeps_local_decision(open_page: Opener, server: Harness) -> None:
    server.fail = True
    page = open_page()
    choose(page, button("Accept all"))
    status = page.locator("#troth-status")
    status.filter(has_text="could not be saved").wait_for()
    assert status.get_attribute("aria-live") == "polite"
    assert "troth_consent" in cookies(page)
    assert page.evaluate("troth.lastReceipt") is None
    page.reload()
    assert page.locator("#troth-banner").count() == 0


def test_preference_centre_panel(open_page: Opener, server: Harness) -> None:
    page = open_page("/preferences.html")
    assert page.locator("#troth-banner").count() == 0
    panel = page.locator("#troth-preferences")
    assert panel.locator("input[data-c=necessary]").is_disabled()
    assert "Always on" in panel.inner_text()
    analytics = panel.locator("input[data-c=analytics]")
    assert not analytics.is_checked()
    analytics.check()
    with page.expect_response("**/api/consent"):
        panel.locator("button").click()
    panel.locator("[role=status]").filter(has_text="Your choices have been saved.").wait_for()
    assert server.posts[0]["method"] == "preference_centre"
    assert server.posts[0]["choices"] == {"analytics": "given", "advertising": "refused"}
    assert ran(page) == ["analytics-inline"]
    page.reload()
    assert page.locator("#troth-preferences input[data-c=analytics]").is_checked()


def test_api_on_and_set(open_page: Opener, server: Harness) -> None:
    page = open_page()
    page.evaluate("window.calls = 0; troth.on('analytics', () => calls++)")
    assert page.evaluate("calls") == 0
    page.evaluate("troth.on('necessary', () => calls += 10)")
    assert page.evaluate("calls") == 10
    with page.expect_response("**/api/consent"):
        page.evaluate("troth.set({analytics: true}, 'preference_centre')")
    with page.expect_response("**/api/consent"):  # both answered: no race on server.posts
        page.evaluate("troth.set({analytics: 'given', advertising: 'refused'})")
    assert page.evaluate("calls") == 11
    assert page.locator("#troth-banner").count() == 0
    page.wait_for_function("troth.lastReceipt !== null")
    assert [p["method"] for p in server.posts] == ["preference_centre", "banner_custom"]
    page.evaluate("troth.show()")
    assert page.locator("#troth-banner input[data-c=analytics]").is_checked()
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    assert page.locator("#troth-banner").count() == 0


def axe_source() -> str | None:
    for candidate in (
        os.environ.get("AXE_CORE_JS", ""),
        str(ROOT / "node_modules" / "axe-core" / "axe.min.js"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8")
    return None


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_axe_finds_no_violations(open_page: Opener, dark: bool) -> None:
    source = axe_source()
    if source is None:
        pytest.fail("axe-core not found in node_modules: run `make test`")
    check = "axe.run(document).then(r => r.violations.map(v => v.id + ': ' + v.help))"
    page = open_page(dark=dark)
    page.add_script_tag(content=source)
    assert page.evaluate(check) == []
    page.click(button("Customise"))
    assert page.evaluate(check) == []
    prefs = open_page("/preferences.html", dark=dark)
    prefs.add_script_tag(content=source)
    assert prefs.evaluate(check) == []


# --- troth.track: events queued until consent, dropped when refused ---------------------------

NO_TIMER = "window.setTimeout = () => 0"  # batches then leave only when full or on page hide


def track(page: Any, tech: str, name: str, props: dict[str, Any] | None = None) -> None:
    page.evaluate("([t, n, p]) => troth.track(t, n, p)", [tech, name, props or {}])


def tracked(page: Any, server: Harness, count: int) -> list[dict[str, Any]]:
    """Wait (at most 5 s) until `count` event batches have reached /t/e; return them all."""
    for _ in range(200):
        if len(server.tracked) >= count:
            break
        page.wait_for_timeout(25)
    assert len(server.tracked) >= count, server.tracked
    return server.tracked


def names(batches: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for b in batches for e in b["events"]]


def test_track_queues_until_accept_all(open_page: Opener, server: Harness) -> None:
    page = open_page()
    vid = page.evaluate("troth.visitor()")
    track(page, "analytics_sdk", "x", {"plan": "pro", "n": 2})
    track(page, "ad_pixel", "y")
    # a required category is allowed at once; its batch (1 s) carries only itself, no visitor
    track(page, "session_beacon", "ping")
    assert tracked(page, server, 1) == [
        {
            "events": [
                {"tech": "session_beacon", "name": "ping", "campaign": "", "page": "/", "props": {}}
            ],
            "jurisdiction": "eu",
        }
    ]
    assert server.tracked_types == ["application/json"]
    choose(page, button("Accept all"))
    batches = tracked(page, server, 2)
    assert batches[1] == {
        "events": [
            {
                "tech": "analytics_sdk",
                "name": "x",
                "campaign": "",
                "page": "/",
                "props": {"plan": "pro", "n": 2},
            },
            {"tech": "ad_pixel", "name": "y", "campaign": "", "page": "/", "props": {}},
        ],
        "visitor": vid,
        "jurisdiction": "eu",
    }
    # allowed now: sent; the queue is empty, so x and y are never sent again
    track(page, "analytics_sdk", "after")
    assert names(tracked(page, server, 3)) == ["ping", "x", "y", "after"]
    assert len(server.tracked) == 3


def test_reject_all_drops_queued_and_later_events(open_page: Opener, server: Harness) -> None:
    page = open_page()
    track(page, "analytics_sdk", "x")
    track(page, "ad_pixel", "y")
    choose(page, button("Reject all"))
    track(page, "analytics_sdk", "z")
    track(page, "session_beacon", "ping")
    batches = tracked(page, server, 1)
    assert names(batches) == ["ping"]
    assert batches[0]["visitor"] == page.evaluate("troth.visitor()")
    page.reload()
    page.evaluate(
        "troth.track('analytics_sdk', 'z', {}); troth.track('session_beacon', 'pong', {})"
    )
    assert names(tracked(page, server, 2)) == ["ping", "pong"]
    assert len(server.tracked) == 2


def test_track_batches_and_flushes_on_page_hide(open_page: Opener, server: Harness) -> None:
    page = open_page()
    choose(page, button("Accept all"))
    page.evaluate(NO_TIMER)
    requests: list[str] = []
    page.on("request", lambda r: requests.extend([r.resource_type] if "/t/e" in r.url else []))
    for i in range(9):
        track(page, "analytics_sdk", f"e{i}")
    track(page, "session_beacon", "e9")  # the tenth: the batch leaves at once
    assert [len(b["events"]) for b in tracked(page, server, 1)] == [10]
    track(page, "analytics_sdk", "hidden")
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    assert names(tracked(page, server, 2)[1:]) == ["hidden"]
    page.evaluate("delete document.visibilityState")
    # a withdrawal drops what is still pending in the batch
    track(page, "ad_pixel", "withdrawn")
    with page.expect_response("**/api/consent"):
        page.evaluate("troth.set({advertising: false})")
    track(page, "analytics_sdk", "left")
    page.goto(server.url + "/preferences.html")  # pagehide
    assert names(tracked(page, server, 3)[2:]) == ["left"]
    assert server.tracked[2]["visitor"] == server.posts[0]["subject"]
    assert server.tracked_types == ["application/json"] * 3
    assert requests[:2] == ["fetch", "ping"]  # a full batch by fetch, on hide by sendBeacon
    assert len(server.tracked) == 3


def test_track_queue_keeps_the_latest_fifty(open_page: Opener, server: Harness) -> None:
    page = open_page()
    page.evaluate("for (let i = 0; i < 60; i++) troth.track('analytics_sdk', 'e' + i, {i})")
    page.evaluate(NO_TIMER)
    choose(page, button("Accept all"))
    batches = tracked(page, server, 5)
    assert [len(b["events"]) for b in batches] == [10] * 5
    # five fetches in flight at once may arrive in any order
    batches.sort(key=lambda b: b["events"][0]["props"]["i"])
    assert names(batches) == [f"e{i}" for i in range(10, 60)]


def test_track_gpc_unknown_and_bad_names(open_page: Opener, server: Harness) -> None:
    server.config["jurisdiction"].update(gpc=True, gpcRefuses=["advertising"])
    page = open_page(gpc=True)
    warnings: list[str] = []
    page.on("console", lambda m: warnings.extend([m.text] if m.type == "warning" else []))
    track(page, "ad_pixel", "gpc")  # refused by GPC: dropped, not queued
    track(page, "analytics_sdk", "queued")
    track(page, "nope", "x")
    track(page, "nope", "y")
    track(page, "analytics_sdk", "Bad-Name")
    page.evaluate("troth.track('analytics_sdk', '" + "a" * 65 + "', {})")
    choose(page, button("Accept all"))
    track(page, "ad_pixel", "gpc2")
    assert names(tracked(page, server, 1)) == ["queued"]
    assert warnings == [
        "troth: unknown tracking technology nope",
        "troth: bad event name Bad-Name",
        "troth: bad event name " + "a" * 65,
    ]
    assert len(server.tracked) == 1


def test_track_opt_out_sends_until_refused(open_page: Opener, server: Harness) -> None:
    server.config["jurisdiction"].update(id="us-ca", model="opt_out")
    page = open_page()
    track(page, "ad_pixel", "undecided")
    batches = tracked(page, server, 1)
    assert names(batches) == ["undecided"]
    assert "visitor" not in batches[0]
    assert batches[0]["jurisdiction"] == "us-ca"
    choose(page, button("Reject all"))
    page.evaluate("troth.track('ad_pixel', 'refused', {}); troth.track('session_beacon', 's', {})")
    assert names(tracked(page, server, 2)) == ["undecided", "s"]
