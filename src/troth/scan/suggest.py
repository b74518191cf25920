"""The YAML a policy author could add for what a scan found undeclared.

Values the scan cannot know (the purpose, the company behind a host, where it processes data)
are filled with the likeliest choice and marked ``# check``; every snippet parses as YAML and,
added to the policy, declares what was found. Strings are written as JSON strings (valid YAML)
unless they are plain words, so a cookie name or storage key cannot break out of its line; the
ids are new to the policy and to each other within one comparison.
"""

from __future__ import annotations

import json
import re

from troth.policy.model import Policy, TrackingTechnology
from troth.scan.classify import Classification, iso_duration, yaml_id

__all__ = ["Suggestions", "yaml_str"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_RESERVED = frozenset(("true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"))


def yaml_str(value: str) -> str:
    """``value`` as a YAML scalar that reads back as exactly that string."""
    if _PLAIN.fullmatch(value) and value.lower() not in _RESERVED:
        return value
    return json.dumps(value)


class Suggestions:
    """The snippets of one comparison with one policy (ids allocated across all of them)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.taken = {t.id for t in policy.tracking} | {r.id for r in policy.recipients}

    def new_id(self, name: str) -> str:
        base = yaml_id(name)
        candidate, n = base, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{base}_{n}"
        self.taken.add(candidate)
        return candidate

    def _purposes_for(self, category: str) -> str:
        """``purposes: [...]`` for a technology of ``category``: those of one like it."""
        for tech in self.policy.tracking:
            if tech.category == category:
                return f"purposes: [{', '.join(tech.purposes)}]"
        return f"purposes: [{self.policy.purposes[0].id}]  # check: the purpose this serves"

    def cookie(
        self,
        name: str,
        host: str,
        first_party: bool,
        lifetime: int | None,
        cls: Classification | None,
    ) -> str:
        category = _category(cls, "analytics  # check: unknown cookie, choose its category")
        lines = [
            "tracking:",
            f"  - id: {self.new_id(name)}",
            "    type: cookie",
            f"    name: {yaml_str(name)}",
            f"    party: {'first' if first_party else 'third'}",
            f"    category: {category}",
            f"    expiry: {'session' if lifetime is None else iso_duration(lifetime)}",
        ]
        if not first_party:
            lines.append(f"    domain: {yaml_str(host)}")
        lines += [
            f"    {self._purposes_for(cls.category if cls else 'analytics')}",
            f"    description: {yaml_str(_describe(cls))}",
        ]
        return "\n".join(lines)

    def storage(self, kind: str, key: str, cls: Classification | None) -> str:
        category = _category(cls, "preferences  # check: choose its category")
        return "\n".join(
            [
                "tracking:",
                f"  - id: {self.new_id(key)}",
                f"    type: {kind}",
                f"    name: {yaml_str(key)}",
                "    party: first",
                f"    category: {category}",
                f"    {self._purposes_for(cls.category if cls else 'preferences')}",
                f"    description: {yaml_str(_describe(cls))}",
            ]
        )

    def host(self, host: str, techs: list[TrackingTechnology], *, pixel: bool = False) -> str:
        """A recipient for ``host`` (with a pixel technology when ``pixel``: beacon-like
        requests went there before any consent), or the line to add where one already fits."""
        vendors = sorted({t.vendor for t in techs if t.vendor})
        if vendors:
            return f"# add to recipients[{vendors[0]}].hosts:\n    hosts: [{yaml_str(host)}]"
        vendor = self.new_id(host)
        lines = [
            "recipients:",
            f"  - id: {vendor}",
            f"    name: {yaml_str(host)}  # check: the company behind it",
            "    type: service_provider",
            "    role: processor",
            "    description: TODO what they do for us",
            "    countries: [US]  # check: where they process data",
            f"    purposes: [{self.policy.purposes[0].id}]  # check",
            f"    hosts: [{yaml_str(host)}]",
        ]
        if pixel:
            lines += self.pixel(host, vendor).splitlines()
        return "\n".join(lines)

    def pixel(self, host: str, vendor: str) -> str:
        """A pixel technology of recipient ``vendor`` on ``host``, for beacon-like requests."""
        return "\n".join(
            [
                "tracking:",
                f"  - id: {self.new_id(host + '_pixel')}",
                "    type: pixel",
                f"    name: {yaml_str(host + ' pixel')}",
                "    party: third",
                f"    vendor: {vendor}",
                f"    domain: {yaml_str(host)}",
                "    category: advertising  # check: what the requests are for",
                f"    {self._purposes_for('advertising')}",
                "    description: TODO what it reports and why",
            ]
        )


def _category(cls: Classification | None, unknown: str) -> str:
    if cls is None:
        return unknown
    if not cls.certain:
        return f"{cls.category}  # check: the Open Cookie Database says {cls.source_category}"
    return cls.category


def _describe(cls: Classification | None) -> str:
    if cls is None:
        return "TODO: what it stores and why"
    return f"Set by {cls.platform} ({cls.source_category.lower()}). TODO: why we use it"
