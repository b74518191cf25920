"""Every table troth owns. Capabilities reach these through their own modules only."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

__all__ = [
    "api_keys",
    "audit_entries",
    "audit_state",
    "consent_current",
    "consent_events",
    "maintenance_runs",
    "metadata",
    "policy_versions",
    "processing_limits",
    "sessions",
    "subject_keys",
    "tracking_aggregates",
    "tracking_events",
    "tracking_salts",
    "users",
    "vault_values",
]

from troth.store._schema import Id, metadata

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("version", String(32), nullable=False, unique=True),
    Column("effective", Date, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("reconsent", JSON, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("receipt_id", String(36), nullable=False, unique=True),
    Column("subject_hash", String(64), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("language", String(8), nullable=False),
    Column("method", String(32), nullable=False),
    Column("jurisdiction", String(64), nullable=False),
    Column("gpc", Boolean, nullable=False),
    Column("choices", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("receipt", JSON, nullable=False),
    Index("ix_consent_events_subject", "subject_hash", "id"),
)

consent_current = Table(
    "consent_current",
    metadata,
    Column("subject_hash", String(64), primary_key=True),
    Column("category", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("event_id", Id, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

subject_keys = Table(
    "subject_keys",
    metadata,
    Column("subject_hash", String(64), primary_key=True),
    Column("kek_id", String(32), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_subject_keys_kek", "kek_id"),
)

vault_values = Table(
    "vault_values",
    metadata,
    Column("subject_hash", String(64), primary_key=True),
    Column("category", String(64), primary_key=True),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

processing_limits = Table(
    "processing_limits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("subject_hash", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # restriction | objection | legal_hold
    Column("scope", String(64), nullable=False),  # a purpose id, or "*"
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Index("ix_processing_limits_subject", "subject_hash", "kind"),
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject_ref", String(64), nullable=True),
    Column("details", Text, nullable=False),
    Column("leaf_hash", String(64), nullable=False),
)

audit_state = Table(
    "audit_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("frontier", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Id, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sessions_user", "user_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

tracking_events = Table(
    "tracking_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tech_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # view | open | click | event
    Column("name", String(64), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("visitor", String(64), nullable=False),  # keyed hash: daily-salted or cookie id
    Column("page", String(512), nullable=False),  # path only, never the query string
    Column("ip_prefix", String(64), nullable=False),  # IPv4 /24, IPv6 /48
    Column("props", JSON, nullable=False),
    Column("day", Date, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_tracking_events_tech_at", "tech_id", "at"),
    Index("ix_tracking_events_day", "day", "campaign"),
)

tracking_aggregates = Table(
    "tracking_aggregates",
    metadata,
    Column("day", Date, primary_key=True),
    Column("tech_id", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("campaign", String(64), primary_key=True),
    Column("consent", String(16), primary_key=True),  # given | none
    Column("count", BigInteger, nullable=False),
)

tracking_salts = Table(
    "tracking_salts",
    metadata,
    Column("day", Date, primary_key=True),
    Column("salt", LargeBinary, nullable=False),
)

# Periodic work that one process of many should do (the hourly purge): who ran it last.
maintenance_runs = Table(
    "maintenance_runs",
    metadata,
    Column("task", String(64), primary_key=True),
    Column("last_run", DateTime(timezone=True), nullable=False),
)

# Tables of the later capabilities are declared in their own modules on the same metadata;
# importing them here makes `metadata` complete for migrations, backups and tests.
from troth.store import tables_rights, tables_transfers  # noqa: E402, F401
