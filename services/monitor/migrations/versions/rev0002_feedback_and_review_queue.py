"""User feedback and the review queue: items, assignments, labels, comments, round-robin cursors.

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

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.Text, nullable=False, unique=True),
        sa.Column("interaction_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("flag_id", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_feedback_interaction_id", "feedback", ["interaction_id"])
    op.create_table(
        "review_items",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("final_verdict", sa.Text, nullable=True),
        sa.Column("detector", sa.Text, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("interaction_id", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("batch", sa.Text, nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("passages", sa.Text, nullable=False),
        sa.Column("labels_required", sa.Integer, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("due_at_us", sa.BigInteger, nullable=False),
        sa.Column("resolved_at_us", sa.BigInteger, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("review_items_queue", "review_items", ["state", "due_at_us"])
    op.create_index("review_items_by_detector", "review_items", ["detector", "due_at_us"])
    op.create_index("review_items_by_batch", "review_items", ["batch", "due_at_us"])
    op.create_table(
        "review_assignments",
        sa.Column("item_id", sa.Text, sa.ForeignKey("review_items.item_id"), primary_key=True),
        sa.Column("reviewer", sa.Text, primary_key=True),
        sa.Column("assigned_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("review_assignments_by_reviewer", "review_assignments", ["reviewer"])
    op.create_table(
        "review_labels",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Text, sa.ForeignKey("review_items.item_id"), nullable=False),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("verdict", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("adjudication", sa.Boolean, nullable=False),
        sa.Column("labeled_at_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("item_id", "reviewer", "adjudication", name="review_labels_one_per_reviewer"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "review_comments",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Text, sa.ForeignKey("review_items.item_id"), nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_review_comments_item_id", "review_comments", ["item_id"])
    op.create_table(
        "review_cursors",
        sa.Column("pool", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "review_cursors",
        "review_comments",
        "review_labels",
        "review_assignments",
        "review_items",
        "feedback",
    ):
        op.drop_table(table)
