"""The YAML a policy author could add for what a scan found undeclared.

Values the scan cannot know (the purpose, the company behind a host, where it processes data)
are filled with the likeliest choice and marked ``# check``; every snippet parses as YAML and,
added to the policy, declares what was found.
"""

from __future__ import annotations

import re

from troth.policy.model import Policy, TrackingTechnology
from troth.scan.classify import Classification, iso_duration, yaml_id

__all__ = ["cookie_snippet", "host_snippet", "pixel_snippet", "storage_snippet"]


def _purposes_for(policy: Policy, category: str) -> str:
    """``purposes: [...]`` for a technology of ``category``: those of a declared one like it."""
    for tech in policy.tracking:
        if tech.category == category:
            return f"purposes: [{', '.join(tech.purposes)}]"
    return f"purposes: [{policy.purposes[0].id}]  # check: the purpose this serves"


def cookie_snippet(
    policy: Policy,
    name: str,
    host: str,
    first_party: bool,
    lifetime: int | None,
    cls: Classification | None,
) -> str:
    category = _category(cls, "analytics  # check: unknown cookie, choose its category")
    lines = [
        "tracking:",
        f"  - id: {yaml_id(name)}",
        "    type: cookie",
        f"    name: {_yaml_str(name)}",
        f"    party: {'first' if first_party else 'third'}",
        f"    category: {category}",
        f"    expiry: {'session' if lifetime is None else iso_duration(lifetime)}",
    ]
    if not first_party:
        lines.append(f"    domain: {_yaml_str(host)}")
    lines += [
        f"    {_purposes_for(policy, cls.category if cls else 'analytics')}",
        f"    description: {_yaml_str(_describe(cls))}",
    ]
    return "\n".join(lines)


def storage_snippet(policy: Policy, kind: str, key: str, cls: Classification | None) -> str:
    category = _category(cls, "preferences  # check: choose its category")
    return "\n".join(
        [
            "tracking:",
            f"  - id: {yaml_id(key)}",
            f"    type: {kind}",
            f"    name: {_yaml_str(key)}",
            "    party: first",
            f"    category: {category}",
            f"    {_purposes_for(policy, cls.category if cls else 'preferences')}",
            f"    description: {_yaml_str(_describe(cls))}",
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


def host_snippet(
    policy: Policy, host: str, techs: list[TrackingTechnology], *, pixel: bool = False
) -> str:
    """A recipient for ``host`` (with a pixel technology when ``pixel``: beacon-like requests
    went there before any consent), or the line to add where a recipient already fits."""
    vendors = sorted({t.vendor for t in techs if t.vendor})
    if vendors:
        return f"# add to recipients[{vendors[0]}].hosts:\n    hosts: [{_yaml_str(host)}]"
    vendor = yaml_id(host)
    lines = [
        "recipients:",
        f"  - id: {vendor}",
        f"    name: {_yaml_str(host)}  # check: the company behind it",
        "    type: service_provider",
        "    role: processor",
        "    description: TODO what they do for us",
        "    countries: [US]  # check: where they process data",
        f"    purposes: [{policy.purposes[0].id}]  # check",
        f"    hosts: [{_yaml_str(host)}]",
    ]
    if pixel:
        lines += pixel_snippet(policy, host, vendor).splitlines()
    return "\n".join(lines)


def pixel_snippet(policy: Policy, host: str, vendor: str) -> str:
    """A pixel technology of recipient ``vendor`` on ``host``, for beacon-like requests."""
    return "\n".join(
        [
            "tracking:",
            f"  - id: {yaml_id(host)}_pixel",
            "    type: pixel",
            f"    name: {_yaml_str(host + ' pixel')}",
            "    party: third",
            f"    vendor: {vendor}",
            f"    domain: {_yaml_str(host)}",
            "    category: advertising  # check: what the requests are for",
            f"    {_purposes_for(policy, 'advertising')}",
            "    description: TODO what it reports and why",
        ]
    )


def _yaml_str(value: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", value) and value.lower() not in (
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "null",
    ):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
