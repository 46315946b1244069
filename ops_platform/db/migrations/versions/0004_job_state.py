"""The jobs' own state about app rows, keyed by the app row's id, in the project's schema:
email delivery (next attempt, Message-ID), reminder days and errors, payment check errors,
secret retirement times, security alert fingerprints. The app's tables keep only the
contract's columns.

Revision ID: 0004_job_state
Revises: 0003_dead_item_replays
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ops_platform.db.migration_support import state_schema

revision = "0004_job_state"
down_revision = "0003_dead_item_replays"
branch_labels = None
depends_on = None

TABLES = (
    "email_deliveries",
    "payment_reminder_days",
    "payment_check_errors",
    "secret_retirements",
    "security_alert_fingerprints",
)


def upgrade() -> None:
    schema = state_schema()
    op.create_table(
        "email_deliveries",
        sa.Column(
            "queue_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue_id"),
        schema=schema,
    )
    op.create_index(
        "ix_email_deliveries_next_attempt",
        "email_deliveries",
        ["next_attempt_at"],
        unique=False,
        schema=schema,
    )
    op.create_table(
        "payment_reminder_days",
        sa.Column(
            "reminder_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reminder_date", sa.Date(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("reminder_id"),
        sa.UniqueConstraint(
            "project_id", "kind", "reminder_date", name="uq_payment_reminder_days_project_kind_day"
        ),
        schema=schema,
    )
    op.create_table(
        "payment_check_errors",
        sa.Column(
            "payment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id"),
        schema=schema,
    )
    op.create_table(
        "secret_retirements",
        sa.Column(
            "secret_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("retire_after", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("secret_id"),
        schema=schema,
    )
    op.create_table(
        "security_alert_fingerprints",
        sa.Column(
            "alert_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("fingerprint", sa.String(length=300), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("alert_id"),
        schema=schema,
    )
    op.create_index(
        "ix_security_alert_fingerprints_fingerprint",
        "security_alert_fingerprints",
        ["fingerprint"],
        unique=False,
        schema=schema,
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table, schema=state_schema())
