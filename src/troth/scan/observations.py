"""What a crawl saw: cookies, storage keys, requests and screenshots, before and after consent.

Plain data, no behaviour beyond small helpers; the crawler fills it, the comparison reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = [
    "GOOGLE_DOMAINS",
    "Observations",
    "ObservedCookie",
    "ObservedRequest",
    "ObservedStorage",
    "Phase",
    "Screenshot",
    "is_first_party",
    "is_google_host",
    "page_address",
    "redact_text",
    "redact_url",
]

Phase = Literal["before", "after"]

# Hosts whose requests carry Google Consent Mode signals (the ``gcs`` parameter).
GOOGLE_DOMAINS = (
    "google-analytics.com",
    "googletagmanager.com",
    "doubleclick.net",
    "googleadservices.com",
    "googlesyndication.com",
    "google.com",
)


def is_google_host(host: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in GOOGLE_DOMAINS)


def redact_url(url: str) -> str:
    """``url`` without a user name or password (``http://user:pw@host/`` -> ``http://host/``):
    what a report, a problem or an error message may show of an address."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/?#]*@", "//", url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@]*@")


def page_address(url: str) -> str:
    """What a report shows of a page's address: no user name or password, no query string
    (which may carry identifiers, tokens or a visitor's e-mail address) and no fragment."""
    shown = redact_url(url)
    try:
        return urlunsplit(urlsplit(shown)._replace(query="", fragment=""))
    except ValueError:
        return shown.split("?")[0].split("#")[0]


def redact_text(text: str) -> str:
    """``text`` with the user name and password taken out of every address in it."""
    return _USERINFO.sub(r"\1", text)


def is_first_party(host: str, site_host: str) -> bool:
    """``host`` is the site's own: the same host, or a subdomain of it (``www.`` dropped)."""
    host = host.lstrip(".").lower()
    base = site_host.lower().removeprefix("www.")
    return host in (site_host.lower(), base) or host.endswith("." + base)


@dataclass(frozen=True)
class ObservedCookie:
    """A cookie in the browser's jar; ``lifetime`` in seconds from when it was seen, None for a
    session cookie."""

    name: str
    domain: str
    path: str
    lifetime: int | None
    phase: Phase
    secure: bool = False
    http_only: bool = False
    same_site: str = ""

    @property
    def host(self) -> str:
        return self.domain.lstrip(".")


@dataclass(frozen=True)
class ObservedStorage:
    """A key in a page's local or session storage."""

    kind: Literal["local_storage", "session_storage"]
    key: str
    origin: str
    phase: Phase


@dataclass(frozen=True)
class ObservedRequest:
    """A request the page made to another site (a third party)."""

    host: str
    resource_type: str
    method: str
    beacon: bool
    phase: Phase
    gcs: str | None  # Consent Mode state on Google requests, e.g. "G100"; None when absent
    path: str  # without the query string (which may carry identifiers)

    @classmethod
    def from_url(cls, url: str, resource_type: str, method: str, phase: Phase) -> ObservedRequest:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        gcs = None
        if is_google_host(host):
            values = parse_qs(parts.query).get("gcs")
            gcs = values[0] if values else None
        beacon = resource_type == "ping" or (
            resource_type in ("image", "xhr", "fetch") and (method == "POST" or bool(parts.query))
        )
        return cls(host, resource_type, method, beacon, phase, gcs, parts.path or "/")


@dataclass(frozen=True)
class Screenshot:
    phase: Phase
    url: str
    png: bytes = field(repr=False)


@dataclass
class Observations:
    """Everything one scan saw on one site."""

    start_url: str
    site_host: str
    pages: dict[Phase, list[str]] = field(default_factory=lambda: {"before": [], "after": []})
    cookies: list[ObservedCookie] = field(default_factory=list)
    storage: list[ObservedStorage] = field(default_factory=list)
    requests: list[ObservedRequest] = field(default_factory=list)
    screenshots: list[Screenshot] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    accepted: bool = False  # the accept control was found and clicked
    gpc: bool = False  # the browser sent a Global Privacy Control signal
    skipped: int = 0  # links not followed: excluded, or another region or language of a page
