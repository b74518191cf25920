"""Crawl a site in headless Chromium, twice: without any consent, and after accepting all.

Both passes run at the same time in two fresh browser contexts of one Chromium. Each visits
up to ``pages`` same-origin pages breadth first (a few at once) and records the cookie jar,
local and session storage keys, and every request to another site. The second pass first
clicks the banner's "accept all" control (troth's banner unless another selector is given)
and records nothing until it has.

The scan never hangs: every page load and wait has a timeout, the number of pages is bounded,
and only the start URL's origin is followed. Playwright is imported only when a crawl runs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urldefrag, urlencode, urlsplit, urlunsplit

from troth.scan.errors import ScanError
from troth.scan.observations import (
    Observations,
    ObservedCookie,
    ObservedRequest,
    ObservedStorage,
    Phase,
    Screenshot,
    is_first_party,
    page_address,
    redact_text,
    redact_url,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Request

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "TROTH_ACCEPT",
    "VARIANT_PARAMS",
    "Progress",
    "ScanOptions",
    "crawl",
    "parse_map_host",
    "validate_url",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TROTH_ACCEPT = '#troth-banner [data-a="accept"]'
MAX_PAGES = 1000
SETTLE_CAP = 5.0  # seconds a page may keep the network busy after "load" before we move on
_SKIP_SUFFIXES = (
    ".pdf", ".zip", ".gz", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp",
    ".mp4", ".mp3", ".ico", ".css", ".js", ".json", ".xml", ".csv", ".xlsx",
)  # fmt: skip
_HOST_PATTERN = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9*.-]*$")
_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")
# One round trip per page: its storage keys (none on an opaque origin) and its links.
_READ_PAGE = """() => {
  let local = [], session = [];
  try { local = Object.keys(localStorage); session = Object.keys(sessionStorage); } catch (e) {}
  const links = document.querySelectorAll("a[href]:not([download])");  // no downloads
  return [local, session, Array.from(links, a => a.href)];
}"""
COOKIES_EVERY = 5  # pages between two reads of the cookie jar (and once more at the end)
# Query parameters that choose a page's region or language: a link that differs from a page
# already found only in these is the same page for another audience, not followed unless
# asked (``variants``) -- one scan judges one jurisdiction.
VARIANT_PARAMS = frozenset(
    ("region", "jurisdiction", "country", "lang", "language", "locale", "hl")
)
_GPC_SCRIPT = (
    "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', "
    "{get: () => true, configurable: true});"
)

Progress = Callable[[Phase, str], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ScanOptions:
    """How to crawl. ``map_hosts`` pairs (``*.test``, ``127.0.0.1``) resolve host names to
    another address inside the scanning browser only (Chromium's host resolver rules)."""

    pages: int = 10
    accept_selector: str = TROTH_ACCEPT
    accept: bool = True  # False: a site without a consent banner, crawled once (no "after")
    map_hosts: tuple[tuple[str, str], ...] = ()
    page_timeout: float = 15.0  # seconds per page load
    settle: float = 0.15  # seconds without network activity that end a page's visit
    concurrency: int = 4  # pages loaded at once in each pass
    screenshots: bool = True
    chromium: Path = field(default=CHROMIUM)
    exclude: tuple[str, ...] = ()  # regular expressions: links they match are not followed
    variants: bool = False  # follow links to other regions or languages of a page too
    gpc: bool = False  # send a Global Privacy Control signal (Sec-GPC, navigator)

    def __post_init__(self) -> None:
        for pattern in self.exclude:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ScanError(
                    f"--exclude: {pattern!r} is not a regular expression: {exc}"
                ) from None
        if not 1 <= self.pages <= MAX_PAGES:
            raise ScanError(f"--pages: must be between 1 and {MAX_PAGES}, not {self.pages}")
        if not 0 < self.page_timeout <= 600:
            raise ScanError("--timeout: must be more than 0 and at most 600 seconds")
        if not self.accept_selector.strip():
            raise ScanError("--accept-selector: must not be empty")


def parse_map_host(rule: str) -> tuple[str, str]:
    """``"*.test=127.0.0.1"`` -> ``("*.test", "127.0.0.1")``; anything else is a ScanError."""
    pattern, sep, address = rule.partition("=")
    pattern, address = pattern.strip(), address.strip()
    if not sep or not _HOST_PATTERN.match(pattern) or not _ADDRESS.match(address):
        raise ScanError(
            f"--map-host: {rule!r} is not HOST=ADDRESS (for example '*.test=127.0.0.1')"
        )
    return pattern, address


def validate_url(url: str) -> tuple[str, str]:
    """The start URL without its fragment, and its host; a ScanError unless http(s)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError when out of range or not a number
    except ValueError as exc:
        raise ScanError(f"URL: {redact_url(url)!r} is not a valid address ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ScanError(f"URL: {redact_url(url)!r} is not an http:// or https:// address")
    return urldefrag(url).url, parts.hostname.lower()


def crawl(url: str, options: ScanOptions, progress: Progress | None = None) -> Observations:
    """Crawl ``url`` before and after consent and return what the browser saw."""
    start, host = validate_url(url)
    if not options.chromium.exists():
        raise ScanError(
            f"Chromium is not installed at {options.chromium} (Debian: apt-get install chromium)"
        )
    observations = Observations(start_url=redact_url(start), site_host=host, gpc=options.gpc)
    asyncio.run(_crawl(start, options, observations, progress))
    return observations


async def _crawl(
    start: str, options: ScanOptions, obs: Observations, progress: Progress | None
) -> None:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    args = list(CHROMIUM_ARGS)
    if options.map_hosts:
        rules = ", ".join(f"MAP {pattern} {address}" for pattern, address in options.map_hosts)
        args.append(f"--host-resolver-rules={rules}")
    async with async_playwright() as pw:
        try:
            browser = await pw.chromium.launch(
                executable_path=str(options.chromium), args=args, timeout=60_000
            )
        except PlaywrightError as exc:
            raise ScanError(f"cannot start Chromium: {_first_line(exc)}") from None
        try:
            passes = [
                _Pass(browser, phase, start, options, obs, progress)
                for phase in (("before", "after") if options.accept else ("before",))
            ]
            # Per-page timeouts bound each step; this bounds the whole crawl all the same.
            limit = options.pages * options.page_timeout * 2 + 120
            try:
                await asyncio.wait_for(asyncio.gather(*(p.run() for p in passes)), limit)
            except TimeoutError:
                raise ScanError(f"the scan did not finish within {limit:.0f} seconds") from None
        finally:
            await browser.close()


def _first_line(exc: BaseException) -> str:
    """The gist of a Playwright error: the network error code where there is one."""
    text = str(exc).strip()
    code = re.search(r"\bnet::ERR_[A-Z_]+", text)
    if code:
        return code.group(0)
    return (text.splitlines() or [type(exc).__name__])[0]


class _Activity:
    """Requests in flight on one page, and when the network last changed."""

    def __init__(self, page: Page) -> None:
        self.inflight = 0
        self.last = time.monotonic()
        page.on("request", self._started)
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    def _started(self, _: Request) -> None:
        self.inflight += 1
        self.last = time.monotonic()

    def _ended(self, _: Request) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.last = time.monotonic()

    async def settle(self, quiet: float, cap: float) -> None:
        deadline = time.monotonic() + cap
        self.last = max(self.last, time.monotonic())
        while time.monotonic() < deadline:
            if self.inflight == 0 and time.monotonic() - self.last >= quiet:
                return
            await asyncio.sleep(0.02)


class _Pass:
    """One crawl of the site in its own browser context."""

    def __init__(
        self,
        browser: Browser,
        phase: Phase,
        start: str,
        options: ScanOptions,
        obs: Observations,
        progress: Progress | None,
    ) -> None:
        self.browser = browser
        self.phase: Phase = phase
        self.start = start
        # the site is where the start page lands (a redirect to https or www. included)
        self.origin = _origin(start)
        self.start_host = obs.site_host
        self.site_host = obs.site_host
        self.options = options
        self.obs = obs
        self.progress = progress
        self.recording = phase == "before"  # the after pass records once consent is given
        self.cookies: dict[tuple[str, str, str], ObservedCookie] = {}
        self.storage: set[ObservedStorage] = set()
        self.requests: list[ObservedRequest] = []
        self.visited: list[str] = []
        self.exclude = [re.compile(p) for p in options.exclude]
        self.skipped: set[str] = set()

    async def run(self) -> None:
        context = await self.browser.new_context(
            viewport={"width": 1280, "height": 720},
            service_workers="block",
            extra_http_headers={"Sec-GPC": "1"} if self.options.gpc else None,
        )
        if self.options.gpc:
            await context.add_init_script(_GPC_SCRIPT)
        context.set_default_timeout(self.options.page_timeout * 1000)
        context.on("request", self._on_request)
        try:
            await self._crawl(context)
        finally:
            await context.close()
        self.obs.pages[self.phase] = [redact_url(u) for u in self.visited]
        self.obs.skipped = max(self.obs.skipped, len(self.skipped))
        self.obs.cookies.extend(self.cookies.values())
        self.obs.storage.extend(sorted(self.storage, key=lambda s: (s.kind, s.key, s.origin)))
        self.obs.requests.extend(r for r in self.requests if not self._first_party(r.host))

    def _on_request(self, request: Request) -> None:
        if not self.recording or request.redirected_from is not None:
            return  # a redirect (HSTS upgrades included) continues a request already counted
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return
        # first-party requests are dropped at the end, once the site's own host is known
        self.requests.append(
            ObservedRequest.from_url(request.url, request.resource_type, request.method, self.phase)
        )

    def _problem(self, url: str, message: str) -> None:
        self.obs.problems.append(f"{page_address(url)}: {redact_text(message)}")

    def _first_party(self, host: str) -> bool:
        return is_first_party(host, self.site_host) or is_first_party(host, self.start_host)

    def _landed(self, url: str) -> None:
        """The start page's final address (after redirects) says which site this is."""
        origin, host = _origin(url), urlsplit(url).hostname
        if origin is None or not host or urlsplit(url).scheme not in ("http", "https"):
            return
        self.origin, self.site_host = origin, host.lower()
        if self.phase == "before":
            self.obs.site_host = self.site_host

    async def _crawl(self, context: BrowserContext) -> None:
        first = await context.new_page()
        # the other tabs open while the start page loads
        others = asyncio.gather(
            *(context.new_page() for _ in range(max(1, self.options.concurrency) - 1))
        )
        activity = _Activity(first)
        try:
            links = await self._visit(first, activity, self.start, first=True)
        except BaseException:
            others.cancel()
            await asyncio.gather(others, return_exceptions=True)
            raise
        pages = [first, *await others]
        activities = [activity, *(_Activity(p) for p in pages[1:])]
        if links is None:
            return
        await self._snapshot_cookies(context)
        order = {self.start: 0}  # discovery order: the order pages are reported in
        order.setdefault(urldefrag(first.url).url, 0)  # where the start page redirected to
        pages_found = {self._page_key(u) for u in order}
        frontier: deque[str] = deque()

        def discovered(urls: list[str]) -> None:
            for u in urls:
                if u in order or u in self.skipped:
                    continue
                key = self._page_key(u)
                if key in pages_found or any(p.search(u) for p in self.exclude):
                    self.skipped.add(u)
                    continue
                order[u] = len(order)
                pages_found.add(key)
                frontier.append(u)

        discovered(links)
        claimed = 1
        busy = 0

        async def worker(page: Page, activity: _Activity) -> None:
            # Each worker takes the next page as soon as it is free (breadth first overall).
            nonlocal claimed, busy
            while claimed < self.options.pages:
                if not frontier:
                    if busy == 0:
                        return
                    await asyncio.sleep(0.01)
                    continue
                url = frontier.popleft()
                claimed += 1
                busy += 1
                try:
                    more = await self._visit(page, activity, url)
                    self.visited.append(url)
                    if len(self.visited) % COOKIES_EVERY == 0:
                        await self._snapshot_cookies(context)
                    discovered(more or [])
                finally:
                    busy -= 1

        await asyncio.gather(*(worker(p, a) for p, a in zip(pages, activities, strict=True)))
        await self._snapshot_cookies(context)
        self.visited.sort(key=lambda u: order.get(u, 0))

    async def _visit(
        self, page: Page, activity: _Activity, url: str, *, first: bool = False
    ) -> list[str] | None:
        """Load ``url``, let it settle and record storage; its same-origin links, or None."""
        from playwright.async_api import Error as PlaywrightError

        options = self.options
        try:
            response = await page.goto(url, wait_until="load")
        except PlaywrightError as exc:
            if first and self.phase == "before":
                raise ScanError(
                    f"{page_address(url)}: cannot load: {redact_text(_first_line(exc))}"
                ) from None
            self._problem(url, f"cannot load ({self.phase} consent): {_first_line(exc)}")
            self._progress(url)
            return None
        if response is not None and response.status >= 400:
            self._problem(url, f"HTTP {response.status} ({self.phase} consent)")
        await activity.settle(options.settle, min(options.page_timeout, SETTLE_CAP))
        if first and self.phase == "after":
            await self._accept(page, activity)
        if first:
            self._landed(page.url)
            self.visited.append(page.url)
        hrefs = await self._read_page(page)
        if first and options.screenshots:
            try:
                png = await page.screenshot(type="png", timeout=options.page_timeout * 1000)
                self.obs.screenshots.append(Screenshot(self.phase, page_address(url), png))
            except PlaywrightError as exc:
                self._problem(url, f"no screenshot: {_first_line(exc)}")
        self._progress(url)
        content_type = (response.headers.get("content-type", "") if response else "").lower()
        return self._same_origin(hrefs) if "html" in content_type else []

    async def _accept(self, page: Page, activity: _Activity) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        selector = self.options.accept_selector
        try:
            await self._bounded(page.query_selector(selector))
        except TimeoutError:
            self._problem(page.url, "the page does not answer; consent not given")
            return
        except PlaywrightError:
            raise ScanError(
                f"--accept-selector: {selector!r} is not a valid CSS selector"
            ) from None
        self.recording = True
        try:
            await page.click(selector, timeout=min(self.options.page_timeout, 10) * 1000)
        except PlaywrightTimeout:
            self._problem(
                page.url,
                f"no accept control {selector!r}: the 'after consent' pass ran without consent",
            )
            return
        self.obs.accepted = True
        await activity.settle(self.options.settle, min(self.options.page_timeout, SETTLE_CAP))

    async def _read_page(self, page: Page) -> list[Any]:
        """Record the page's storage keys; return its links (hrefs as the page resolved them)."""
        from playwright.async_api import Error as PlaywrightError

        try:
            local, session, hrefs = await self._bounded(page.evaluate(_READ_PAGE))
        except PlaywrightError:  # a page that navigated away or crashed meanwhile
            return []
        except TimeoutError:
            self._problem(page.url, "the page does not answer; storage not read")
            return []
        if self.recording:
            origin = _origin(page.url) or ""
            for key in local:
                self.storage.add(ObservedStorage("local_storage", str(key), origin, self.phase))
            for key in session:
                self.storage.add(ObservedStorage("session_storage", str(key), origin, self.phase))
        return list(hrefs)

    async def _snapshot_cookies(self, context: BrowserContext) -> None:
        if not self.recording:
            return
        now = time.time()
        for c in await self._bounded(context.cookies()):
            expires = float(c.get("expires", -1))
            lifetime = None if expires < 0 else max(0, round(expires - now))
            cookie = ObservedCookie(
                name=c.get("name", ""),
                domain=c.get("domain", ""),
                path=c.get("path", "/"),
                lifetime=lifetime,
                phase=self.phase,
                secure=bool(c.get("secure", False)),
                http_only=bool(c.get("httpOnly", False)),
                same_site=str(c.get("sameSite", "")),
            )
            key = (cookie.name, cookie.domain, cookie.path)
            known = self.cookies.get(key)
            if known is None or (cookie.lifetime or 0) > (known.lifetime or 0):
                self.cookies[key] = cookie

    async def _bounded(self, step: Awaitable[_T]) -> _T:
        """A step that Playwright gives no timeout of its own (a page's script may hang)."""
        return await asyncio.wait_for(step, self.options.page_timeout)

    def _same_origin(self, hrefs: list[Any]) -> list[str]:
        out: list[str] = []
        for href in hrefs:
            if not isinstance(href, str) or _origin(href) != self.origin:
                continue
            url = urldefrag(href).url
            if urlsplit(url).path.lower().endswith(_SKIP_SUFFIXES):
                continue
            if url not in out:
                out.append(url)
        return out

    def _page_key(self, url: str) -> str:
        """``url`` without the query parameters that only choose a region or language."""
        if self.options.variants:
            return url
        parts = urlsplit(url)
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() not in VARIANT_PARAMS
        ]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _progress(self, url: str) -> None:
        if self.progress is not None:
            self.progress(self.phase, url)


def _origin(url: str) -> str | None:
    """``scheme://host:port``; None for an address that cannot be parsed (a page's bad link)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
