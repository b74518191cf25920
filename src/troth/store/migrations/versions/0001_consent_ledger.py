"""Published policy versions and the consent ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("effective", sa.Date, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("reconsent", sa.JSON, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_policy_versions"),
        sa.UniqueConstraint("version", name="uq_policy_versions_version"),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("receipt_id", sa.String(36), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("jurisdiction", sa.String(64), nullable=False),
        sa.Column("gpc", sa.Boolean, nullable=False),
        sa.Column("choices", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("receipt", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_events"),
        sa.UniqueConstraint("receipt_id", name="uq_consent_events_receipt_id"),
    )
    op.create_index("ix_consent_events_subject", "consent_events", ["subject_hash", "id"])
    op.create_table(
        "consent_current",
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_hash", "category", name="pk_consent_current"),
    )


def downgrade() -> None:
    op.drop_table("consent_current")
    op.drop_index("ix_consent_events_subject", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_table("policy_versions")
