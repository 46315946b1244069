"""Maintenance windows (`ops-platform pause`/`resume`, job `maintenance_window`).

Revision ID: 0005_maintenance_windows
Revises: 0004_job_state
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ops_platform.db.migration_support import state_schema

revision = "0005_maintenance_windows"
down_revision = "0004_job_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = state_schema()
    op.create_table(
        "maintenance_windows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("groups", sa.String(300), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(200), nullable=True),
        schema=schema,
    )
    op.create_index(
        "ix_maintenance_windows_ends_at", "maintenance_windows", ["ends_at"], schema=schema
    )


def downgrade() -> None:
    op.drop_index("ix_maintenance_windows_ends_at", "maintenance_windows", schema=state_schema())
    op.drop_table("maintenance_windows", schema=state_schema())
