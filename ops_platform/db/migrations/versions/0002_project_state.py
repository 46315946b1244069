"""The project's own namespace: job locks, app state, leaderboard standings and archive, and
the analytics outputs.

Create Date: 2026-12-02

Everything the project keeps beyond the contract lives in its own namespace (a Postgres
schema, `ops` by default; an attached file on SQLite), created by the environment before
the version table. A new project-owned table is a new revision on top of the single head,
built with `create_state_table`, plus its `Table` in `schema.state_metadata`.
"""

import sqlalchemy as sa

from ops_platform.db.columns import Id, Ts, optional, required, row_key, with_default
from ops_platform.db.migration_support import create_state_table, drop_state_tables

revision = "0002_project_state"
down_revision = "0001_contract"


def upgrade() -> None:
    # Singleton leases of the jobs on SQLite (Postgres uses advisory locks).
    create_state_table(
        "job_locks",
        sa.Column("name", sa.String(200), primary_key=True),
        *required(holder=sa.String(200), acquired_at=Ts, expires_at=Ts),
    )
    create_state_table(
        "app_state",
        sa.Column("key", sa.String(100), primary_key=True),
        *optional(value=sa.Text(), updated_at=Ts),
    )
    create_state_table(
        "leaderboard_entries_archive",
        row_key("id"),
        *optional(session_id=Id),
        *required(game_type=sa.String(32), player_address=sa.String(64), score=sa.BigInteger()),
        *required(created_at=Ts),
        with_default("archived_at", Ts, "CURRENT_TIMESTAMP"),
    )
    create_state_table(
        "leaderboard_standings",
        *_keys(game_type=sa.String(32), period=sa.String(16)),
        sa.Column("rank", sa.Integer(), primary_key=True, autoincrement=False),
        *required(player_address=sa.String(64), score=sa.BigInteger()),
        *optional(period_start=sa.Date()),
        *required(computed_at=Ts),
    )
    create_state_table(
        "daily_course_analytics",
        *_keys(day=sa.Date()),
        row_key("course_id"),
        *required(active_students=sa.Integer(), lessons_completed=sa.Integer()),
        *required(enrollments=sa.Integer(), completions=sa.Integer()),
        *optional(completion_rate=sa.Float(), avg_quiz_score=sa.Float()),
        *required(computed_at=Ts),
    )
    create_state_table(
        "daily_student_analytics",
        *_keys(day=sa.Date()),
        row_key("user_id"),
        *required(courses_active=sa.Integer(), lessons_completed=sa.Integer()),
        *required(quizzes_taken=sa.Integer()),
        *optional(avg_quiz_score=sa.Float()),
        *required(computed_at=Ts),
    )
    create_state_table(
        "analytics_reports",
        *_keys(kind=sa.String(32), period_key=sa.String(32)),
        *required(markdown=sa.Text()),
        *optional(chart_key=sa.String(500), metrics=sa.JSON()),
        *required(created_at=Ts),
    )
    create_state_table(
        "hourly_platform_metrics",
        *_keys(hour=Ts),
        *required(signups=sa.Integer(), active_sessions=sa.Integer()),
        *required(payments_succeeded=sa.Integer(), payments_failed=sa.Integer()),
        *required(revenue_cents=sa.BigInteger(), email_queue_depth=sa.Integer()),
        *required(realtime_outbox_depth=sa.Integer(), job_failures=sa.Integer(), computed_at=Ts),
    )


def _keys(**types) -> list[sa.Column]:
    """The columns of a natural primary key, in order."""
    return [sa.Column(name, type_, primary_key=True) for name, type_ in types.items()]


TABLES = (
    "job_locks",
    "app_state",
    "leaderboard_entries_archive",
    "leaderboard_standings",
    "daily_course_analytics",
    "daily_student_analytics",
    "analytics_reports",
    "hourly_platform_metrics",
)


def downgrade() -> None:
    drop_state_tables(*TABLES)
