"""Evidence spans on flags and review items, so the review page can highlight where the evidence sits.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Flags stored before this revision have no spans: an empty list, not NULL.
    for table in ("flags", "review_items"):
        op.add_column(table, sa.Column("spans", sa.JSON, nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    for table in ("review_items", "flags"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("spans")
