"""Whether the caller cut the answer off (InteractionEvent.interrupted), on interactions and review items, so
a reviewer can tell a cut-off answer from a finished one.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from copilot.events.v1 import events_pb2

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_interactions = sa.table(
    "interactions",
    sa.column("interaction_id", sa.Text),
    sa.column("event", sa.LargeBinary),
    sa.column("interrupted", sa.Boolean),
)
_review_items = sa.table(
    "review_items", sa.column("interaction_id", sa.Text), sa.column("interrupted", sa.Boolean)
)


def upgrade() -> None:
    for table in ("interactions", "review_items"):
        op.add_column(table, sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()))
    # Generation published the field before the monitor read it, so interactions stored earlier may be cut off
    # too; their raw event says so. Only the ids of those are kept, however many events there are.
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_interactions.c.interaction_id, _interactions.c.event).execution_options(yield_per=1000)
    )
    cut_off = [
        row.interaction_id for row in rows if events_pb2.InteractionEvent.FromString(row.event).interrupted
    ]
    for start in range(0, len(cut_off), 500):
        ids = cut_off[start : start + 500]
        for marked in (_interactions, _review_items):
            conn.execute(marked.update().where(marked.c.interaction_id.in_(ids)).values(interrupted=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 and later): copying the table in batch mode would trip the foreign keys
    # that point at it.
    for table in ("review_items", "interactions"):
        op.drop_column(table, "interrupted")
