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
    DateTime,
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

from ops_platform.db.engine import STATE

metadata = MetaData()

# --- tables the project owns ------------------------------------------------------------
# In the project's own namespace (`STATE`, translated per engine to the configured Postgres
# schema or attached SQLite file), created by the Alembic revisions, never among the app's.
state_metadata = MetaData(schema=STATE)

# BIGINT ids on Postgres; SQLite needs INTEGER PRIMARY KEY for its rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")
Ts = DateTime(timezone=True)


def _id() -> Column:
    return Column("id", Id, primary_key=True, autoincrement=True)


def _created_at() -> Column:
    return Column("created_at", Ts, nullable=False, server_default=text("CURRENT_TIMESTAMP"))


# --- identity and auth -------------------------------------------------------------
users = Table(
    "users",
    metadata,
    _id(),
    Column("email", String(320), nullable=False),
    _created_at(),
    Column("email_verified_at", Ts),
    Column("trust_score", Float, nullable=False, server_default=text("50")),
    Column("trust_score_updated_at", Ts),
    Column("coin_balance", BigInteger, nullable=False, server_default=text("0")),
    Column("bonus_balance", BigInteger, nullable=False, server_default=text("0")),
    Column("og_level", Integer, nullable=False, server_default=text("0")),
    Column("og_tier_id", Id),
    Column("og_expires_at", Ts),
    Index("ix_users_email", "email"),
    Index(
        "ix_users_unverified",
        "created_at",
        postgresql_where=text("email_verified_at IS NULL"),
        sqlite_where=text("email_verified_at IS NULL"),
    ),
    Index("ix_users_og", "og_level", "og_expires_at"),
)

sessions = Table(
    "sessions",
    metadata,
    _id(),
    Column("user_id", Id),
    Column("kind", String(16), nullable=False, server_default=text("'user'")),
    _created_at(),
    Column("last_seen_at", Ts),
    Column("expires_at", Ts),
    Column("revoked_at", Ts),
    Index("ix_sessions_expires_at", "expires_at"),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_revoked_at", "revoked_at"),
    Index("ix_sessions_kind_last_seen", "kind", "last_seen_at"),
)


def _token_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        _id(),
        Column("user_id", Id),
        Column("token_hash", String(128), nullable=False),
        _created_at(),
        Column("expires_at", Ts),
        Index(f"ix_{name}_expires_at", "expires_at"),
        Index(f"ix_{name}_user_id", "user_id"),
    )


refresh_tokens = _token_table("refresh_tokens")
email_verification_tokens = _token_table("email_verification_tokens")
password_reset_tokens = _token_table("password_reset_tokens")

secrets = Table(
    "secrets",
    metadata,
    _id(),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("value_ciphertext", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default=text("'active'")),
    _created_at(),
    Column("expires_at", Ts),
    Column("rotated_at", Ts),
    UniqueConstraint("name", "version", name="uq_secrets_name_version"),
    Index("ix_secrets_status_expires", "status", "expires_at"),
)

# --- coins and OG tiers ---------------------------------------------------------------
og_tiers = Table(
    "og_tiers",
    metadata,
    _id(),
    Column("level", Integer, nullable=False),
    Column("price_coins", BigInteger, nullable=False),
    Column("duration_days", Integer, nullable=False),
)

