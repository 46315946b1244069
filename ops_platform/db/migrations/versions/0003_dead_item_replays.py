"""The audit of dead-item replays (`ops-platform dead replay`, job `replay_dead_items`).

Revision ID: 0003_dead_item_replays
Revises: 0002_project_state
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ops_platform.db.migration_support import state_schema

revision = "0003_dead_item_replays"
down_revision = "0002_project_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = state_schema()
    op.create_table(
        "dead_item_replays",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("replayed", sa.Integer(), nullable=False),
        sa.Column("item_ids", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        schema=schema,
    )
    op.create_index(
        "ix_dead_item_replays_replayed_at", "dead_item_replays", ["replayed_at"], schema=schema
    )


def downgrade() -> None:
    op.drop_index("ix_dead_item_replays_replayed_at", "dead_item_replays", schema=state_schema())
    op.drop_table("dead_item_replays", schema=state_schema())
