"""HTTP errors as RFC 9457 problem documents, body-size limits and write rate limits."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "RateLimiter", "client_key", "problem"]


def problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=headers or None,
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, counting what actually arrives.

    FastAPI's own ``max_body_size`` answers a too-large Content-Length with plain text; this
    answers both that and a too-long chunked body with a problem document."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "Payload too large", f"body: at most {self.limit} bytes are accepted"
        )
        await response(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised while the body streams in; FastAPI's own HTTPException, the one type its body
    parsing lets through instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: at most {limit} bytes are accepted")


def client_key(request: Request) -> str:
    """The client's network (IPv4 /24, IPv6 /48): enough to limit, too coarse to identify."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class RateLimiter:
    """A token bucket per key; ``rate`` tokens a minute, bursts up to ``burst``."""

    def __init__(self, rate_per_minute: int, burst: int | None = None) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst or max(10, rate_per_minute // 2))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > 100_000:
                    self._buckets.clear()
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def retry_after(self, wait: float) -> dict[str, Any]:
        return {"Retry-After": str(max(1, math.ceil(wait)))}
