"""The audit of dead-item replays (`ops-platform dead replay`, job `replay_dead_items`).

Create Date: 2026-12-02
"""

import sqlalchemy as sa

from ops_platform.db.columns import Ts, optional, required, serial_id
from ops_platform.db.migration_support import create_state_table, drop_state_tables

revision = "0003_dead_item_replays"
down_revision = "0002_project_state"


def upgrade() -> None:
    create_state_table(
        "dead_item_replays",
        serial_id(),
        *required(queue=sa.String(16), requested=sa.Integer(), replayed=sa.Integer()),
        *required(item_ids=sa.Text(), requested_by=sa.String(200), replayed_at=Ts),
        *optional(run_id=sa.String(64)),
        indexes={"ix_dead_item_replays_replayed_at": "replayed_at"},
    )


def downgrade() -> None:
    drop_state_tables("dead_item_replays")
