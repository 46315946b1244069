"""The app database contract as SQLAlchemy Core tables.

Table and column names are fixed: the web app and outside tests use them. Columns added
beyond the contract are nullable or have a default, so a row inserted with only the
contract's columns is valid. Times are UTC (`timestamptz` on Postgres).

There are no foreign-key constraints: the web app owns referential integrity, and some
jobs exist precisely to clean up rows whose parent is gone (orphaned leaderboard entries,
unreferenced files). Every reference column is indexed instead.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from ops_platform.db.columns import (
    Id,
    Ts,
    created_at,
    optional,
    required,
    row_key,
    serial_id,
    with_default,
)
from ops_platform.db.engine import STATE

metadata = MetaData()

# --- tables the project owns ------------------------------------------------------------
# In the project's own namespace (`STATE`, translated per engine to the configured Postgres
# schema or attached SQLite file), created by the Alembic revisions, never among the app's.
state_metadata = MetaData(schema=STATE)


def _app_table(name: str, *columns: Column | Index | UniqueConstraint) -> Table:
    """An app table with its generated `id` first."""
    return Table(name, metadata, serial_id(), *columns)


def _indexes(table: str, *columns: str) -> list[Index]:
    """One index per column, named `ix_<table>_<column>`."""
    return [Index(f"ix_{table}_{column}", column) for column in columns]


def _where_null(name: str, column: str, null_column: str) -> Index:
    """A partial index over the rows whose `null_column` is still NULL."""
    where = text(f"{null_column} IS NULL")
    return Index(name, column, postgresql_where=where, sqlite_where=where)


# --- identity and auth -------------------------------------------------------------
users = _app_table(
    "users",
    Column("email", String(320), nullable=False),
    created_at(),
    Column("email_verified_at", Ts),
    with_default("trust_score", Float, "50"),
    Column("trust_score_updated_at", Ts),
    with_default("coin_balance", BigInteger, "0"),
    with_default("bonus_balance", BigInteger, "0"),
    with_default("og_level", Integer, "0"),
    *optional(og_tier_id=Id, og_expires_at=Ts),
    *_indexes("users", "email"),
    _where_null("ix_users_unverified", "created_at", "email_verified_at"),
    Index("ix_users_og", "og_level", "og_expires_at"),
)

sessions = _app_table(
    "sessions",
    Column("user_id", Id),
    with_default("kind", String(16), "'user'"),
    created_at(),
    *optional(last_seen_at=Ts, expires_at=Ts, revoked_at=Ts),
    *_indexes("sessions", "expires_at", "user_id", "revoked_at"),
    Index("ix_sessions_kind_last_seen", "kind", "last_seen_at"),
)


def _token_table(name: str) -> Table:
    return _app_table(
        name,
        Column("user_id", Id),
        Column("token_hash", String(128), nullable=False),
        created_at(),
        Column("expires_at", Ts),
        *_indexes(name, "expires_at", "user_id"),
    )


refresh_tokens = _token_table("refresh_tokens")
email_verification_tokens = _token_table("email_verification_tokens")
password_reset_tokens = _token_table("password_reset_tokens")

secrets = _app_table(
    "secrets",
    Column("name", String(128), nullable=False),
    with_default("version", Integer, "1"),
    Column("value_ciphertext", Text, nullable=False),
    with_default("status", String(16), "'active'"),
    created_at(),
    *optional(expires_at=Ts, rotated_at=Ts),
    UniqueConstraint("name", "version", name="uq_secrets_name_version"),
    Index("ix_secrets_status_expires", "status", "expires_at"),
)

# --- coins and OG tiers ---------------------------------------------------------------
og_tiers = _app_table(
    "og_tiers", *required(level=Integer, price_coins=BigInteger, duration_days=Integer)
)

coin_transactions = _app_table(
    "coin_transactions",
    *required(user_id=Id, kind=String(32), amount=BigInteger),
    with_default("balance", String(8), "'coin'"),
    Column("idempotency_key", String(200), nullable=False),
    created_at(),
    UniqueConstraint("idempotency_key", name="uq_coin_transactions_idempotency_key"),
    *_indexes("coin_transactions", "user_id"),
    Index("ix_coin_transactions_kind_created", "kind", "created_at"),
)

# --- payments -------------------------------------------------------------------------
payments = _app_table(
    "payments",
    Column("provider_ref", String(128), nullable=False),
    Column("user_id", Id),
    with_default("amount_cents", BigInteger, "0"),
    with_default("currency", String(8), "'USD'"),
    with_default("status", String(16), "'pending'"),
    created_at(),
    with_default("check_count", Integer, "0"),
    *optional(next_check_at=Ts, last_checked_at=Ts, settled_at=Ts),
    *_indexes("payments", "provider_ref", "user_id"),
    Index("ix_payments_status_next_check", "status", "next_check_at"),
)

# --- projects (agency portal) ---------------------------------------------------------
projects = _app_table("projects", Column("name", String(200), nullable=False))

project_team = _app_table(
    "project_team",
    *required(project_id=Id, user_id=Id),
    with_default("is_primary_contact", Boolean, "false"),
    Column("removed_at", Ts),
    *_indexes("project_team", "project_id", "removed_at"),
)

project_payment_status = Table(
    "project_payment_status",
    metadata,
    row_key("project_id"),
    with_default("advance_paid", Boolean, "false"),
    Column("advance_paid_at", Ts),
    with_default("balance_paid", Boolean, "false"),
)

payment_reminders = _app_table(
    "payment_reminders",
    Column("project_id", Id, nullable=False),
    with_default("kind", String(32), "'BALANCE_DUE'"),
    with_default("status", String(16), "'PENDING'"),
    *optional(recipient_email=String(320), scheduled_for=Ts, sent_at=Ts),
    *_indexes("payment_reminders", "project_id"),
)

deliverables = _app_table(
    "deliverables",
    Column("project_id", Id),
    *optional(delivered_at=Ts, expires_at=Ts),
    with_default("status", String(16), "'delivered'"),
    Index("ix_deliverables_status_expires", "status", "expires_at"),
)

# --- notifications and the email queue ------------------------------------------------
notifications = _app_table(
    "notifications",
    Column("user_id", Id),
    Column("title", String(300), nullable=False),
    Column("body", Text),
    created_at(),
    *_indexes("notifications", "user_id"),
)

notification_email_queue = _app_table(
    "notification_email_queue",
    *optional(user_id=Id, notification_ids=JSON, scheduled_for=Ts),
    with_default("status", String(16), "'pending'"),
    with_default("attempts", Integer, "0"),
    *optional(claimed_at=Ts, sent_at=Ts, error_message=Text),
    Index("ix_email_queue_status_scheduled", "status", "scheduled_for"),
)

realtime_events = _app_table(
    "realtime_events",
    *required(channel=String(200), event=String(100)),
    Column("payload", JSON),
    created_at(),
    Column("published_at", Ts),
    _where_null("ix_realtime_events_unpublished", "id", "published_at"),
)

# --- streaming (engagement) -----------------------------------------------------------
streams = _app_table(
    "streams",
    *optional(owner_id=Id, title=String(300)),
    with_default("is_live", Boolean, "false"),
    *optional(started_at=Ts, ended_at=Ts),
    Index("ix_streams_live", "is_live", "ended_at"),
)

stream_events = _app_table(
    "stream_events",
    Column("stream_id", Id, nullable=False),
    Column("user_id", Id),
    Column("kind", String(16), nullable=False),
    with_default("value", Float, "1"),
    created_at(),
    *_indexes("stream_events", "created_at", "stream_id"),
)

stream_rankings = Table(
    "stream_rankings",
    metadata,
    row_key("stream_id"),
    *required(score=Float, rank=Integer, computed_at=Ts),
)

reputation_events = _app_table(
    "reputation_events",
    *required(user_id=Id, kind=String(32)),
    with_default("weight", Float, "1"),
    created_at(),
    *_indexes("reputation_events", "user_id", "created_at"),
)

thrones = _app_table(
    "thrones",
    *optional(stream_id=Id, holder_id=Id),
    with_default("total_coins", BigInteger, "0"),
    *optional(started_at=Ts, expires_at=Ts),
    with_default("is_active", Boolean, "true"),
    Index("ix_thrones_active_expires", "is_active", "expires_at"),
)

festivals = _app_table(
    "festivals",
    Column("name", String(200), nullable=False),
    *optional(theme=String(100), start_at=Ts, end_at=Ts),
    with_default("is_active", Boolean, "false"),
    Index("ix_festivals_window", "start_at", "end_at"),
)

gifts = _app_table(
    "gifts",
    Column("name", String(200), nullable=False),
    with_default("price_coins", BigInteger, "0"),
    Column("festival_id", Id),
    with_default("is_active", Boolean, "true"),
    *_indexes("gifts", "festival_id"),
)

# Small key/value state the web app reads (e.g. the active festival theme).
app_state = Table(
    "app_state",
    state_metadata,
    Column("key", String(100), primary_key=True),
    *optional(value=Text, updated_at=Ts),
)

# --- arcade (games) -------------------------------------------------------------------
GAME_TYPES = ("snake", "tetris", "pong", "breakout", "space_invaders")

game_sessions = _app_table(
    "game_sessions",
    *required(game_type=String(32), player_address=String(64)),
    with_default("status", String(16), "'active'"),
    *optional(started_at=Ts, ended_at=Ts),
    Index("ix_game_sessions_status_started", "status", "started_at"),
)

leaderboard_entries = _app_table(
    "leaderboard_entries",
    *optional(session_id=Id),
    *required(game_type=String(32), player_address=String(64), score=BigInteger),
    created_at(),
    Index("ix_leaderboard_entries_game_created", "game_type", "created_at"),
    *_indexes("leaderboard_entries", "session_id", "created_at"),
)

# Entries older than the archive age move here (game_cleanup).
leaderboard_entries_archive = Table(
    "leaderboard_entries_archive",
    state_metadata,
    row_key("id"),
    Column("session_id", Id),
    *required(game_type=String(32), player_address=String(64), score=BigInteger),
    Column("created_at", Ts, nullable=False),
    with_default("archived_at", Ts, "CURRENT_TIMESTAMP"),
)

# Standings per game type × period, written by the `leaderboards` asset.
leaderboard_standings = Table(
    "leaderboard_standings",
    state_metadata,
    Column("game_type", String(32), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("rank", Integer, primary_key=True, autoincrement=False),
    *required(player_address=String(64), score=BigInteger),
    Column("period_start", Date),
    Column("computed_at", Ts, nullable=False),
)

prize_pools = _app_table(
    "prize_pools",
    *required(game_type=String(32), period=String(16), period_start=Date),
    with_default("total_amount", Numeric(20, 6), "0"),
    with_default("status", String(16), "'open'"),
    *optional(winner_address=String(64), winning_score=BigInteger, finalized_at=Ts),
    UniqueConstraint(
        "game_type", "period", "period_start", name="uq_prize_pools_game_period_start"
    ),
)

# --- learning (analytics) -------------------------------------------------------------
courses = _app_table("courses", Column("title", String(300), nullable=False))

enrollments = _app_table(
    "enrollments",
    *required(course_id=Id, user_id=Id),
    *optional(enrolled_at=Ts, completed_at=Ts),
    *_indexes("enrollments", "course_id", "user_id"),
)

learning_events = _app_table(
    "learning_events",
    *required(user_id=Id),
    Column("course_id", Id),
    *required(kind=String(32)),
    Column("score", Float),
    created_at(),
    *_indexes("learning_events", "created_at"),
)

# --- files ----------------------------------------------------------------------------
stored_files = _app_table(
    "stored_files",
    Column("s3_key", String(1024), nullable=False),
    Column("owner_id", Id),
    created_at(),
    *_indexes("stored_files", "s3_key"),
)

# --- security -------------------------------------------------------------------------
webhook_events = _app_table(
    "webhook_events",
    *optional(provider=String(64), source_ip=String(64), event_id=String(200)),
    with_default("signature_valid", Boolean, "true"),
    with_default("received_at", Ts, "CURRENT_TIMESTAMP"),
    *_indexes("webhook_events", "received_at"),
)

security_alerts = _app_table(
    "security_alerts",
    *required(kind=String(64), severity=String(16)),
    Column("details", JSON),
    created_at(),
)

# --- analytics outputs (written by the analytics assets) -------------------------------
daily_course_analytics = Table(
    "daily_course_analytics",
    state_metadata,
    Column("day", Date, primary_key=True),
    row_key("course_id"),
    *required(active_students=Integer, lessons_completed=Integer),
    *required(enrollments=Integer, completions=Integer),
    *optional(completion_rate=Float, avg_quiz_score=Float),
    Column("computed_at", Ts, nullable=False),
)

daily_student_analytics = Table(
    "daily_student_analytics",
    state_metadata,
    Column("day", Date, primary_key=True),
    row_key("user_id"),
    *required(courses_active=Integer, lessons_completed=Integer, quizzes_taken=Integer),
    Column("avg_quiz_score", Float),
    Column("computed_at", Ts, nullable=False),
)

analytics_reports = Table(
    "analytics_reports",
    state_metadata,
    Column("kind", String(32), primary_key=True),
    Column("period_key", String(32), primary_key=True),
    Column("markdown", Text, nullable=False),
    *optional(chart_key=String(500), metrics=JSON),
    Column("created_at", Ts, nullable=False),
)

hourly_platform_metrics = Table(
    "hourly_platform_metrics",
    state_metadata,
    Column("hour", Ts, primary_key=True),
    *required(signups=Integer, active_sessions=Integer),
    *required(payments_succeeded=Integer, payments_failed=Integer, revenue_cents=BigInteger),
    *required(email_queue_depth=Integer, realtime_outbox_depth=Integer, job_failures=Integer),
    Column("computed_at", Ts, nullable=False),
)

# Lease-based singleton lock used on SQLite (Postgres uses advisory locks).
job_locks = Table(
    "job_locks",
    state_metadata,
    Column("name", String(200), primary_key=True),
    *required(holder=String(200), acquired_at=Ts, expires_at=Ts),
)

# One row per replay of dead items (`ops-platform dead replay`, job replay_dead_items):
# who asked, when, which queue, how many, which ids.
dead_item_replays = Table(
    "dead_item_replays",
    state_metadata,
    serial_id(),
    *required(queue=String(16), requested=Integer, replayed=Integer),
    Column("item_ids", Text, nullable=False),  # JSON list of the ids put back
    *required(requested_by=String(200), replayed_at=Ts),
    Column("run_id", String(64)),  # the Dagster run, when replayed by the job
    *_indexes("dead_item_replays", "replayed_at"),
)

# Maintenance windows (`ops-platform pause`/`resume`, job `maintenance_window`): while one is
# active, the schedules and sensors of its groups skip their ticks. `groups` is a
# comma-separated list, or `*` for every group; `ended_at` is set by `resume`.
maintenance_windows = Table(
    "maintenance_windows",
    state_metadata,
    serial_id(),
    *required(created_by=String(200), reason=Text, groups=String(300)),
    *required(starts_at=Ts, ends_at=Ts, created_at=Ts),
    *optional(ended_at=Ts, ended_by=String(200)),
    *_indexes("maintenance_windows", "ends_at"),
)

# --- the jobs' own state about app rows, keyed by the app row's id -----------------------
# email_queue: when a failed batch may be tried again (exponential backoff) and the
# Message-ID it was sent with.
email_deliveries = Table(
    "email_deliveries",
    state_metadata,
    row_key("queue_id"),
    *optional(next_attempt_at=Ts, message_id=String(300)),
    Column("updated_at", Ts, nullable=False),
    Index("ix_email_deliveries_next_attempt", "next_attempt_at"),
)

# overdue_payment_reminders: the UTC day each reminder is for (one per project, kind and
# day) and the error of a failed send.
payment_reminder_days = Table(
    "payment_reminder_days",
    state_metadata,
    row_key("reminder_id"),
    *required(project_id=Id, kind=String(32), reminder_date=Date),
    Column("error_message", Text),
    UniqueConstraint(
        "project_id", "kind", "reminder_date", name="uq_payment_reminder_days_project_kind_day"
    ),
)

# payment_status_check / payment_status_sweep: the last provider error of a payment.
payment_check_errors = Table(
    "payment_check_errors",
    state_metadata,
    row_key("payment_id"),
    *required(last_error=Text, checked_at=Ts),
)

# secret_rotation: when a retiring version stops being accepted (end of its grace period).
secret_retirements = Table(
    "secret_retirements", state_metadata, row_key("secret_id"), *required(retire_after=Ts)
)

# webhook_security_monitor: the stable identity of an ongoing finding, so it is not
# re-raised every window, and when it was last seen.
security_alert_fingerprints = Table(
    "security_alert_fingerprints",
    state_metadata,
    row_key("alert_id"),
    *required(fingerprint=String(300), last_seen_at=Ts),
    *_indexes("security_alert_fingerprints", "fingerprint"),
)


def find_table(name: str) -> Table:
    """The app's or the project's table called `name`."""
    if name in metadata.tables:
        return metadata.tables[name]
    return state_metadata.tables[f"{STATE}.{name}"]


CONTRACT_TABLES = (
    "users",
    "sessions",
    "refresh_tokens",
    "email_verification_tokens",
    "password_reset_tokens",
    "secrets",
    "og_tiers",
    "coin_transactions",
    "payments",
    "projects",
    "project_team",
    "project_payment_status",
    "payment_reminders",
    "deliverables",
    "notifications",
    "notification_email_queue",
    "realtime_events",
    "streams",
    "stream_events",
    "stream_rankings",
    "reputation_events",
    "thrones",
    "festivals",
    "gifts",
    "game_sessions",
    "leaderboard_entries",
    "prize_pools",
    "courses",
    "enrollments",
    "learning_events",
    "stored_files",
    "webhook_events",
    "security_alerts",
)
