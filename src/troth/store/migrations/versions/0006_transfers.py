"""Disclosure log and legal requests.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "legal_requests",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("authority", sa.String(200), nullable=False),
        sa.Column("country", sa.String(8), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("received", sa.Date, nullable=False),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("legal_basis", sa.String(500), nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("recipient", sa.String(64), nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_legal_requests"),
    )
    op.create_table(
        "legal_request_subjects",
        sa.Column("request_id", sa.Integer, sa.ForeignKey("legal_requests.id"), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "subject_hash", name="pk_legal_request_subjects"),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("legal_requests.id"), nullable=False),
        sa.Column("limit_id", sa.Integer, nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(128), nullable=True),
        sa.Column("release_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_legal_holds"),
    )
    op.create_index("ix_legal_holds_request", "legal_holds", ["request_id"])
    op.create_index(
        "ux_legal_holds_active",
        "legal_holds",
        ["request_id", "subject_hash", "scope"],
        unique=True,
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_table(
        "disclosures",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("country", sa.String(8), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("mechanism", sa.String(32), nullable=True),
        sa.Column("mechanism_detail", sa.String(200), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("legal_request_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_disclosures"),
    )
    op.create_index("ix_disclosures_recipient_at", "disclosures", ["recipient", "at"])
    op.create_index("ix_disclosures_country", "disclosures", ["country"])
    op.create_index("ix_disclosures_subject", "disclosures", ["subject_hash"])


def downgrade() -> None:
    op.drop_table("disclosures")
    op.drop_table("legal_holds")
    op.drop_table("legal_request_subjects")
    op.drop_table("legal_requests")
