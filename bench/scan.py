"""Benchmark: `troth scan` throughput against plain Playwright page loads of the same pages.

A local site of PAGES linked pages (each with a consent banner, a cookie set by script, a
Google Analytics hit before consent and a third-party pixel and an analytics cookie after,
on hosts mapped to 127.0.0.1) is served by a threaded HTTP server in this process. Each round
measures, from launching Chromium to closing it:

- troth: ``scan_site`` of the start page with ``pages=PAGES``, as ``troth scan`` runs for a
  text or JSON report: every page loaded twice (in a fresh context without consent, and in
  one where "accept all" was clicked), each left to settle, cookies, storage and requests
  recorded, and the comparison with the policy;
- plain: plain Playwright with the scan's concurrency (two fresh contexts of four tabs each,
  every tab taking the next page, ``goto`` until ``load``, nothing recorded) -- each context
  loading every page (the same page loads the scan makes), and the eight tabs loading every
  page once between them.

Row 1 compares page loads per minute with the plain run that makes the same page loads; row 2
counts each page once, against the plain run that loads it once with the same tabs (the
scan's two loads per page are its job, so row 2 cannot exceed about 0.5x when the machine's
CPU is the limit).
Goal: >= 0.7x. Rounds are interleaved; each figure is the best round.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _support import BenchError, log
from troth.policy.loader import load_policy
from troth.scan import ScanOptions, scan_site
from troth.scan.crawler import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "tests" / "scan" / "site" / "policy.yaml"
PAGES = 30
CONTEXTS = 2  # the scan's two passes, before and after consent, run at once
TABS = ScanOptions().concurrency  # pages each pass loads at once
ROUNDS = 3
GOAL = 0.7
MAP_HOSTS = (("*.test", "127.0.0.1"), ("www.google-analytics.com", "127.0.0.1"))
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def page_html(n: int) -> bytes:
    links = " ".join(f'<a href="/p{(n + k) % PAGES}.html">page {(n + k) % PAGES}</a>'
                     for k in (1, 2, 3))  # fmt: skip
    text = " ".join(f"Paragraph {i} of page {n}: plans, devices, protection." for i in range(40))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Page {n}</title>
<script>
document.cookie = "sid=s{n}; path=/";
var port = location.port;
new Image().src = "http://www.google-analytics.com:" + port + "/g/collect?v=2&gcs=G100";
function acceptAll() {{
  document.cookie = "consent=all; max-age=15552000; path=/";
  document.cookie = "_stats_id=s.{n}; max-age=31536000; path=/";
  new Image().src = "http://px.tracker.test:" + port + "/px.gif?e=pv";
  document.getElementById("cmp").remove();
}}
</script></head><body>
<div id="cmp"><button id="accept" type="button" onclick="acceptAll()">Accept all</button></div>
<h1>Page {n}</h1><nav>{links}</nav><p>{text}</p></body></html>""".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a browser closing a connection early (pages are left mid-request) is normal
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        host = (self.headers.get("Host") or "").split(":")[0]
        if host == "site.test":
            name = "p0.html" if path == "/" else path.lstrip("/")
            if name.startswith("p") and name.endswith(".html") and name[1:-5].isdigit():
                body, kind, status = page_html(int(name[1:-5])), "text/html", 200
            else:
                body, kind, status = b"not found", "text/plain", 404
        else:
            body, kind, status = GIF, "image/gif", 200
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def site() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def plain_loads(port: int, passes: int) -> float:
    """Seconds to launch Chromium, load every page ``passes`` times and close it, with the
    scan's concurrency: two fresh contexts of TABS tabs each, every tab taking the next page
    (``goto`` until ``load``, nothing recorded). Twice: each context loads every page (the
    same page loads as the scan); once: the eight tabs share one list of the pages."""
    return asyncio.run(_plain_loads(port, passes))


