"""Recipients and transfers: the disclosure log and legal requests (F6).

Subjects appear only as keyed hashes (``SubjectHasher``); category lists are the policy's
category ids, comma-separated and sorted.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from troth.store._schema import Id, metadata

__all__ = ["disclosures", "legal_holds", "legal_request_subjects", "legal_requests"]

legal_requests = Table(
    "legal_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("authority", String(200), nullable=False),
    Column("country", String(8), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("received", Date, nullable=False),
    Column("decision", String(24), nullable=False),  # pending | disclosed | partial | refused
    Column("legal_basis", String(500), nullable=False),
    Column("categories", Text, nullable=False),  # comma-separated category ids
    Column("recipient", String(64), nullable=True),  # the policy's recipient it went to
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
)

legal_request_subjects = Table(
    "legal_request_subjects",
    metadata,
    Column("request_id", Integer, ForeignKey("legal_requests.id"), primary_key=True),
    Column("subject_hash", String(64), primary_key=True),
)

legal_holds = Table(
    "legal_holds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("legal_requests.id"), nullable=False),
    Column("limit_id", Integer, nullable=False),  # the vault's processing_limits row
    Column("subject_hash", String(64), nullable=False),
    Column("scope", String(64), nullable=False),  # '*' or a data category id
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Column("released_by", String(128), nullable=True),
    Column("release_reason", Text, nullable=True),
    Index("ix_legal_holds_request", "request_id"),
    # one active hold per request, subject and scope (a repeated hold returns the existing one)
    Index(
        "ux_legal_holds_active",
        "request_id",
        "subject_hash",
        "scope",
        unique=True,
        sqlite_where=text("released_at IS NULL"),
        postgresql_where=text("released_at IS NULL"),
    ),
)

disclosures = Table(
    "disclosures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("country", String(8), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("categories", Text, nullable=False),
    Column("mechanism", String(32), nullable=True),  # None: no transfer (inside the region)
    Column("mechanism_detail", String(200), nullable=False),
    Column("subject_hash", String(64), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("source", String(16), nullable=False),  # api | vault | legal
    Column("legal_request_id", Integer, nullable=True),
    Index("ix_disclosures_recipient_at", "recipient", "at"),
    Index("ix_disclosures_country", "country"),
    Index("ix_disclosures_subject", "subject_hash"),
)
