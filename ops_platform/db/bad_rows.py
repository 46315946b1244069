"""Malformed app rows, counted by kind: one set-based query per table.

The app may hold rows no rule can act on: NULL where a rule needs a time, negative prices,
amounts or durations, JSON that is not the shape a job reads, absurdly large values. Every
job's own SQL already leaves such rows alone (`expires_at < :now` does not match NULL, a tier
with `duration_days <= 0` pays nothing); this module only counts them, so each job and asset
reports them in its metadata (`bad_rows`, `bad_rows_total`) and a check warns when the count is
not zero. Counting never fails a run: a count that cannot be taken is logged and skipped.
"""

from collections.abc import Callable, Iterable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ops_platform.db.engine import is_postgres
from ops_platform.log_line import LogLine

# Bounds past which a value is taken as a typing or unit error rather than data.
ABSURD_COINS = 10**12
ABSURD_CENTS = 10**11  # one billion in money units
ABSURD_DAYS = 36_500
ABSURD_WEIGHT = 10**6
ABSURD_EVENT_VALUE = 10**9
ABSURD_SCORE = 10**15
ABSURD_LEARNING_SCORE = 10**6


def _json_not(postgres_types: str, sqlite_types: str, column: str) -> Callable[[Connection], str]:
    """Rows whose JSON `column` is not JSON (SQLite) or not of the JSON types listed (both
    databases); NULL is not counted. A Postgres json column cannot hold text that is not JSON."""

    def condition(connection: Connection) -> str:
        if is_postgres(connection):
            if not postgres_types:
                return "false"
            return f"json_typeof(CAST({column} AS json)) NOT IN ({postgres_types})"
        wrong_type = f" OR json_type({column}) NOT IN ({sqlite_types})" if sqlite_types else ""
        return f"{column} IS NOT NULL AND (json_valid({column}) = 0{wrong_type})"

    return condition


# table -> {kind: condition}; a condition is SQL or a function of the connection (dialect).
CHECKS: dict[str, dict[str, str | Callable[[Connection], str]]] = {
    "users": {
        "null_og_expires_at": "og_level > 0 AND og_expires_at IS NULL",
        "negative_coin_balance": "coin_balance < 0",
        "negative_bonus_balance": "bonus_balance < 0",
        "trust_score_out_of_range": "trust_score < 0 OR trust_score > 100",
    },
    "og_tiers": {
        "negative_price_coins": "price_coins < 0",
        "negative_duration_days": "duration_days < 0",
        "zero_duration_days": "duration_days = 0",
        "absurd_price_coins": f"price_coins > {ABSURD_COINS}",
        "absurd_duration_days": f"duration_days > {ABSURD_DAYS}",
    },
    "sessions": {"null_expires_at": "expires_at IS NULL"},
    "refresh_tokens": {"null_expires_at": "expires_at IS NULL"},
    "email_verification_tokens": {"null_expires_at": "expires_at IS NULL"},
    "password_reset_tokens": {"null_expires_at": "expires_at IS NULL"},
    "secrets": {"null_expires_at": "status = 'active' AND expires_at IS NULL"},
    "payments": {
        "negative_amount_cents": "amount_cents < 0",
        "absurd_amount_cents": f"amount_cents > {ABSURD_CENTS}",
        "negative_check_count": "check_count < 0",
    },
    "payment_reminders": {"null_scheduled_for": "status = 'PENDING' AND scheduled_for IS NULL"},
    "deliverables": {
        "null_expires_and_delivered_at": "expires_at IS NULL AND delivered_at IS NULL"
    },
    "notification_email_queue": {
        "null_scheduled_for": "status = 'pending' AND scheduled_for IS NULL",
        "negative_attempts": "attempts < 0",
        # A list of ids, or (as the app sometimes stores it) a JSON string holding one.
        "notification_ids_not_a_list": _json_not(
            "'array', 'string'", "'array', 'text'", "notification_ids"
        ),
    },
    # Any JSON value is published as it is; text that is not JSON cannot be.
    "realtime_events": {"payload_not_json": _json_not("", "", "payload")},
    "stream_events": {
        "negative_value": "value < 0",
        "absurd_value": f"value > {ABSURD_EVENT_VALUE}",
    },
    "reputation_events": {
        "absurd_weight": f"weight > {ABSURD_WEIGHT} OR weight < -{ABSURD_WEIGHT}"
    },
    "thrones": {
        "null_expires_at": "is_active = true AND expires_at IS NULL",
        "negative_total_coins": "total_coins < 0",
    },
    "festivals": {
        "null_start_or_end_at": "start_at IS NULL OR end_at IS NULL",
        "end_before_start": "end_at < start_at",
    },
    "gifts": {
        "negative_price_coins": "price_coins < 0",
        "absurd_price_coins": f"price_coins > {ABSURD_COINS}",
    },
    "game_sessions": {"null_started_at": "started_at IS NULL"},
    # A row with no key references no upload.
    "stored_files": {"no_s3_key": "s3_key IS NULL OR s3_key = ''"},
    "leaderboard_entries": {
        "null_score": "score IS NULL",
        "negative_score": "score < 0",
        "absurd_score": f"score > {ABSURD_SCORE}",
    },
    "learning_events": {
        "negative_score": "score < 0",
        "absurd_score": f"score > {ABSURD_LEARNING_SCORE}",
    },
    "enrollments": {"completed_before_enrolled": "completed_at < enrolled_at"},
    # A pool whose amount cannot be paid is left open for a person, never finalized.
    "prize_pools": {
        "negative_total_amount": "total_amount < 0",
        "absurd_total_amount": f"total_amount > {ABSURD_CENTS}",
    },
}

