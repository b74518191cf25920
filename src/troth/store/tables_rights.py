"""Data subject rights: requests, their steps, per-datastore jobs, verification codes and
delivery links (F5).

Nothing personal is stored in clear: a request's identities (and a rectification's new
values) are sealed (AES-GCM) in ``sealed``; codes and download tokens are stored as keyed
hashes; packages are stored encrypted and deleted after download or expiry.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from troth.store._schema import Id, metadata

__all__ = [
    "rights_codes",
    "rights_deliveries",
    "rights_jobs",
    "rights_requests",
    "rights_steps",
]

rights_requests = Table(
    "rights_requests",
    metadata,
    Column("id", String(32), primary_key=True),  # random; the requester's reference
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("subject_hash", String(64), nullable=False),  # keyed hash, for the audit log
    Column("sealed", LargeBinary, nullable=False),  # identities (+ corrections), encrypted
    Column("found", LargeBinary, nullable=True),  # identities discovery found, encrypted
    Column("params", JSON, nullable=False),  # nothing personal: scope, purposes, fields
    Column("language", String(8), nullable=False),
    Column("channel", String(16), nullable=False),  # portal | api | cli
    Column("verified_by", String(128), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due", Date, nullable=False),
    Column("extended_due", Date, nullable=True),
    Column("extension_reason", Text, nullable=True),
    Column("reason", Text, nullable=True),  # why it was rejected
    Column("result", JSON, nullable=True),  # counts per store, what was kept and why
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Index("ix_rights_requests_state_due", "state", "due"),
)

rights_steps = Table(
    "rights_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("step", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("note", Text, nullable=False),
    Index("ix_rights_steps_request", "request_id", "id"),
)

rights_codes = Table(
    "rights_codes",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sent", Integer, nullable=False),  # codes sent for this request so far
)

rights_jobs = Table(
    "rights_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False),
    Column("operation", String(16), nullable=False),  # discover | access | erase | ...
    Column("datastore", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | done | failed
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("run_after", DateTime(timezone=True), nullable=False),
    Column("output", LargeBinary, nullable=True),  # encrypted; personal data possible
    Column("result", JSON, nullable=True),  # counts only
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("request_id", "operation", "datastore"),
    Index("ix_rights_jobs_state_run_after", "state", "run_after"),
)

rights_deliveries = Table(
    "rights_deliveries",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("request_id", String(32), nullable=False),
    Column("filename", String(128), nullable=False),
    Column("package", LargeBinary, nullable=False),  # encrypted
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_rights_deliveries_request", "request_id"),
    Index("ix_rights_deliveries_expires", "expires_at"),
)
