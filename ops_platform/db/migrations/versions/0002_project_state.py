"""The project's own namespace: job locks, app state, leaderboard standings and archive, and
the analytics outputs.

Revision ID: 0002_project_state
Revises: 0001_contract
Create Date: 2026-12-02

Everything the project keeps beyond the contract lives in its own namespace (a Postgres
schema, `ops` by default; an attached file on SQLite), created by the environment before
the version table. A new project-owned table is a new revision on top of the single head,
`op.create_table(..., schema=state_schema())`, plus its `Table` in `schema.state_metadata`.
"""

import sqlalchemy as sa
from alembic import op

from ops_platform.db.migration_support import state_schema

revision = "0002_project_state"
down_revision = "0001_contract"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    schema = state_schema()
    # Singleton leases of the jobs on SQLite (Postgres uses advisory locks).
    op.create_table(
        "job_locks",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", Ts, nullable=False),
        sa.Column("expires_at", Ts, nullable=False),
        schema=schema,
    )
    op.create_table(
        "app_state",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
        schema=schema,
    )
    op.create_table(
        "leaderboard_entries_archive",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("game_type", sa.String(length=32), nullable=False),
        sa.Column("player_address", sa.String(length=64), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "archived_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        schema=schema,
    )
    op.create_table(
        "leaderboard_standings",
        sa.Column("game_type", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("rank", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("player_address", sa.String(length=64), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("game_type", "period", "rank"),
        schema=schema,
    )
    op.create_table(
        "daily_course_analytics",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "course_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("active_students", sa.Integer(), nullable=False),
        sa.Column("lessons_completed", sa.Integer(), nullable=False),
        sa.Column("enrollments", sa.Integer(), nullable=False),
        sa.Column("completions", sa.Integer(), nullable=False),
        sa.Column("completion_rate", sa.Float(), nullable=True),
        sa.Column("avg_quiz_score", sa.Float(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "course_id"),
        schema=schema,
    )
    op.create_table(
        "daily_student_analytics",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "user_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("courses_active", sa.Integer(), nullable=False),
        sa.Column("lessons_completed", sa.Integer(), nullable=False),
        sa.Column("quizzes_taken", sa.Integer(), nullable=False),
        sa.Column("avg_quiz_score", sa.Float(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_id"),
        schema=schema,
    )
    op.create_table(
        "analytics_reports",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("period_key", sa.String(length=32), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("chart_key", sa.String(length=500), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "period_key"),
        schema=schema,
    )
    op.create_table(
        "hourly_platform_metrics",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signups", sa.Integer(), nullable=False),
        sa.Column("active_sessions", sa.Integer(), nullable=False),
        sa.Column("payments_succeeded", sa.Integer(), nullable=False),
        sa.Column("payments_failed", sa.Integer(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.Column("email_queue_depth", sa.Integer(), nullable=False),
        sa.Column("realtime_outbox_depth", sa.Integer(), nullable=False),
        sa.Column("job_failures", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hour"),
        schema=schema,
    )


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
    for table in reversed(TABLES):
        op.drop_table(table, schema=state_schema())
