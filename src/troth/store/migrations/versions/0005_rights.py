"""Data subject rights: requests, steps, jobs, verification codes, delivery links.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rights_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("found", sa.LargeBinary, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("verified_by", sa.String(128), nullable=True),
        sa.Column("received_at", When, nullable=False),
        sa.Column("due", sa.Date, nullable=False),
        sa.Column("extended_due", sa.Date, nullable=True),
        sa.Column("extension_reason", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("completed_at", When, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rights_requests"),
    )
    op.create_index("ix_rights_requests_state_due", "rights_requests", ["state", "due"])
    op.create_table(
        "rights_steps",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rights_steps"),
    )
    op.create_index("ix_rights_steps_request", "rights_steps", ["request_id", "id"])
    op.create_table(
        "rights_codes",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_rights_codes"),
    )
    op.create_table(
        "rights_jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("datastore", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", When, nullable=True),
        sa.Column("run_after", When, nullable=False),
        sa.Column("output", sa.LargeBinary, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rights_jobs"),
        sa.UniqueConstraint(
            "request_id",
            "operation",
            "datastore",
            name="uq_rights_jobs_request_id_operation_datastore",
        ),
    )
    op.create_index("ix_rights_jobs_state_run_after", "rights_jobs", ["state", "run_after"])
    op.create_table(
        "rights_deliveries",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(128), nullable=False),
        sa.Column("package", sa.LargeBinary, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_rights_deliveries"),
    )
    op.create_index("ix_rights_deliveries_request", "rights_deliveries", ["request_id"])
    op.create_index("ix_rights_deliveries_expires", "rights_deliveries", ["expires_at"])


def downgrade() -> None:
    op.drop_table("rights_deliveries")
    op.drop_table("rights_jobs")
    op.drop_table("rights_codes")
    op.drop_table("rights_steps")
    op.drop_table("rights_requests")
