"""Tracking links: the destination travels signed (HMAC-SHA256) and expires, so the redirect
can never be pointed anywhere else — a missing, altered or expired signature is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from troth.errors import TrackingError
from troth.keyring.signing import b64, unb64

__all__ = ["LinkClaims", "LinkSigner"]

MAX_TOKEN = 2048


@dataclass(frozen=True)
class LinkClaims:
    url: str
    tech: str
    campaign: str
    recipient: str  # keyed hash of the recipient, or "" for a clean link
    expires: int


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(
        self, url: str, *, tech: str, campaign: str, recipient: str = "", ttl: int = 90 * 86400
    ) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TrackingError(f"url: only http(s) links can be tracked, not {url[:60]!r}")
        body = b64(
            json.dumps(
                {"u": url, "t": tech, "c": campaign, "r": recipient, "e": int(time.time()) + ttl},
                separators=(",", ":"),
            ).encode()
        )
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str) -> LinkClaims:
        if len(token) > MAX_TOKEN or not token.isascii() or token.count(".") != 1:
            raise TrackingError("token: not a tracking link")
        body, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TrackingError("token: the signature does not match; the link was altered")
        try:
            data = json.loads(unb64(body))
            claims = LinkClaims(
                str(data["u"]), str(data["t"]), str(data["c"]), str(data["r"]), int(data["e"])
            )
        except (ValueError, KeyError, TypeError):
            raise TrackingError("token: not a tracking link") from None
        if claims.expires < time.time():
            raise TrackingError("token: this tracking link has expired")
        if urlsplit(claims.url).scheme not in ("http", "https"):
            raise TrackingError("token: not a tracking link")
        return claims

    def _mac(self, body: str) -> str:
        return b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