# The tables with checks that each job or asset reads.
JOB_TABLES: dict[str, tuple[str, ...]] = {
    "session_cleanup": ("sessions",),
    "token_cleanup": ("refresh_tokens", "email_verification_tokens", "password_reset_tokens"),
    # A negative balance is kept (it is not "holding no coins") and counted.
    "unverified_account_cleanup": ("users",),
    "secret_rotation": ("secrets",),
    "payment_status_sweep": ("payments",),
    "payment_status_check": ("payments",),
    "overdue_payment_reminders": ("payment_reminders",),
    "deliverable_expiry": ("deliverables",),
    "email_queue": ("notification_email_queue",),
    "realtime_publish": ("realtime_events",),
    "throne_expiry": ("thrones",),
    "festival_activation": ("festivals", "gifts"),
    "game_cleanup": ("game_sessions", "leaderboard_entries"),
    "orphaned_file_cleanup": ("stored_files",),
    "og_daily_bonus": ("users", "og_tiers"),
    "stream_rankings": ("stream_events",),
    "user_trust_scores": ("reputation_events",),
    "leaderboards": ("leaderboard_entries",),
    "daily_prize_pools": ("leaderboard_entries", "prize_pools"),
    "weekly_prize_pools": ("leaderboard_entries", "prize_pools"),
    "hourly_platform_metrics": ("payments", "notification_email_queue", "realtime_events"),
    "daily_course_analytics": ("learning_events", "enrollments"),
    "daily_student_analytics": ("learning_events",),
    "weekly_trend_report": ("learning_events", "enrollments"),
    "monthly_executive_summary": (
        "payments",
        "stream_events",
        "learning_events",
        "enrollments",
        "leaderboard_entries",
    ),
}


def _conditions(connection: Connection, table: str) -> dict[str, str]:
    """{kind: SQL condition} of `table` on this connection's database."""
    return {
        kind: cond(connection) if callable(cond) else cond for kind, cond in CHECKS[table].items()
    }


def _count_sql(connection: Connection, table: str) -> str:
    sums = ", ".join(
        f"COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS {kind}"
        for kind, cond in _conditions(connection, table).items()
    )
    return f"SELECT {sums} FROM {table}"


def well_formed(connection: Connection, table: str) -> str:
    """SQL condition on the columns of `table` (unqualified) that holds for exactly the rows
    `count_bad_rows` does not count, so a rule that reads with it skips what is reported."""
    malformed = " OR ".join(f"({cond})" for cond in _conditions(connection, table).values())
    return f"(CASE WHEN {malformed} THEN 0 ELSE 1 END = 1)"


def count_bad_rows(
    engine: Engine, tables: Iterable[str], log: LogLine | None = None
) -> dict[str, int]:
    """{"<table>.<kind>": rows} of every kind with rows, one query per table. A table whose
    count fails (missing, a value that cannot be read as JSON) is logged and left out."""
    counts: dict[str, int] = {}
    for table in tables:
        if table not in CHECKS:
            continue
        try:
            with engine.connect() as connection:
                row = connection.execute(text(_count_sql(connection, table))).mappings().one()
        except Exception as error:  # a count must never fail the run it reports on
            if log:
                log(f"bad rows in {table} not counted: {str(error).splitlines()[0]}")
            continue
        counts.update({f"{table}.{kind}": int(n) for kind, n in row.items() if n})
    return counts


def bad_rows_metadata(engine: Engine, tables: Iterable[str], warn: LogLine | None = None) -> dict:
    """Metadata `bad_rows` ({table.kind: rows}) and `bad_rows_total`; warns when not zero.
    Bad rows are skipped by the rules, never changed."""
    return report_bad_rows(count_bad_rows(engine, tables, warn), warn)


def report_bad_rows(counts: dict[str, int], warn: LogLine | None = None) -> dict:
    """Metadata of bad rows counted ({table.kind: rows}); warns when not zero."""
    total = sum(counts.values())
    if total and warn:
        listed = ", ".join(f"{kind}={n}" for kind, n in sorted(counts.items()))
        warn(f"{total} malformed app rows skipped, left unchanged: {listed}")
    return {"bad_rows": counts, "bad_rows_total": total}


def job_bad_rows(context, engine: Engine) -> dict:
    """`bad_rows_metadata` of the tables the running job reads."""
    return bad_rows_metadata(engine, JOB_TABLES.get(context.job_name, ()), context.log.warning)


def no_bad_rows_check(asset, name: str):
    """A non-blocking check of `asset` (WARN): no malformed rows in the tables it reads."""
    import dagster as dg

    from ops_platform.resources.database import Database

    tables = JOB_TABLES[name]

    @dg.asset_check(
        asset=asset,
        name="no_malformed_app_rows",
        blocking=False,
        description=f"Warns when {', '.join(tables)} hold rows the asset skips as malformed.",
    )
    def _check(context: dg.AssetCheckExecutionContext, database: Database):
        counts = count_bad_rows(database.engine, tables, context.log.warning)
        return dg.AssetCheckResult(
            passed=not counts,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"bad_rows": counts, "bad_rows_total": sum(counts.values())},
        )

    return _check
