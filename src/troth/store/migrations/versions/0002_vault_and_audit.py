"""Subject keys, the vault, processing limits and the audit log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_hash", name="pk_subject_keys"),
    )
    op.create_index("ix_subject_keys_kek", "subject_keys", ["kek_id"])
    op.create_table(
        "vault_values",
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_hash", "category", name="pk_vault_values"),
    )
    op.create_table(
        "processing_limits",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_processing_limits"),
    )
    op.create_index("ix_processing_limits_subject", "processing_limits", ["subject_hash", "kind"])
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_ref", sa.String(64), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entries"),
    )
    op.create_table(
        "audit_state",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_state"),
    )
    state = sa.table("audit_state", sa.column("id"), sa.column("size"), sa.column("frontier"))
    op.bulk_insert(state, [{"id": 1, "size": 0, "frontier": '{"size": 0, "peaks": []}'}])


def downgrade() -> None:
    op.drop_table("audit_state")
    op.drop_table("audit_entries")
    op.drop_index("ix_processing_limits_subject", table_name="processing_limits")
    op.drop_table("processing_limits")
    op.drop_table("vault_values")
    op.drop_index("ix_subject_keys_kek", table_name="subject_keys")
    op.drop_table("subject_keys")
