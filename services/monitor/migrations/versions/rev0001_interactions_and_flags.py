"""Interactions and flags: the schema of the hand-written SQLite migration this replaces.

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

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("interaction_id", sa.Text, nullable=False, unique=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("refused", sa.Boolean, nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "interactions_newest", "interactions", [sa.text("occurred_at_us DESC"), sa.text("seq DESC")]
    )
    op.create_table(
        "flags",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("flag_id", sa.Text, nullable=False, unique=True),
        sa.Column("interaction_id", sa.Text, sa.ForeignKey("interactions.interaction_id"), nullable=False),
        sa.Column("detector", sa.Text, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("flags_newest", "flags", [sa.text("created_at_us DESC"), sa.text("seq DESC")])
    op.create_index(
        "flags_by_interaction",
        "flags",
        ["interaction_id", sa.text("created_at_us DESC"), sa.text("seq DESC")],
    )


def downgrade() -> None:
    op.drop_table("flags")
    op.drop_table("interactions")
