"""Subjects are stored only as keyed hashes: the ledger never holds a visitor or account id."""

from __future__ import annotations

import hashlib
import hmac
import re

from troth.errors import ConsentError

__all__ = ["SUBJECT_PATTERN", "SubjectHasher"]

# A visitor id from the banner (22 base64url characters) or an application's account reference.
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9_\-:.]{16,128}$")


class SubjectHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("subject key must be at least 32 bytes")
        self._key = key

    def __call__(self, subject: str) -> str:
        if not SUBJECT_PATTERN.match(subject):
            raise ConsentError(
                "subject: expected 16-128 characters of letters, digits, '_', '-', ':' or '.'"
            )
        return hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()
