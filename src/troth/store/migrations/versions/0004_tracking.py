"""Tracking events, aggregate counts and daily salts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tracking_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("tech_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("visitor", sa.String(64), nullable=False),
        sa.Column("page", sa.String(512), nullable=False),
        sa.Column("ip_prefix", sa.String(64), nullable=False),
        sa.Column("props", sa.JSON, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tracking_events"),
    )
    op.create_index("ix_tracking_events_tech_at", "tracking_events", ["tech_id", "at"])
    op.create_index("ix_tracking_events_day", "tracking_events", ["day", "campaign"])
    op.create_table(
        "tracking_aggregates",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("tech_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("consent", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "tech_id", "kind", "campaign", "consent", name="pk_tracking_aggregates"
        ),
    )
    op.create_table(
        "tracking_salts",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_tracking_salts"),
    )


def downgrade() -> None:
    op.drop_table("tracking_salts")
    op.drop_table("tracking_aggregates")
    op.drop_index("ix_tracking_events_day", table_name="tracking_events")
    op.drop_index("ix_tracking_events_tech_at", table_name="tracking_events")
    op.drop_table("tracking_events")
