"""Tracking links: the destination travels signed (HMAC-SHA256) and expires, so the redirect
can never be pointed anywhere else — a missing, altered or expired signature is refused.

A token may also carry the recipient's jurisdiction (claim ``j``), so that a click or an
open is judged under the same consent rules as the e-mail was tagged under; it is signed
like every other claim. Tokens made before the claim existed have none: their hits are
judged under the policy's default jurisdiction."""

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
    jurisdiction: str | None = None  # the recipient's, as the e-mail was tagged; None: default


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(
        self,
        url: str,
        *,
        tech: str,
        campaign: str,
        recipient: str = "",
        ttl: int = 90 * 86400,
        jurisdiction: str | None = None,
    ) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TrackingError(f"url: only http(s) links can be tracked, not {url[:60]!r}")
        claims: dict[str, str | int] = {
            "u": url,
            "t": tech,
            "c": campaign,
            "r": recipient,
            "e": int(time.time()) + ttl,
        }
        if jurisdiction is not None:
            claims["j"] = jurisdiction
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str) -> LinkClaims:
        if len(token) > MAX_TOKEN or not token.isascii() or token.count(".") != 1:
            raise TrackingError("token: not a tracking link")
        body, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TrackingError("token: the signature does not match; the link was altered")
        try:
            data = json.loads(unb64(body))
            jurisdiction = data.get("j")
            if jurisdiction is not None and not isinstance(jurisdiction, str):
                raise TypeError("j")
            claims = LinkClaims(
                str(data["u"]),
                str(data["t"]),
                str(data["c"]),
                str(data["r"]),
                int(data["e"]),
                jurisdiction,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TrackingError("token: not a tracking link") from None
        if claims.expires < time.time():
            raise TrackingError("token: this tracking link has expired")
        if urlsplit(claims.url).scheme not in ("http", "https"):
            raise TrackingError("token: not a tracking link")
        return claims

    def _mac(self, body: str) -> str:
        return b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
