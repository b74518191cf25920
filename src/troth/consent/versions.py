"""Published policy versions: immutable, ordered, and the consent each one asks again for.

Publishing a version stores its canonical form and the consent categories its material
changes (F1's diff against the previous published version) ask for again. A category's
*revision* is the sequence number of the last version that asked for it again; consent
given under an earlier version is expired for that category, and only for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from troth.errors import PublishError
from troth.policy.diff import diff_policies
from troth.policy.model import Policy
from troth.store.engine import writing
from troth.store.tables import policy_versions

__all__ = ["PolicyHistory", "PublishedVersion", "load_history", "publish"]


@dataclass(frozen=True)
class PublishedVersion:
    seq: int
    version: str
    effective: dt.date
    digest: str
    reconsent: tuple[str, ...]


@dataclass(frozen=True)
class PolicyHistory:
    versions: tuple[PublishedVersion, ...]

    @property
    def current(self) -> PublishedVersion:
        return self.versions[-1]

    def seq_of(self, version: str) -> int | None:
        for v in self.versions:
            if v.version == version:
                return v.seq
        return None

    def revision(self, category: str) -> int:
        """Sequence number of the last version that asked for ``category`` again."""
        last = self.versions[0].seq
        for v in self.versions:
            if category in v.reconsent:
                last = v.seq
        return last


def _canonical(policy: Policy) -> str:
    # Defaults are left out so that a troth upgrade adding a model field with a default
    # does not make every published version look changed.
    document = policy.model_dump(mode="json", exclude_defaults=True)
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def load_history(engine: Engine) -> PolicyHistory:
    with engine.connect() as conn:
        rows = conn.execute(select(policy_versions).order_by(policy_versions.c.seq)).all()
    return PolicyHistory(
        tuple(
            PublishedVersion(r.seq, r.version, r.effective, r.digest, tuple(r.reconsent))
            for r in rows
        )
    )


def publish(engine: Engine, policy: Policy) -> PolicyHistory:
    """Publish ``policy`` unless this exact version is published already; return the history."""
    document = _canonical(policy)
    digest = hashlib.sha256(document.encode()).hexdigest()
    for _attempt in range(3):
        history = load_history(engine)
        for v in history.versions:
            if v.version == policy.version:
                if v.digest != digest:
                    raise PublishError(
                        f"policy version {policy.version} is already published with different "
                        "content; published versions are immutable, so give this one a new version"
                    )
                return history
        reconsent: list[str] = []
        if history.versions:
            latest = history.current
            if _version_key(policy.version) <= _version_key(latest.version):
                raise PublishError(
                    f"policy version {policy.version} is not newer than the published "
                    f"{latest.version}"
                )
            with engine.connect() as conn:
                previous_doc = conn.execute(
                    select(policy_versions.c.document).where(policy_versions.c.seq == latest.seq)
                ).scalar_one()
            previous = Policy.model_validate(json.loads(previous_doc))
            reconsent = diff_policies(previous, policy).reconsent
        try:
            with writing(engine).begin() as conn:
                conn.execute(
                    insert(policy_versions).values(
                        version=policy.version,
                        effective=policy.effective,
                        digest=digest,
                        document=document,
                        reconsent=reconsent,
                        published_at=dt.datetime.now(dt.UTC),
                    )
                )
        except IntegrityError:
            continue  # another worker published at the same moment: read again
        return load_history(engine)
    raise PublishError(f"could not publish policy version {policy.version}; try again")
