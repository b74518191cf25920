"""The scan tests' local web: one threaded HTTP server that plays the test shop and the
third parties it calls (the browser maps their ``*.test`` and Google names to 127.0.0.1)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from troth.policy.loader import LoadedPolicy, load_policy

SITE = Path(__file__).parent / "site"
SITE_POLICY = SITE / "policy.yaml"
MAP_HOSTS = (("*.test", "127.0.0.1"), ("www.google-analytics.com", "127.0.0.1"))
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PAGES = {
    "/": "index.html",
    "/about.html": "about.html",
    "/contact.html": "contact.html",
    "/hang.html": "hang.html",  # linked from nowhere: only scanned on purpose
    "/hang-later.html": "hang-later.html",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a browser closing a connection early (pages are left mid-request) is normal
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        path = self.path.split("?")[0]
        if host == "shop.test" and path == "/start":
            self._send(302, b"", "text/plain", {"Location": "/"})
        elif host == "old-shop.test":  # the shop moved: another origin
            port = self.server.server_address[1]
            self._send(301, b"", "text/plain", {"Location": f"http://shop.test:{port}/"})
        elif host == "shop.test" and path in PAGES:
            extra = {"Set-Cookie": "sid=s3ss10n; Path=/; HttpOnly"} if path == "/" else {}
            body = (SITE / PAGES[path]).read_bytes()
            self._send(200, body, "text/html; charset=utf-8", extra)
        elif host == "px.tracker.test" or host == "www.google-analytics.com":
            self._send(200, GIF, "image/gif", {})
        elif host == "cdn.unknown.test" and path == "/lib.js":
            self._send(200, b"window.lib = 1;", "text/javascript", {})
        else:
            self._send(404, b"not found", "text/plain", {})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(204, b"", "text/plain", {})


@dataclass(frozen=True)
class Site:
    port: int
    map_hosts: tuple[tuple[str, str], ...] = MAP_HOSTS
    policy_path: Path = SITE_POLICY

    @property
    def url(self) -> str:
        return f"http://shop.test:{self.port}/"

    def policy(self) -> LoadedPolicy:
        return load_policy(self.policy_path)

    def map_host_args(self) -> list[str]:
        return [arg for p, a in self.map_hosts for arg in ("--map-host", f"{p}={a}")]


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
