"""Baselines of the window detectors (query drift, retrieval decay), so that a restart compares new traffic
with the baseline it had instead of learning a new one from traffic that may already have drifted.

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


def upgrade() -> None:
    op.create_table(
        "detector_baselines",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("detector_baselines")
