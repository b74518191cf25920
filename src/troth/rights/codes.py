"""Secrets a requester holds: the e-mail verification code and the download token, and the
sealing of what troth keeps about a request.

Codes and tokens are stored only as keyed hashes; identities, corrections and packages
only encrypted (AES-256-GCM, the request id bound in as associated data). Both keys derive
from one secret, ``rights.key`` in the keys directory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from troth.rights.requests_errors import RequestError

__all__ = ["CODE_DIGITS", "Sealer", "new_code", "new_token", "normalise_code"]

CODE_DIGITS = 8


def new_code() -> str:
    """A random numeric code, easy to type from an e-mail."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(code: str) -> str:
    """What the requester typed, without spaces or dashes."""
    return "".join(ch for ch in code if ch not in " -\t")


def new_token() -> str:
    """A download token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class Sealer:
    """Keyed hashes and authenticated encryption for the rights capability."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the rights secret must be at least 32 bytes")
        self._mac = _derive(secret, b"troth rights mac")
        self._aead = AESGCM(_derive(secret, b"troth rights seal"))

    def digest(self, *parts: str) -> str:
        """A keyed hash of ``parts`` (hex); the same parts always give the same hash."""
        message = "\x1f".join(parts).encode()
        return hmac.new(self._mac, message, hashlib.sha256).hexdigest()

    def matches(self, expected_hex: str, *parts: str) -> bool:
        return hmac.compare_digest(expected_hex, self.digest(*parts))

    def seal_bytes(self, label: str, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, label.encode())

    def open_bytes(self, label: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], label.encode())
        except InvalidTag:
            raise RequestError(
                409,
                "Sealed data unreadable",
                "request: its sealed data does not open with this server's rights key "
                "(altered, or another keys directory)",
            ) from None

    def seal(self, label: str, value: Any) -> bytes:
        return self.seal_bytes(label, json.dumps(value, sort_keys=True).encode())

    def open(self, label: str, sealed: bytes) -> Any:
        return json.loads(self.open_bytes(label, sealed))
