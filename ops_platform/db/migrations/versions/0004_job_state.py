"""The jobs' own state about app rows, keyed by the app row's id, in the project's schema:
email delivery (next attempt, Message-ID), reminder days and errors, payment check errors,
secret retirement times, security alert fingerprints. The app's tables keep only the
contract's columns.

Create Date: 2026-12-02
"""

import sqlalchemy as sa

from ops_platform.db.columns import Id, Ts, optional, required, row_key
from ops_platform.db.migration_support import create_state_table, drop_state_tables

revision = "0004_job_state"
down_revision = "0003_dead_item_replays"

TABLES = (
    "email_deliveries",
    "payment_reminder_days",
    "payment_check_errors",
    "secret_retirements",
    "security_alert_fingerprints",
)


def upgrade() -> None:
    create_state_table(
        "email_deliveries",
        row_key("queue_id"),
        *optional(next_attempt_at=Ts, message_id=sa.String(300)),
        *required(updated_at=Ts),
        indexes={"ix_email_deliveries_next_attempt": "next_attempt_at"},
    )
    create_state_table(
        "payment_reminder_days",
        row_key("reminder_id"),
        *required(project_id=Id, kind=sa.String(32), reminder_date=sa.Date()),
        *optional(error_message=sa.Text()),
        sa.UniqueConstraint(
            "project_id", "kind", "reminder_date", name="uq_payment_reminder_days_project_kind_day"
        ),
    )
    create_state_table(
        "payment_check_errors",
        row_key("payment_id"),
        *required(last_error=sa.Text(), checked_at=Ts),
    )
    create_state_table("secret_retirements", row_key("secret_id"), *required(retire_after=Ts))
    create_state_table(
        "security_alert_fingerprints",
        row_key("alert_id"),
        *required(fingerprint=sa.String(300), last_seen_at=Ts),
        indexes={"ix_security_alert_fingerprints_fingerprint": "fingerprint"},
    )


def downgrade() -> None:
    drop_state_tables(*TABLES)
