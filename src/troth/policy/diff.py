"""Semantic diff of two policy versions.

A change is *material* when it lets the service do more with personal data than before:
a new purpose, activity, data category, recipient, transfer or tracking technology, or a
wider legal basis, scope, retention or expiry. Material changes name the consent
categories whose holders must be asked again; narrowing changes and wording are reported
but are not material.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from troth.policy.model import Activity, Policy, Purpose, Recipient, TrackingTechnology
from troth.policy.types import Duration
from troth.policy.vocabulary import vocabulary

__all__ = ["Change", "PolicyDiff", "diff_policies"]


@dataclass(frozen=True)
class Change:
    kind: str  # added | removed | widened | narrowed | changed | reworded
    entity: str  # purpose | activity | category | recipient | transfer | tracking | ...
    id: str
    detail: str
    material: bool
    reconsent: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "entity": self.entity,
            "id": self.id,
            "detail": self.detail,
            "material": self.material,
            "reconsent": list(self.reconsent),
        }


@dataclass(frozen=True)
class PolicyDiff:
    old_version: str
    new_version: str
    changes: list[Change] = field(default_factory=list)

    @property
    def material(self) -> list[Change]:
        return [c for c in self.changes if c.material]

    @property
    def reconsent(self) -> list[str]:
        return sorted({c for change in self.changes for c in change.reconsent})

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "material": bool(self.material),
            "reconsent": self.reconsent,
            "changes": [c.as_dict() for c in self.changes],
        }


def _consents(policy: Policy, activities: Iterable[Activity]) -> tuple[str, ...]:
    vocab = vocabulary()
    required = {c.id for c in policy.consent_categories if c.required}
    out = {
        a.consent
        for a in activities
        if a.consent
        and a.consent not in required
        and vocab.basis_kind(vocab.legal_basis(a.basis)) == "consent"
    }
    return tuple(sorted(out))


def _purpose_consents(policy: Policy, purpose_ids: Iterable[str]) -> tuple[str, ...]:
    ids = set(purpose_ids)
    return _consents(policy, (a for p in policy.purposes if p.id in ids for a in p.activities))


def _by_id(items: Sequence[Any]) -> dict[str, Any]:
    return {item.id: item for item in items}


def diff_policies(old: Policy, new: Policy) -> PolicyDiff:
    out: list[Change] = []
    out += _diff_purposes(old, new)
    out += _diff_categories(old, new)
    out += _diff_recipients(old, new)
    out += _diff_tracking(old, new)
    out += _diff_reworded(old, new)
    return PolicyDiff(old.version, new.version, out)


def _diff_purposes(old: Policy, new: Policy) -> list[Change]:
    out: list[Change] = []
    old_p: dict[str, Purpose] = _by_id(old.purposes)
    new_p: dict[str, Purpose] = _by_id(new.purposes)
    for pid, purpose in new_p.items():
        if pid not in old_p:
            out.append(
                Change(
                    "added", "purpose", pid, "new purpose", True, _consents(new, purpose.activities)
                )
            )
    for pid in old_p.keys() - new_p.keys():
        out.append(Change("removed", "purpose", pid, "purpose removed", False))
    old_a = {a.id: a for _, a in old.activities()}
    new_a = {a.id: (p, a) for p, a in new.activities()}
    for aid, (purpose, activity) in new_a.items():
        if purpose.id not in old_p:
            continue
        before = old_a.get(aid)
        consent = _consents(new, [activity])
        if before is None:
            out.append(
                Change("added", "activity", aid, f"new activity of '{purpose.id}'", True, consent)
            )
            continue
        out += _diff_activity(before, activity, consent)
    for aid in old_a.keys() - new_a.keys():
        if any(p.id in new_p for p, a in old.activities() if a.id == aid):
            out.append(Change("removed", "activity", aid, "activity removed", False))
    return out


def _diff_activity(old: Activity, new: Activity, consent: tuple[str, ...]) -> list[Change]:
    out: list[Change] = []
    if old.basis != new.basis:
        vocab = vocabulary()
        was = vocab.basis_kind(vocab.legal_basis(old.basis)) or old.basis
        now = vocab.basis_kind(vocab.legal_basis(new.basis)) or new.basis
        out.append(Change("widened", "basis", new.id, f"legal basis {was} -> {now}", True, consent))
    elif old.consent != new.consent:
        out.append(
            Change(
                "changed", "basis", new.id, f"consent {old.consent} -> {new.consent}", True, consent
            )
        )
    added = [c for c in new.categories if c not in old.categories]
    if added:
        out.append(
            Change("widened", "activity", new.id, f"now uses {', '.join(added)}", True, consent)
        )
    removed = [c for c in old.categories if c not in new.categories]
    if removed:
        out.append(
            Change("narrowed", "activity", new.id, f"no longer uses {', '.join(removed)}", False)
        )
    subjects = [s for s in new.subjects if s not in old.subjects]
    if subjects:
        out.append(
            Change(
                "widened", "activity", new.id, f"now concerns {', '.join(subjects)}", True, consent
            )
        )
    if old.retention and new.retention and _longer(new.retention.period, old.retention.period):
        out.append(
            Change(
                "widened",
                "retention",
                new.id,
                f"kept {new.retention.period} instead of {old.retention.period}",
                True,
                consent,
            )
        )
    return out


def _longer(new: Duration | str | None, old: Duration | str | None) -> bool:
    def seconds(value: Duration | str | None) -> int:
        if isinstance(value, Duration):
            return value.approx_seconds()
        return 0

    return seconds(new) > seconds(old)


def _diff_categories(old: Policy, new: Policy) -> list[Change]:
    out: list[Change] = []
    old_c = _by_id(old.categories)
    for cid in _by_id(new.categories).keys() - old_c.keys():
        users = [a for _, a in new.activities() if cid in a.categories]
        out.append(
            Change("added", "category", cid, "new data category", True, _consents(new, users))
        )
    for cid in old_c.keys() - _by_id(new.categories).keys():
        out.append(Change("removed", "category", cid, "data category removed", False))
    return out


def _diff_recipients(old: Policy, new: Policy) -> list[Change]:
    out: list[Change] = []
    old_r: dict[str, Recipient] = _by_id(old.recipients)
    new_r: dict[str, Recipient] = _by_id(new.recipients)
    for rid, r in new_r.items():
        consent = _purpose_consents(new, r.purposes)
        before = old_r.get(rid)
        if before is None:
            out.append(
                Change("added", "recipient", rid, f"new recipient ({r.type})", True, consent)
            )
            if r.transfer is not None:
                out.append(
                    Change(
                        "added",
                        "transfer",
                        rid,
                        f"transfer to {', '.join(r.countries)}",
                        True,
                        consent,
                    )
                )
            continue
        countries = [c for c in r.countries if c not in before.countries]
        if countries:
            out.append(
                Change(
                    "added", "transfer", rid, f"now also in {', '.join(countries)}", True, consent
                )
            )
        if (
            r.transfer is not None
            and before.transfer is not None
            and r.transfer.mechanism != before.transfer.mechanism
        ):
            out.append(
                Change(
                    "changed",
                    "transfer",
                    rid,
                    f"mechanism {before.transfer.mechanism} -> {r.transfer.mechanism}",
                    False,
                )
            )
        purposes = [p for p in r.purposes if p not in before.purposes]
        categories = [c for c in r.categories if c not in before.categories]
        if purposes or categories:
            detail = ", ".join(purposes + categories)
            out.append(
                Change(
                    "widened",
                    "recipient",
                    rid,
                    f"now receives for/of {detail}",
                    True,
                    _purpose_consents(new, purposes) if purposes else consent,
                )
            )
    for rid in old_r.keys() - new_r.keys():
        out.append(Change("removed", "recipient", rid, "recipient removed", False))
    return out


def _diff_tracking(old: Policy, new: Policy) -> list[Change]:
    out: list[Change] = []
    required = {c.id for c in new.consent_categories if c.required}
    old_t: dict[str, TrackingTechnology] = _by_id(old.tracking)
    new_t: dict[str, TrackingTechnology] = _by_id(new.tracking)
    for tid, t in new_t.items():
        consent = () if t.category in required else (t.category,)
        before = old_t.get(tid)
        if before is None:
            out.append(
                Change("added", "tracking", tid, f"new {t.type} ({t.category})", True, consent)
            )
            continue
        if before.category != t.category:
            out.append(
                Change(
                    "changed",
                    "tracking",
                    tid,
                    f"category {before.category} -> {t.category}",
                    True,
                    consent,
                )
            )
        if _longer(t.expiry, before.expiry):
            out.append(
                Change(
                    "widened",
                    "tracking",
                    tid,
                    f"expires after {t.expiry} instead of {before.expiry}",
                    True,
                    consent,
                )
            )
        added = [p for p in t.purposes if p not in before.purposes]
        if added:
            out.append(
                Change(
                    "widened", "tracking", tid, f"now also for {', '.join(added)}", True, consent
                )
            )
    for tid in old_t.keys() - new_t.keys():
        out.append(Change("removed", "tracking", tid, "tracking technology removed", False))
    return out


_WORDING_COLLECTIONS = (
    "subjects",
    "categories",
    "consent_categories",
    "purposes",
    "tracking",
    "recipients",
    "choices",
    "security_measures",
    "jurisdictions",
)
_MATERIAL_FIELDS = {
    "activities",
    "basis",
    "consent",
    "categories",
    "subjects",
    "retention",
    "countries",
    "transfer",
    "purposes",
    "expiry",
    "category",
}


def _diff_reworded(old: Policy, new: Policy) -> list[Change]:
    """Changes in wording only: reported so reviewers see them, never material."""
    out: list[Change] = []
    for name in _WORDING_COLLECTIONS:
        olds = _by_id(getattr(old, name))
        for item_id, item in _by_id(getattr(new, name)).items():
            before = olds.get(item_id)
            if before is None:
                continue
            fields = [
                f
                for f in type(item).model_fields
                if f not in _MATERIAL_FIELDS and getattr(item, f) != getattr(before, f)
            ]
            if fields:
                entity = name.removesuffix("s") if name != "categories" else "category"
                out.append(Change("reworded", entity, item_id, ", ".join(fields), False))
    for p in new.purposes:
        before_p = _by_id(old.purposes).get(p.id)
        if before_p is None:
            continue
        old_acts = _by_id(before_p.activities)
        for a in p.activities:
            b = old_acts.get(a.id)
            if b is not None:
                fields = [
                    f
                    for f in type(a).model_fields
                    if f not in _MATERIAL_FIELDS and getattr(a, f) != getattr(b, f)
                ]
                if fields:
                    out.append(Change("reworded", "activity", a.id, ", ".join(fields), False))
    for f in ("controller", "texts", "rights"):
        if getattr(old, f) != getattr(new, f):
            out.append(Change("reworded", f, f, f"{f} changed", False))
    return out