coin_transactions = Table(
    "coin_transactions",
    metadata,
    _id(),
    Column("user_id", Id, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance", String(8), nullable=False, server_default=text("'coin'")),
    Column("idempotency_key", String(200), nullable=False),
    _created_at(),
    UniqueConstraint("idempotency_key", name="uq_coin_transactions_idempotency_key"),
    Index("ix_coin_transactions_user_id", "user_id"),
    Index("ix_coin_transactions_kind_created", "kind", "created_at"),
)

# --- payments -------------------------------------------------------------------------
payments = Table(
    "payments",
    metadata,
    _id(),
    Column("provider_ref", String(128), nullable=False),
    Column("user_id", Id),
    Column("amount_cents", BigInteger, nullable=False, server_default=text("0")),
    Column("currency", String(8), nullable=False, server_default=text("'USD'")),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    _created_at(),
    Column("check_count", Integer, nullable=False, server_default=text("0")),
    Column("next_check_at", Ts),
    Column("last_checked_at", Ts),
    Column("settled_at", Ts),
    Index("ix_payments_provider_ref", "provider_ref"),
    Index("ix_payments_status_next_check", "status", "next_check_at"),
    Index("ix_payments_user_id", "user_id"),
)

# --- projects (agency portal) ---------------------------------------------------------
projects = Table("projects", metadata, _id(), Column("name", String(200), nullable=False))

project_team = Table(
    "project_team",
    metadata,
    _id(),
    Column("project_id", Id, nullable=False),
    Column("user_id", Id, nullable=False),
    Column("is_primary_contact", Boolean, nullable=False, server_default=text("false")),
    Column("removed_at", Ts),
    Index("ix_project_team_project_id", "project_id"),
    Index("ix_project_team_removed_at", "removed_at"),
)

project_payment_status = Table(
    "project_payment_status",
    metadata,
    Column("project_id", Id, primary_key=True, autoincrement=False),
    Column("advance_paid", Boolean, nullable=False, server_default=text("false")),
    Column("advance_paid_at", Ts),
    Column("balance_paid", Boolean, nullable=False, server_default=text("false")),
)

payment_reminders = Table(
    "payment_reminders",
    metadata,
    _id(),
    Column("project_id", Id, nullable=False),
    Column("kind", String(32), nullable=False, server_default=text("'BALANCE_DUE'")),
    Column("status", String(16), nullable=False, server_default=text("'PENDING'")),
    Column("recipient_email", String(320)),
    Column("scheduled_for", Ts),
    Column("sent_at", Ts),
    Index("ix_payment_reminders_project_id", "project_id"),
)

deliverables = Table(
    "deliverables",
    metadata,
    _id(),
    Column("project_id", Id),
    Column("delivered_at", Ts),
    Column("expires_at", Ts),
    Column("status", String(16), nullable=False, server_default=text("'delivered'")),
    Index("ix_deliverables_status_expires", "status", "expires_at"),
)

# --- notifications and the email queue ------------------------------------------------
notifications = Table(
    "notifications",
    metadata,
    _id(),
    Column("user_id", Id),
    Column("title", String(300), nullable=False),
    Column("body", Text),
    _created_at(),
    Index("ix_notifications_user_id", "user_id"),
)

notification_email_queue = Table(
    "notification_email_queue",
    metadata,
    _id(),
    Column("user_id", Id),
    Column("notification_ids", JSON),
    Column("scheduled_for", Ts),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("claimed_at", Ts),
    Column("sent_at", Ts),
    Column("error_message", Text),
    Index("ix_email_queue_status_scheduled", "status", "scheduled_for"),
)

realtime_events = Table(
    "realtime_events",
    metadata,
    _id(),
    Column("channel", String(200), nullable=False),
    Column("event", String(100), nullable=False),
    Column("payload", JSON),
    _created_at(),
    Column("published_at", Ts),
    Index(
        "ix_realtime_events_unpublished",
        "id",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
)

# --- streaming (engagement) -----------------------------------------------------------
streams = Table(
    "streams",
    metadata,
    _id(),
    Column("owner_id", Id),
    Column("title", String(300)),
    Column("is_live", Boolean, nullable=False, server_default=text("false")),
    Column("started_at", Ts),
    Column("ended_at", Ts),
    Index("ix_streams_live", "is_live", "ended_at"),
)

stream_events = Table(
    "stream_events",
    metadata,
    _id(),
    Column("stream_id", Id, nullable=False),
    Column("user_id", Id),
    Column("kind", String(16), nullable=False),
    Column("value", Float, nullable=False, server_default=text("1")),
    _created_at(),
    Index("ix_stream_events_created_at", "created_at"),
    Index("ix_stream_events_stream_id", "stream_id"),
)

stream_rankings = Table(
    "stream_rankings",
    metadata,
    Column("stream_id", Id, primary_key=True, autoincrement=False),
    Column("score", Float, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("computed_at", Ts, nullable=False),
)

reputation_events = Table(
    "reputation_events",
    metadata,
    _id(),
    Column("user_id", Id, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("weight", Float, nullable=False, server_default=text("1")),
    _created_at(),
    Index("ix_reputation_events_user_id", "user_id"),
    Index("ix_reputation_events_created_at", "created_at"),
)

thrones = Table(
    "thrones",
    metadata,
    _id(),
    Column("stream_id", Id),
    Column("holder_id", Id),
    Column("total_coins", BigInteger, nullable=False, server_default=text("0")),
    Column("started_at", Ts),
    Column("expires_at", Ts),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Index("ix_thrones_active_expires", "is_active", "expires_at"),
)

festivals = Table(
    "festivals",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("theme", String(100)),
    Column("start_at", Ts),
    Column("end_at", Ts),
    Column("is_active", Boolean, nullable=False, server_default=text("false")),
    Index("ix_festivals_window", "start_at", "end_at"),
)

gifts = Table(
    "gifts",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("price_coins", BigInteger, nullable=False, server_default=text("0")),
    Column("festival_id", Id),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Index("ix_gifts_festival_id", "festival_id"),
)

# Small key/value state the web app reads (e.g. the active festival theme).
app_state = Table(
    "app_state",
    state_metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text),
    Column("updated_at", Ts),
)

# --- arcade (games) -------------------------------------------------------------------
GAME_TYPES = ("snake", "tetris", "pong", "breakout", "space_invaders")

game_sessions = Table(
    "game_sessions",
    metadata,
    _id(),
    Column("game_type", String(32), nullable=False),
    Column("player_address", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default=text("'active'")),
    Column("started_at", Ts),
    Column("ended_at", Ts),
    Index("ix_game_sessions_status_started", "status", "started_at"),
)

leaderboard_entries = Table(
    "leaderboard_entries",
    metadata,
    _id(),
    Column("session_id", Id),
    Column("game_type", String(32), nullable=False),
    Column("player_address", String(64), nullable=False),
    Column("score", BigInteger, nullable=False),
    _created_at(),
    Index("ix_leaderboard_entries_game_created", "game_type", "created_at"),
    Index("ix_leaderboard_entries_session_id", "session_id"),
    Index("ix_leaderboard_entries_created_at", "created_at"),
)

# Entries older than the archive age move here (game_cleanup).
leaderboard_entries_archive = Table(
    "leaderboard_entries_archive",
    state_metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("session_id", Id),
    Column("game_type", String(32), nullable=False),
    Column("player_address", String(64), nullable=False),
    Column("score", BigInteger, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("archived_at", Ts, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
)

# Standings per game type × period, written by the `leaderboards` asset.
leaderboard_standings = Table(
    "leaderboard_standings",
    state_metadata,
    Column("game_type", String(32), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("rank", Integer, primary_key=True, autoincrement=False),
    Column("player_address", String(64), nullable=False),
    Column("score", BigInteger, nullable=False),
    Column("period_start", Date),
    Column("computed_at", Ts, nullable=False),
)

prize_pools = Table(
    "prize_pools",
    metadata,
    _id(),
    Column("game_type", String(32), nullable=False),
    Column("period", String(16), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("total_amount", Numeric(20, 6), nullable=False, server_default=text("0")),
    Column("status", String(16), nullable=False, server_default=text("'open'")),
    Column("winner_address", String(64)),
    Column("winning_score", BigInteger),
    Column("finalized_at", Ts),
    UniqueConstraint(
        "game_type", "period", "period_start", name="uq_prize_pools_game_period_start"
    ),
)

# --- learning (analytics) -------------------------------------------------------------
courses = Table("courses", metadata, _id(), Column("title", String(300), nullable=False))

enrollments = Table(
    "enrollments",
    metadata,
    _id(),
    Column("course_id", Id, nullable=False),
    Column("user_id", Id, nullable=False),
    Column("enrolled_at", Ts),
    Column("completed_at", Ts),
    Index("ix_enrollments_course_id", "course_id"),
    Index("ix_enrollments_user_id", "user_id"),
)

learning_events = Table(
    "learning_events",
    metadata,
    _id(),
    Column("user_id", Id, nullable=False),
    Column("course_id", Id),
    Column("kind", String(32), nullable=False),
    Column("score", Float),
    _created_at(),
    Index("ix_learning_events_created_at", "created_at"),
)

# --- files ----------------------------------------------------------------------------
stored_files = Table(
    "stored_files",
    metadata,
    _id(),
    Column("s3_key", String(1024), nullable=False),
    Column("owner_id", Id),
    _created_at(),
    Index("ix_stored_files_s3_key", "s3_key"),
)

# --- security -------------------------------------------------------------------------
webhook_events = Table(
    "webhook_events",
    metadata,
    _id(),
    Column("provider", String(64)),
    Column("source_ip", String(64)),
    Column("event_id", String(200)),
    Column("signature_valid", Boolean, nullable=False, server_default=text("true")),
    Column("received_at", Ts, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Index("ix_webhook_events_received_at", "received_at"),
)

security_alerts = Table(
    "security_alerts",
    metadata,
    _id(),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("details", JSON),
    _created_at(),
)

# --- analytics outputs (written by the analytics assets) -------------------------------
daily_course_analytics = Table(
    "daily_course_analytics",
    state_metadata,
    Column("day", Date, primary_key=True),
    Column("course_id", Id, primary_key=True, autoincrement=False),
    Column("active_students", Integer, nullable=False),
    Column("lessons_completed", Integer, nullable=False),
    Column("enrollments", Integer, nullable=False),
    Column("completions", Integer, nullable=False),
    Column("completion_rate", Float),
    Column("avg_quiz_score", Float),
    Column("computed_at", Ts, nullable=False),
)

daily_student_analytics = Table(
    "daily_student_analytics",
    state_metadata,
    Column("day", Date, primary_key=True),
    Column("user_id", Id, primary_key=True, autoincrement=False),
    Column("courses_active", Integer, nullable=False),
    Column("lessons_completed", Integer, nullable=False),
    Column("quizzes_taken", Integer, nullable=False),
    Column("avg_quiz_score", Float),
    Column("computed_at", Ts, nullable=False),
)

analytics_reports = Table(
    "analytics_reports",
    state_metadata,
    Column("kind", String(32), primary_key=True),
    Column("period_key", String(32), primary_key=True),
    Column("markdown", Text, nullable=False),
    Column("chart_key", String(500)),
    Column("metrics", JSON),
    Column("created_at", Ts, nullable=False),
)

hourly_platform_metrics = Table(
    "hourly_platform_metrics",
    state_metadata,
    Column("hour", Ts, primary_key=True),
    Column("signups", Integer, nullable=False),
    Column("active_sessions", Integer, nullable=False),
    Column("payments_succeeded", Integer, nullable=False),
    Column("payments_failed", Integer, nullable=False),
    Column("revenue_cents", BigInteger, nullable=False),
    Column("email_queue_depth", Integer, nullable=False),
    Column("realtime_outbox_depth", Integer, nullable=False),
    Column("job_failures", Integer, nullable=False),
    Column("computed_at", Ts, nullable=False),
)

# Lease-based singleton lock used on SQLite (Postgres uses advisory locks).
job_locks = Table(
    "job_locks",
    state_metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", Ts, nullable=False),
    Column("expires_at", Ts, nullable=False),
)

# One row per replay of dead items (`ops-platform dead replay`, job replay_dead_items):
# who asked, when, which queue, how many, which ids.
dead_item_replays = Table(
    "dead_item_replays",
    state_metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("queue", String(16), nullable=False),
    Column("requested", Integer, nullable=False),
    Column("replayed", Integer, nullable=False),
    Column("item_ids", Text, nullable=False),  # JSON list of the ids put back
    Column("requested_by", String(200), nullable=False),
    Column("replayed_at", Ts, nullable=False),
    Column("run_id", String(64)),  # the Dagster run, when replayed by the job
    Index("ix_dead_item_replays_replayed_at", "replayed_at"),
)

# Maintenance windows (`ops-platform pause`/`resume`, job `maintenance_window`): while one is
# active, the schedules and sensors of its groups skip their ticks. `groups` is a
# comma-separated list, or `*` for every group; `ended_at` is set by `resume`.
maintenance_windows = Table(
    "maintenance_windows",
    state_metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("groups", String(300), nullable=False),
    Column("starts_at", Ts, nullable=False),
    Column("ends_at", Ts, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("ended_at", Ts),
    Column("ended_by", String(200)),
    Index("ix_maintenance_windows_ends_at", "ends_at"),
)

# --- the jobs' own state about app rows, keyed by the app row's id -----------------------
# email_queue: when a failed batch may be tried again (exponential backoff) and the
# Message-ID it was sent with.
email_deliveries = Table(
    "email_deliveries",
    state_metadata,
    Column("queue_id", Id, primary_key=True, autoincrement=False),
    Column("next_attempt_at", Ts),
    Column("message_id", String(300)),
    Column("updated_at", Ts, nullable=False),
    Index("ix_email_deliveries_next_attempt", "next_attempt_at"),
)

# overdue_payment_reminders: the UTC day each reminder is for (one per project, kind and
# day) and the error of a failed send.
payment_reminder_days = Table(
    "payment_reminder_days",
    state_metadata,
    Column("reminder_id", Id, primary_key=True, autoincrement=False),
    Column("project_id", Id, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reminder_date", Date, nullable=False),
    Column("error_message", Text),
    UniqueConstraint(
        "project_id", "kind", "reminder_date", name="uq_payment_reminder_days_project_kind_day"
    ),
)

# payment_status_check / payment_status_sweep: the last provider error of a payment.
payment_check_errors = Table(
    "payment_check_errors",
    state_metadata,
    Column("payment_id", Id, primary_key=True, autoincrement=False),
    Column("last_error", Text, nullable=False),
    Column("checked_at", Ts, nullable=False),
)

# secret_rotation: when a retiring version stops being accepted (end of its grace period).
secret_retirements = Table(
    "secret_retirements",
    state_metadata,
    Column("secret_id", Id, primary_key=True, autoincrement=False),
    Column("retire_after", Ts, nullable=False),
)

# webhook_security_monitor: the stable identity of an ongoing finding, so it is not
# re-raised every window, and when it was last seen.
security_alert_fingerprints = Table(
    "security_alert_fingerprints",
    state_metadata,
    Column("alert_id", Id, primary_key=True, autoincrement=False),
    Column("fingerprint", String(300), nullable=False),
    Column("last_seen_at", Ts, nullable=False),
    Index("ix_security_alert_fingerprints_fingerprint", "fingerprint"),
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
