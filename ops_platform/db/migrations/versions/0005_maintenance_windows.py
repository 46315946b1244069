"""Maintenance windows (`ops-platform pause`/`resume`, job `maintenance_window`).

Create Date: 2026-12-02

While a window is active, the schedules and sensors of its groups skip their ticks.
"""

import sqlalchemy as sa

from ops_platform.db.columns import Ts, optional, required, serial_id
from ops_platform.db.migration_support import create_state_table, drop_state_tables

revision = "0005_maintenance_windows"
down_revision = "0004_job_state"


def upgrade() -> None:
    create_state_table(
        "maintenance_windows",
        serial_id(),
        *required(
            created_by=sa.String(200),
            reason=sa.Text(),
            groups=sa.String(300),
            starts_at=Ts,
            ends_at=Ts,
            created_at=Ts,
        ),
        *optional(ended_at=Ts, ended_by=sa.String(200)),
        indexes={"ix_maintenance_windows_ends_at": "ends_at"},
    )


def downgrade() -> None:
    drop_state_tables("maintenance_windows")
