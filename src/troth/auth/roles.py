"""Roles and the permission table.

Each named permission lists the roles allowed to use it; ``owner`` holds every permission.
Code asks :func:`allows` and never compares role names itself, so this table is the one
place to read (and review) who may do what.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "ROLE_DESCRIPTIONS",
    "Role",
    "allows",
    "check_permission",
    "check_role",
    "grants",
]

Role = Literal["owner", "privacy_officer", "support_agent", "service", "auditor"]

ROLES: Final[tuple[Role, ...]] = (
    "owner",
    "privacy_officer",
    "support_agent",
    "service",
    "auditor",
)

ROLE_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "owner": "everything, including user management",
    "privacy_officer": "everything except using the vault",
    "support_agent": "sees data subject requests and the policy, never exports",
    "service": "a backend: the vault and the consent API",
    "auditor": "reads the audit log only",
}

_ALL_BUT_SERVICE = frozenset({"owner", "privacy_officer"})

PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    # the admin pages at all (what each role sees there is narrowed by the others)
    "admin.view": frozenset({"owner", "privacy_officer", "support_agent", "auditor"}),
    # the list of admin users (creating them stays in the CLI)
    "admin.users": _ALL_BUT_SERVICE,
    # the audit log: its state, verification, entries and proofs
    "audit.read": frozenset({"owner", "privacy_officer", "auditor"}),
    # aggregate consent rates on the overview
    "consent.report": _ALL_BUT_SERVICE,
    # the consent API beyond what a visitor may do for themselves
    "consent.manage": frozenset({"owner", "privacy_officer", "service"}),
    # the personal-data vault (purpose-bound reads and writes)
    "vault.use": frozenset({"owner", "service"}),
    # data subject requests: see them, and export what they produce
    "requests.view": frozenset({"owner", "privacy_officer", "support_agent"}),
    "requests.export": _ALL_BUT_SERVICE,
    # submit a request for an account the caller has authenticated (verified at once)
    "requests.submit": frozenset({"owner", "privacy_officer", "service"}),
    # act on data subject requests: approve, extend, execute, reject
    "requests.manage": _ALL_BUT_SERVICE,
    # recipients, transfers and the disclosure log (read)
    "transfers.view": frozenset({"owner", "privacy_officer", "auditor"}),
    # record a disclosure to a recipient
    "disclosures.record": frozenset({"owner", "privacy_officer", "service"}),
    # requests from authorities and the legal holds they create
    "legal.manage": _ALL_BUT_SERVICE,
    # the policy in force, its versions and their differences
    "policy.view": frozenset({"owner", "privacy_officer", "support_agent"}),
}


def check_role(role: str) -> Role:
    """``role`` if it is one of :data:`ROLES`, else ``ValueError`` naming the valid ones."""
    for known in ROLES:
        if role == known:
            return known
    raise ValueError(f"role: '{role}' is not a role; use one of {', '.join(ROLES)}")


def check_permission(permission: str) -> str:
    if permission not in PERMISSIONS:
        raise ValueError(f"'{permission}' is not a permission; see troth.auth.roles.PERMISSIONS")
    return permission


def allows(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission``; an unknown permission is a bug (ValueError)."""
    return role in PERMISSIONS[check_permission(permission)]


def grants(role: str) -> frozenset[str]:
    """Every permission ``role`` holds."""
    return frozenset(p for p, roles in PERMISSIONS.items() if role in roles)
