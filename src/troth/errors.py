"""The one exception hierarchy of troth.

    TrothError                  anything troth raises on purpose
    ├── PolicyError             a policy file that cannot be used
    │   └── PolicyFileError     ... with the place it went wrong (file:line:col)
    ├── VocabularyError         a term outside the shipped vocabulary
    ├── RenderError             a policy that loads but cannot be rendered
    ├── StoreError              the database cannot be used (bad URL, not migrated, ...)
    ├── PublishError            a policy version that conflicts with one already published
    ├── ConsentError            a consent request that cannot be honoured (bad category, ...)
    │   └── ReceiptError        a consent receipt that does not verify
    ├── KeyringError            a key that is missing, wrong or cannot open a data key
    ├── AuditError              an audit log that cannot be read or verified
    ├── AuthError               a user, password or API key that cannot be accepted
    ├── TrackingError           a tracking hit, event or link that cannot be accepted
    ├── ScanError               a scan that cannot run (bad URL, option or database, no browser)
    ├── RequestError            a data subject or legal request, code or download link that
    │                           cannot be accepted (carries the HTTP status)
    └── PurposeDenied           application code asked for data the policy does not allow

Entry points (CLI, web) catch ``TrothError`` and turn it into a clear message and a
non-zero exit or a 4xx; anything else is a bug in troth and is allowed to surface.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuditError",
    "AuthError",
    "ConsentError",
    "KeyringError",
    "Location",
    "PolicyError",
    "PolicyFileError",
    "Problem",
    "PublishError",
    "PurposeDenied",
    "ReceiptError",
    "RenderError",
    "RequestError",
    "ScanError",
    "StoreError",
    "TrackingError",
    "TrothError",
    "VocabularyError",
]


class TrothError(Exception):
    """Base of every error troth raises on purpose."""


@dataclass(frozen=True)
class Location:
    """A place in a file, 1-based, as editors show it."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class PolicyError(TrothError):
    """A policy that cannot be loaded or used."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, at one place."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class PolicyFileError(PolicyError):
    """A policy file that cannot be loaded; each problem reads ``path:LINE:COL: message``."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("PolicyFileError needs at least one problem")
        self.problems = sorted(problems, key=lambda p: (p.location.line, p.location.column))
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def at(cls, path: str, line: int, column: int, message: str) -> PolicyFileError:
        return cls([Problem(Location(path, line, column), message)])


class VocabularyError(TrothError):
    """A term that is not in troth's shipped vocabulary."""


class RenderError(TrothError):
    """A policy that loads but cannot be rendered (for example an unknown locale)."""


class StoreError(TrothError):
    """The database cannot be used: a bad URL, an unreachable server, a missing migration."""


class PublishError(TrothError):
    """A policy version that conflicts with one already published (versions are immutable)."""


class ConsentError(TrothError):
    """A consent request that names what the policy does not declare, or is otherwise invalid."""


class ReceiptError(ConsentError):
    """A consent receipt that is malformed or whose signature does not verify."""


class KeyringError(TrothError):
    """A key-encryption key or data key that is missing, wrong, or cannot open a data key."""


class AuditError(TrothError):
    """An audit log that cannot be read, or whose signed heads cannot be checked."""


class PurposeDenied(TrothError):
    """Application code asked to use personal data in a way the policy does not allow now.

    ``rule`` names what denied it (undeclared purpose or category, missing consent,
    restriction, objection), so the caller can show or log the reason.
    """

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(message)


class AuthError(TrothError):
    """A user, password, role or API key that cannot be accepted (the message names the field)."""


class TrackingError(TrothError):
    """A tracking hit, event batch or link token that cannot be accepted (names the field)."""


class ScanError(TrothError):
    """A scan that cannot run: a bad URL, option or database, no browser, an unreachable site."""


class RequestError(TrothError):
    """A request that cannot be accepted — a data subject request, a legal request, a
    verification code or a download link. ``status``:
    400 malformed, 404 unknown, 409 wrong state, 410 expired or used, 422 invalid field,
    429 too many attempts, 503 mail could not be sent. The message starts with the field it
    is about and never echoes what the requester sent."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status = status
        self.title = title
        super().__init__(detail)