async def _plain_loads(port: int, passes: int) -> float:
    from playwright.async_api import Page, async_playwright

    rules = ", ".join(f"MAP {p} {a}" for p, a in MAP_HOSTS)
    urls = [f"http://site.test:{port}/p{n}.html" for n in range(PAGES)]
    started = time.perf_counter()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"]
        )
        contexts = [await browser.new_context() for _ in range(CONTEXTS)]
        queues = [deque(urls) for _ in contexts] if passes == 2 else [deque(urls)] * CONTEXTS

        async def tab(page: Page, queue: deque[str]) -> None:
            while queue:
                await page.goto(queue.popleft(), wait_until="load")

        tabs = [(await c.new_page(), q) for c, q in zip(contexts, queues, strict=True)
                for _ in range(TABS)]  # fmt: skip
        await asyncio.gather(*(tab(page, queue) for page, queue in tabs))
        for context in contexts:
            await context.close()
        await browser.close()
    return time.perf_counter() - started


def scanned(port: int) -> tuple[float, int]:
    policy = load_policy(POLICY).policy
    # as `troth scan` runs for a text or JSON report (screenshots are taken for HTML only)
    options = ScanOptions(
        pages=PAGES, accept_selector="#accept", map_hosts=MAP_HOSTS, screenshots=False
    )
    started = time.perf_counter()
    report = scan_site(f"http://site.test:{port}/", options, policy)
    elapsed = time.perf_counter() - started
    pages = report.observations.pages
    if len(pages["before"]) != PAGES or len(pages["after"]) != PAGES:
        raise BenchError(f"the scan visited {pages} pages, not {PAGES} twice")
    if not report.observations.accepted:
        raise BenchError("the scan did not find the accept control")
    return elapsed, len(report.findings)


@dataclass
class Row:
    measure: str
    troth: str
    baseline: str
    ratio: str
    goal: str
    met: bool


def main() -> None:
    if not CHROMIUM.exists():
        raise BenchError(f"Chromium is missing at {CHROMIUM} (scripts/install-test-deps.sh)")
    started = time.perf_counter()
    once: list[float] = []
    twice: list[float] = []
    scans: list[float] = []
    with site() as port:
        plain_loads(port, 1)  # warm-up: Chromium's first start reads its files from disk
        for r in range(ROUNDS):
            once.append(plain_loads(port, 1))
            twice.append(plain_loads(port, 2))
            elapsed, findings = scanned(port)
            scans.append(elapsed)
            log(f"round {r + 1}: plain x1 {once[-1]:.2f}s, plain x2 {twice[-1]:.2f}s, "
                f"scan {elapsed:.2f}s ({findings} findings)")  # fmt: skip
    scan_loads = 2 * PAGES / min(scans) * 60
    base_loads = 2 * PAGES / min(twice) * 60
    scan_pages = PAGES / min(scans) * 60
    base_pages = PAGES / min(once) * 60
    rows = [
        Row("page loads per minute (scan: 2 per page)", f"{scan_loads:.0f}",
            f"{base_loads:.0f}", f"{scan_loads / base_loads:.2f}x", f">= {GOAL}x",
            scan_loads / base_loads >= GOAL),
        Row("distinct pages per minute", f"{scan_pages:.0f}", f"{base_pages:.0f}",
            f"{scan_pages / base_pages:.2f}x", f">= {GOAL}x", scan_pages / base_pages >= GOAL),
    ]  # fmt: skip
    print(f"scan bench: {PAGES} pages; best of {ROUNDS} interleaved rounds; each includes "
          "starting and closing Chromium")  # fmt: skip
    print(
        "troth: scan_site before and after consent (each page loaded twice, settled and "
        "recorded, then compared with the policy);"
    )
    print(f"baseline: plain Playwright page.goto of the same pages with the same tabs "
          f"({CONTEXTS} contexts x {TABS}), every page in each context (row 1: the same page "
          "loads) and every page once (row 2)")  # fmt: skip
    print()
    head = ("measure", "troth", "baseline", "ratio", "goal", "met")
    cells = [(r.measure, r.troth, r.baseline, r.ratio, r.goal, "yes" if r.met else "NO")
             for r in rows]  # fmt: skip
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)) + " |")
    print(f"\n(bench took {time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        print(f"bench/scan.py failed: {exc}", file=sys.stderr)
        sys.exit(1)
