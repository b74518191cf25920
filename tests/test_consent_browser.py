"""The consent flow end to end: a real `troth serve`, Playwright and Debian's Chromium.

What a visitor's browser does on the demo site and in the preference centre, checked against
what the server records: nothing runs before a choice, Consent Mode signals, tags activated
without reload, withdrawal deleting cookies, signed receipts, GPC, re-consent after a material
policy change, keyboard use and axe-core. Needs /usr/bin/chromium and node_modules/axe-core;
`make test` installs both, and their absence fails these tests rather than skipping them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, SEED, Server, running_server
from test_banner_harness import CHROMIUM, CHROMIUM_ARGS, GPC, SIGNALS
from troth.consent.receipts import verify_receipt
from troth.errors import ReceiptError

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DEMO_TAGS = ("/troth/demo-analytics.js", "/troth/demo-ads.js", "/troth/demo-preferences.js")
ANALYTICS_COOKIES = {"_ga", "_ga_DEMO123", "_gid"}
DIALOG = "#troth-banner"
# dataLayer entries are `arguments` objects (gtag) or plain objects (tags' events).
DATA_LAYER = (
    "dataLayer.map(e => Object.prototype.toString.call(e) == '[object Arguments]'"
    " ? Array.from(e) : e)"
)
ACTIVE_IN_DIALOG = "document.activeElement.closest('#troth-banner') !== null"
AXE_RUN = """() => axe.run(document).then(r => r.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + n.failureSummary)})))"""


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed at /usr/bin/chromium: run `make test`")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser")
    with running_server(SEED, f"sqlite:///{tmp}/troth.db", tmp) as srv:
        yield srv


@dataclass
class Visit:
    """One browser context and its page, with what the page asked for and what went wrong."""

    base: str
    context: Any
    page: Any
    requests: list[str] = field(default_factory=list)
    posts: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def on_request(self, request: Any) -> None:
        self.requests.append(request.url)
        if request.method == "POST" and request.url == self.base + "/api/consent":
            self.posts.append(json.loads(request.post_data or "null"))

    def on_response(self, response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.problems.append(f"{response.status} {response.url}")

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None
        assert response.status == 200, f"GET {path}: {response.status}"

    def paths(self) -> list[str]:
        return [u.removeprefix(self.base).split("?")[0] for u in self.requests]

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.context.cookies()}

    def demo(self) -> dict[str, Any] | None:
        return self.page.evaluate("window.__trothDemo === undefined ? null : __trothDemo")

    def choose(self, selector: str) -> dict[str, Any]:
        """Click a control that records a choice; the POST must be answered 201."""
        with self.page.expect_response(
            lambda r: r.url == self.base + "/api/consent" and r.request.method == "POST"
        ) as answer:
            self.page.click(selector)
        response = answer.value
        assert response.status == 201, f"POST /api/consent: {response.status} {response.text()}"
        body: dict[str, Any] = response.json()
        return body

    def visitor(self) -> str:
        vid: str = self.page.evaluate("troth.visitor()")
        assert len(vid) == 22
        return vid


Opener = Callable[..., Visit]


@pytest.fixture
def open_site(browser: Any, server: Server) -> Iterator[Opener]:
    """Open a page of a troth server in a fresh context; fail on page errors and 4xx/5xx."""
    visits: list[Visit] = []

    def make(
        path: str = "/",
        *,
        srv: Server | None = None,
        gpc: bool = False,
        dark: bool = False,
        storage_state: Any = None,
    ) -> Visit:
        base = (srv or server).url
        options: dict[str, Any] = {"color_scheme": "dark" if dark else "light"}
        if gpc:
            options["extra_http_headers"] = {"Sec-GPC": "1"}
        if storage_state is not None:
            options["storage_state"] = storage_state
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(10_000)
        if gpc:
            ctx.add_init_script(GPC)
        page = ctx.new_page()
        visit = Visit(base, ctx, page)
        visits.append(visit)
        page.on("request", visit.on_request)
        page.on("response", visit.on_response)
        page.on("pageerror", lambda e: visit.problems.append(f"page error: {e}"))
        visit.goto(path)
        return visit

    yield make
    for visit in visits:
        visit.context.close()
    assert [p for v in visits for p in v.problems] == []


def effective(
    srv: Server, vid: str, *, jurisdiction: str | None = None, gpc: bool = False
) -> dict[str, Any]:
    """The server's effective consent for ``vid``, as GET /api/consent/{vid} answers it."""
    params = {"jurisdiction": jurisdiction} if jurisdiction else {}
    headers = {"Sec-GPC": "1"} if gpc else {}
    r = httpx.get(f"{srv.url}/api/consent/{vid}", params=params, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    state: dict[str, Any] = r.json()
    return state


def statuses(state: dict[str, Any]) -> dict[str, str]:
    return {c: s["status"] for c, s in state["categories"].items()}


def button(label: str) -> str:
    return f"{DIALOG} button:text-is('{label}')"


def wait_for_tags(page: Any, *categories: str) -> None:
    page.wait_for_function(
        "cats => cats.every(c => window.__trothDemo && __trothDemo[c] === true)",
        arg=list(categories),
    )


# --- before a choice ----------------------------------------------------------------------


def test_nothing_runs_before_consent(open_site: Opener) -> None:
    visit = open_site("/")
    page = visit.page
    expect(page.get_by_role("dialog")).to_be_visible()
    assert page.locator(DIALOG).get_attribute("aria-modal") == "true"
    assert visit.context.cookies() == []
    assert page.evaluate("typeof window.__trothDemo") == "undefined"
    assert "/troth/banner.js" in visit.paths()
    assert not {*DEMO_TAGS, "/troth/pixel.gif"} & set(visit.paths())
    assert visit.posts == []
    assert page.locator("script[data-troth=ran]").count() == 0
    for cat in ("analytics", "advertising", "preferences"):
        assert page.evaluate(f"troth.consent('{cat}')") is None, cat


def test_consent_mode_default_precedes_update(open_site: Opener) -> None:
    visit = open_site("/")
    entries = visit.page.evaluate(DATA_LAYER)
    expected: dict[str, Any] = dict.fromkeys(SIGNALS, "denied")
    expected["security_storage"] = "granted"  # mapped to the required "necessary" category
    expected["wait_for_update"] = 500
    assert entries[0] == ["consent", "default", expected]
    assert [e for e in entries if isinstance(e, list) and e[:2] == ["consent", "update"]] == []
    visit.choose(button("Accept all"))
    wait_for_tags(visit.page, "analytics", "advertising", "preferences")
    entries = visit.page.evaluate(DATA_LAYER)
    commands = [e[:2] for e in entries if isinstance(e, list)]
    assert commands == [["consent", "default"], ["consent", "update"]]
    update = next(e for e in entries if isinstance(e, list) and e[1] == "update")[2]
    assert update == dict.fromkeys(SIGNALS, "granted")
    # the tags' own events come after the update, never before it
    events = [i for i, e in enumerate(entries) if isinstance(e, dict)]
    assert events
    assert min(events) > entries.index(["consent", "update", update])


# --- choosing -----------------------------------------------------------------------------


def test_accept_all_runs_tags_without_reload(open_site: Opener, server: Server) -> None:
    visit = open_site("/")
    page = visit.page
    page.evaluate("window.marker = 1")
    vid = visit.visitor()
    answer = visit.choose(button("Accept all"))
    wait_for_tags(page, "analytics", "advertising", "preferences")
    assert page.evaluate("window.marker") == 1
    assert visit.paths().count("/") == 1
    assert set(DEMO_TAGS) <= set(visit.paths())
    expect(page.locator(DIALOG)).to_have_count(0)
    jar = visit.cookies()
    assert {*ANALYTICS_COOKIES, "_gcl_au", "lang"} <= set(jar)
    choices = "preferences:1:1~analytics:1:1~advertising:1:1"
    assert jar["troth_consent"] == f"v1.{vid}.1.1.0.{choices}"
    assert visit.posts == [
        {
            "subject": vid,
            "choices": {"preferences": "given", "analytics": "given", "advertising": "given"},
            "method": "banner_accept_all",
            "language": "en",
            "policy_version": "1.1.0",
            "jurisdiction": "eu",
            "gpc": False,
        }
    ]
    page.wait_for_function("troth.lastReceipt !== null")
    assert page.evaluate("troth.lastReceipt.receipt_id") == answer["receipt"]["receipt_id"]
    state = effective(server, vid)
    assert state["jurisdiction"] == "eu"
    banner = ("necessary", "security", "preferences", "analytics", "advertising")
    assert {c: statuses(state)[c] for c in banner} == dict.fromkeys(banner, "given")
    assert all(state["categories"][c]["allowed"] for c in banner)


def test_withdrawal_in_preference_centre(open_site: Opener, server: Server) -> None:
    visit = open_site("/")
    page = visit.page
    vid = visit.visitor()
    visit.choose(button("Accept all"))
    wait_for_tags(page, "analytics", "advertising", "preferences")
    assert {*ANALYTICS_COOKIES, "_gcl_au"} <= set(visit.cookies())

    visit.goto("/privacy/preferences")
    expect(page.locator(DIALOG)).to_have_count(0)
    panel = page.locator("#troth-preferences")
    history = page.locator("#troth-history tbody tr")
    expect(history).to_have_count(1)
    analytics = panel.locator("input[data-c=analytics]")
    assert analytics.get_attribute("role") == "switch"
    assert analytics.is_checked()
    assert panel.locator("input[data-c=necessary]").is_disabled()
    analytics.uncheck()
    visit.choose("#troth-preferences button")
    expect(panel.locator("[role=status]")).to_have_text("Your choices have been saved.")

    jar = visit.cookies()
    assert not ANALYTICS_COOKIES & set(jar), sorted(jar)
    assert {"_gcl_au", "lang", "troth_consent"} <= set(jar)
    assert jar["troth_consent"].endswith(".preferences:1:1~analytics:0:1~advertising:1:1")
    assert page.evaluate("troth.consent('analytics')") is False
    assert visit.posts[-1]["method"] == "preference_centre"
    assert visit.posts[-1]["choices"] == {
        "preferences": "given",
        "analytics": "refused",
        "advertising": "given",
    }
    state = effective(server, vid)
    assert state["categories"]["analytics"]["status"] == "withdrawn"
    assert state["categories"]["analytics"]["allowed"] is False
    assert state["categories"]["advertising"]["status"] == "given"

    expect(history).to_have_count(2)  # preferences.js reloads the history after a choice
    methods = [history.nth(i).locator("td").nth(1).inner_text() for i in range(2)]
    # newest first, in words a visitor understands rather than troth's method ids
    assert methods == ["Chose in the privacy settings", "Accepted all in the banner"]
    pem = httpx.get(f"{server.url}/.well-known/troth-receipt-key.pem", timeout=10)
    assert pem.status_code == 200
    key = load_pem_public_key(pem.content)
    assert isinstance(key, Ed25519PublicKey)

    link = history.first.locator("a")
    href = link.get_attribute("href")
    assert href is not None
    assert href.startswith(f"/api/consent/{vid}/receipts/")
    assert link.get_attribute("download") is not None
    got = httpx.get(server.url + href, timeout=10)
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"].startswith("attachment")
    receipt = got.json()
    payload = verify_receipt(receipt, key)
    assert payload["method"] == "preference_centre"
    assert payload["choices"]["analytics"] == "withdrawn"
    assert payload["choices"]["advertising"] == "given"
    forged = copy.deepcopy(receipt)
    forged["choices"]["analytics"] = "given"
    with pytest.raises(ReceiptError):
        verify_receipt(forged, key)

    with page.expect_download() as download:
        link.click()
    saved = Path(download.value.path())
    assert json.loads(saved.read_text(encoding="utf-8")) == receipt


# --- Global Privacy Control and the opt-out model ----------------------------------------


def test_gpc_keeps_advertising_refused_in_california(open_site: Opener, server: Server) -> None:
    visit = open_site("/?region=us_ca", gpc=True)
    page = visit.page
    vid = visit.visitor()
    assert page.evaluate("navigator.globalPrivacyControl") is True
    assert page.evaluate("troth.consent('advertising')") is False
    expect(page.locator(f"{DIALOG}.troth-soft")).to_be_visible()
    visit.choose(button("Accept all"))
    # blocked tags run in document order (analytics, ads, preferences): ads would be done by now
    wait_for_tags(page, "analytics", "preferences")
    assert (visit.demo() or {}).get("advertising") is None
    assert "_gcl_au" not in visit.cookies()
    assert not {"/troth/demo-ads.js", "/troth/pixel.gif"} & set(visit.paths())
    assert visit.posts[0]["jurisdiction"] == "us_ca"
    assert visit.posts[0]["gpc"] is True
    assert visit.posts[0]["choices"]["advertising"] == "refused"
    with_gpc = effective(server, vid, jurisdiction="us_ca", gpc=True)
    assert with_gpc["jurisdiction"] == "us_ca"
    assert with_gpc["categories"]["advertising"]["status"] == "refused"
    assert with_gpc["categories"]["advertising"]["allowed"] is False
    assert with_gpc["categories"]["analytics"]["status"] == "given"
    # the refusal is recorded, not only derived from the header
    stored = effective(server, vid, jurisdiction="us_ca")
    assert stored["categories"]["advertising"]["status"] == "refused"


def test_opt_out_region_runs_tags_before_a_choice(open_site: Opener) -> None:
    visit = open_site("/?region=us_ca")
    page = visit.page
    wait_for_tags(page, "analytics", "advertising", "preferences")
    expect(page.locator(f"{DIALOG}.troth-soft")).to_be_visible()
    assert "_gcl_au" in visit.cookies()
    assert "troth_consent" not in visit.cookies()
    assert visit.posts == []


# --- a material policy change -------------------------------------------------------------


def add_social_cookie(data: dict[str, Any]) -> None:
    data["version"] = "1.2.0"
    data["tracking"].append(
        {
            "id": "social_cookie",
            "type": "cookie",
            "name": "_snp",
            "party": "third",
            "vendor": "google_ads",
            "category": "advertising",
            "expiry": "P90D",
            "purposes": ["advertising"],
            "description": {
                "en": "Set by Google Ads to measure advertisements shown on social networks.",
                "de": "Wird von Google Ads gesetzt, um Anzeigen in sozialen Netzwerken zu messen.",
            },
        }
    )


def test_material_change_reasks_only_that_category(
    open_site: Opener,
    db_url: str,
    tmp_path: Path,
    seed_variant: Callable[[Callable[[dict[str, Any]], None]], Path],
) -> None:
    work = tmp_path / "work"
    with running_server(SEED, db_url, work) as v1:
        first = open_site("/", srv=v1)
        vid = first.visitor()
        first.choose(button("Accept all"))
        wait_for_tags(first.page, "analytics", "advertising", "preferences")
        saved = first.context.storage_state()
        first.context.close()

    v2_policy = seed_variant(add_social_cookie)
    with running_server(v2_policy, db_url, work) as v2:
        visit = open_site("/", srv=v2, storage_state=saved)
        page = visit.page
        expect(page.get_by_role("dialog")).to_be_visible()
        assert visit.visitor() == vid
        wait_for_tags(page, "analytics", "preferences")  # still consented: they run on load
        assert (visit.demo() or {}).get("advertising") is None
        assert not {"/troth/demo-ads.js", "/troth/pixel.gif"} & set(visit.paths())
        consents = page.evaluate(
            "['analytics', 'preferences', 'advertising'].map(c => troth.consent(c))"
        )
        assert consents == [True, True, None]
        state = effective(v2, vid)
        assert state["policy_version"] == "1.2.0"
        assert statuses(state)["advertising"] == "expired"
        assert statuses(state)["analytics"] == "given"
        assert statuses(state)["preferences"] == "given"

        page.click(button("Customise"))
        switches = page.locator(f"{DIALOG} input[data-c]")
        checked = {
            switches.nth(i).get_attribute("data-c"): switches.nth(i).is_checked()
            for i in range(switches.count())
        }
        assert checked == {
            "necessary": True,
            "preferences": True,
            "analytics": True,
            "security": True,
            "advertising": False,
        }

        visit.choose(button("Accept all"))
        wait_for_tags(page, "advertising")
        assert "/troth/demo-ads.js" in visit.paths()
        assert visit.cookies()["troth_consent"] == (
            f"v1.{vid}.1.2.0.preferences:1:1~analytics:1:1~advertising:1:2"
        )
        state = effective(v2, vid)
        assert statuses(state)["advertising"] == "given"
        assert state["categories"]["advertising"]["policy_version"] == "1.2.0"


# --- keyboard and accessibility -----------------------------------------------------------


def test_keyboard_only(open_site: Opener) -> None:
    visit = open_site("/")
    page = visit.page
    active = "document.activeElement.textContent"
    assert page.evaluate(ACTIVE_IN_DIALOG)
    for i in range(20):
        page.keyboard.press("Tab")
        assert page.evaluate(ACTIVE_IN_DIALOG), f"focus left the dialog after Tab #{i + 1}"
    for i in range(5):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(ACTIVE_IN_DIALOG), f"focus left the dialog after Shift+Tab #{i + 1}"
    for _ in range(10):
        if page.evaluate(active) == "Accept all":
            break
        page.keyboard.press("Tab")
    assert page.evaluate(active) == "Accept all"
    with page.expect_response(lambda r: r.url.endswith("/api/consent")) as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 201
    wait_for_tags(page, "analytics", "advertising", "preferences")
    expect(page.locator(DIALOG)).to_have_count(0)
    assert visit.posts[0]["method"] == "banner_accept_all"


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail("axe-core not found at node_modules/axe-core/axe.min.js: run `make test`")
    return AXE.read_text(encoding="utf-8")


def axe_violations(page: Any, source: str, where: str) -> list[str]:
    page.add_script_tag(content=source)
    found = page.evaluate(AXE_RUN)
    return [
        f"{where}: {v['id']} ({v['impact']}: {v['help']}) at " + "; ".join(v["nodes"])
        for v in found
    ]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("lang", ["en", "de"])
def test_axe_finds_no_violations(open_site: Opener, axe_source: str, lang: str, dark: bool) -> None:
    violations: list[str] = []
    demo = open_site(f"/?lang={lang}", dark=dark)
    expect(demo.page.get_by_role("dialog")).to_be_visible()
    violations += axe_violations(demo.page, axe_source, "banner")
    demo.page.click(f"{DIALOG} [data-a=custom]")
    expect(demo.page.locator(f"{DIALOG} input[data-c]").first).to_be_visible()
    violations += axe_violations(demo.page, axe_source, "customise view")
    prefs = open_site(f"/privacy/preferences?lang={lang}", dark=dark)
    expect(prefs.page.locator("#troth-preferences input[data-c]").first).to_be_visible()
    expect(prefs.page.locator("#troth-history p")).to_have_count(1)  # "no choices yet"
    violations += axe_violations(prefs.page, axe_source, "preference centre")
    assert violations == [], "\n".join(violations)


def test_german_banner(open_site: Opener) -> None:
    visit = open_site("/?lang=de")
    page = visit.page
    dialog = page.locator(DIALOG)
    expect(dialog).to_be_visible()
    assert dialog.get_attribute("lang") == "de"
    assert page.locator("#troth-title").inner_text() == "Ihre Datenschutz-Entscheidungen"
    assert dialog.locator("button").all_inner_texts() == [
        "Alle ablehnen",
        "Alle akzeptieren",
        "Anpassen",
    ]
