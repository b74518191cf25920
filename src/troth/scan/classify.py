"""Classify cookies the policy does not declare with the Open Cookie Database, and write the
YAML a policy author could add for them.

The database ships with troth as an attributed subset (``troth/policy/data/cookies.json``,
Apache-2.0, see its NOTICE); matches say so in the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from troth.policy.vocabulary import vocabulary

__all__ = ["OCD_ATTRIBUTION", "Classification", "classify_cookie", "iso_duration", "yaml_id"]

OCD_ATTRIBUTION = (
    "Open Cookie Database by jkwakman (https://github.com/jkwakman/Open-Cookie-Database), "
    "Apache License 2.0"
)

# Open Cookie Database categories -> troth tracking categories. "Functional" covers both what
# a site needs and what only remembers a choice: the likelier reading that still asks for
# consent, marked "# check" in suggestions and never judged "before consent" on its own.
_CATEGORIES = {
    "Functional": "preferences",
    "Necessary": "necessary",
    "Personalization": "preferences",
    "Analytics": "analytics",
    "Marketing": "advertising",
    "Security": "security",
}


@dataclass(frozen=True)
class Classification:
    """What the Open Cookie Database says about a cookie name."""

    name: str  # the database entry (a prefix for wildcard entries)
    platform: str
    category: str  # troth's tracking category
    source_category: str  # the database's own category
    retention: str

    @property
    def certain(self) -> bool:
        """The category is the database's own (not the guess made for "Functional")."""
        return self.source_category != "Functional"

    def as_dict(self) -> dict[str, str]:
        return {
            "entry": self.name,
            "platform": self.platform,
            "category": self.category,
            "source_category": self.source_category,
            "retention": self.retention,
            "source": "Open Cookie Database",
        }


def classify_cookie(name: str, host: str | None = None) -> Classification | None:
    """What the database says about ``name`` as set on ``host``. An entry for another domain
    than ``host`` names that platform's cookie, not this one, when the name is a plain word
    (``lang`` on a shop is not LinkedIn's); a vendor-prefixed name (``_fbp``) is that vendor's
    wherever its script sets it."""
    entry = vocabulary().cookie(name)
    if entry is None or entry.category not in _CATEGORIES:
        return None
    domain = entry.domain.removesuffix("(3rd party)").strip().lstrip(".").lower()
    if host is not None and domain and re.fullmatch(r"[A-Za-z]+", name):
        host = host.lstrip(".").lower()
        if host != domain and not host.endswith("." + domain):
            return None
    return Classification(
        name=entry.name,
        platform=entry.platform,
        category=_CATEGORIES[entry.category],
        source_category=entry.category,
        retention=entry.retention,
    )


def iso_duration(seconds: int) -> str:
    """A cookie lifetime as the ISO 8601 duration a policy would declare (rounded up to whole
    days, in years when it is a whole number of them)."""
    days = max(1, -(-seconds // 86400))
    if days % 365 == 0:
        return f"P{days // 365}Y"
    return f"P{days}D"


def yaml_id(name: str) -> str:
    """An identifier for a policy entry made from a cookie name or host."""
    out = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
    while "__" in out:
        out = out.replace("__", "_")
    if not out or not out[0].isalpha():
        out = "t_" + out
    return out
