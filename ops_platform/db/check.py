"""`ops-platform db check`: can every job run on this database?

Compares the live database with the contract and with what the jobs need: missing app
tables and columns, column types the jobs cannot work with (a time stored as `text` on
Postgres, say), the project's own tables (`db upgrade` not run), and the indexes the jobs
rely on for speed (reported with the `CREATE INDEX CONCURRENTLY` statement to add them).
Compatible types pass: `text`/`varchar`, `integer`/`bigint`, `numeric`/`double`,
`json`/`jsonb`, `timestamp`/`timestamptz`. A missing index is a warning: the jobs still
run, slower. Every run checks the tables its job or asset uses before it starts
(`Database` resource), so a short schema is one clear message, not a raw SQL error.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    inspect,
)
from sqlalchemy.types import NullType

from ops_platform.db import schema
from ops_platform.db.engine import is_postgres, state_schema

# The jobs and assets that read or write each app table.
TABLE_USERS: dict[str, tuple[str, ...]] = {
    "users": (
        "user_trust_scores",
        "og_daily_bonus",
        "unverified_account_cleanup",
        "email_queue",
        "overdue_payment_reminders",
        "hourly_platform_metrics",
        "monthly_executive_summary",
    ),
    "sessions": ("session_cleanup", "hourly_platform_metrics"),
    "refresh_tokens": ("token_cleanup", "unverified_account_cleanup"),
    "email_verification_tokens": ("token_cleanup", "unverified_account_cleanup"),
    "password_reset_tokens": ("token_cleanup", "unverified_account_cleanup"),
    "secrets": ("secret_rotation",),
    "og_tiers": ("og_daily_bonus",),
    "coin_transactions": ("og_daily_bonus", "monthly_executive_summary"),
    "payments": (
        "payment_status_check",
        "payment_status_sweep",
        "hourly_platform_metrics",
        "monthly_executive_summary",
    ),
    "projects": ("overdue_payment_reminders",),
    "project_team": ("overdue_payment_reminders", "team_member_cleanup"),
    "project_payment_status": ("overdue_payment_reminders",),
    "payment_reminders": ("overdue_payment_reminders",),
    "deliverables": ("deliverable_expiry",),
    "notifications": ("email_queue",),
    "notification_email_queue": ("email_queue", "hourly_platform_metrics"),
    "realtime_events": (
        "realtime_publish",
        "throne_expiry",
        "festival_activation",
        "og_daily_bonus",
        "hourly_platform_metrics",
    ),
    "streams": ("stream_rankings",),
    "stream_events": ("stream_rankings",),
    "stream_rankings": ("stream_rankings",),
    "reputation_events": ("user_trust_scores",),
    "thrones": ("throne_expiry",),
    "festivals": ("festival_activation",),
    "gifts": ("festival_activation",),
    "game_sessions": ("game_cleanup", "monthly_executive_summary"),
    "leaderboard_entries": (
        "game_cleanup",
        "leaderboards",
        "daily_prize_pools",
        "weekly_prize_pools",
    ),
    "prize_pools": ("daily_prize_pools", "weekly_prize_pools", "monthly_executive_summary"),
    "courses": ("daily_course_analytics", "weekly_trend_report"),
    "enrollments": ("daily_course_analytics", "daily_student_analytics"),
    "learning_events": (
        "daily_course_analytics",
        "daily_student_analytics",
        "monthly_executive_summary",
    ),
    "stored_files": ("orphaned_file_cleanup",),
    "webhook_events": ("webhook_security_monitor",),
    "security_alerts": ("webhook_security_monitor",),
}


@dataclass(frozen=True)
class Finding:
    level: str  # "error": a job cannot run; "warning": it runs, slower
    where: str  # table or table.column
    problem: str
    jobs: tuple[str, ...]
    fix: str = ""


class SchemaNotReady(RuntimeError):
    """The live database lacks what a job needs; the message names table.column and job."""


def _family(column_type) -> str:
    if isinstance(column_type, Boolean):
        return "boolean"
    if isinstance(column_type, Integer):
        return "integer"
    if isinstance(column_type, (Numeric, Float)):  # numeric, double precision, real
        return "number"
    if isinstance(column_type, DateTime):
        return "timestamp"
    if isinstance(column_type, Date):
        return "date"
    if isinstance(column_type, JSON):
        return "json"
    if isinstance(column_type, String):  # text, varchar, char
        return "text"
    if isinstance(column_type, NullType):
        return "untyped"
    return str(column_type).lower()


# Live families each expected family works with. SQLite stores any value in any declared
# type, so there only times, dates and JSON kept as text are added (the app's own choice).
_ACCEPTS = {
    "integer": {"integer"},
    "number": {"integer", "number"},
    "boolean": {"boolean"},
    "timestamp": {"timestamp"},
    "date": {"date"},
    "json": {"json", "text"},
    "text": {"text"},
}
_SQLITE_ALSO = {
    "integer": {"untyped"},
    "number": {"untyped"},
    "boolean": {"integer", "untyped"},
    "timestamp": {"text", "untyped"},
    "date": {"text", "timestamp", "untyped"},
    "json": {"untyped"},
    "text": {"untyped"},
}


def _compatible(expected: str, live: str, postgres: bool) -> bool:
    accepted = _ACCEPTS.get(expected, {expected})
    if not postgres:
        accepted = accepted | _SQLITE_ALSO.get(expected, set())
    return live in accepted


def _index_statement(index: Index, postgres: bool) -> str:
    columns = ", ".join(column.name for column in index.columns)
    where = index.dialect_options["postgresql"].get("where")
    concurrently = "CONCURRENTLY " if postgres else ""
    statement = (
        f"CREATE INDEX {concurrently}IF NOT EXISTS {index.name} ON {index.table.name} ({columns})"
    )
    return statement + (f" WHERE {where}" if where is not None else "") + ";"


def _covered(index: Index, live_indexes: list[list[str]]) -> bool:
    wanted = [column.name for column in index.columns]
    return any(columns[: len(wanted)] == wanted for columns in live_indexes)


_PG_FAMILIES = (
    ("timestamp", "timestamp"),
    ("date", "date"),
    ("smallint", "integer"),
    ("integer", "integer"),
    ("bigint", "integer"),
    ("numeric", "number"),
    ("double precision", "number"),
    ("real", "number"),
    ("boolean", "boolean"),
    ("json", "json"),
    ("text", "text"),
    ("character", "text"),  # character varying (varchar) and character (char)
)


def _pg_family(type_text: str) -> str:
    return next(
        (family for prefix, family in _PG_FAMILIES if type_text.startswith(prefix)), type_text
    )


def live_columns(engine: Engine, names: list[str]) -> dict[str, dict[str, tuple[str, str]]]:
    """{table: {column: (type as declared, family)}} of the app tables `names` that exist.
    Postgres: one catalog query (a run checks this before it starts)."""
    if is_postgres(engine):
        from sqlalchemy import text

        found: dict[str, dict[str, tuple[str, str]]] = {}
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                    "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
                    "WHERE c.relnamespace = CAST(current_schema() AS regnamespace) "
                    "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname = ANY(:names) "
                    "AND a.attnum > 0 AND NOT a.attisdropped"
                ),
                {"names": names},
            )
            for table, column, type_text in rows:
                found.setdefault(table, {})[column] = (type_text, _pg_family(type_text))
        return found
    inspector = inspect(engine)
    present = set(inspector.get_table_names())
    return {
        name: {
            column["name"]: (str(column["type"]).lower(), _family(column["type"]))
            for column in inspector.get_columns(name)
        }
        for name in names
        if name in present
    }


def check_tables(engine: Engine, tables: list[Table], *, indexes: bool = True) -> list[Finding]:
    """Findings for the app tables `tables`: missing tables, columns, types and indexes."""
    postgres = is_postgres(engine)
    live_tables = live_columns(engine, [table.name for table in tables])
    inspector = inspect(engine) if indexes else None
    findings: list[Finding] = []
    for table in tables:
        jobs = TABLE_USERS.get(table.name, ())
        live = live_tables.get(table.name)
        if live is None:
            findings.append(
                Finding("error", table.name, "table missing", jobs, "ops-platform db upgrade")
            )
            continue
        for column in table.columns:
            where = f"{table.name}.{column.name}"
            if column.name not in live:
                findings.append(Finding("error", where, "column missing", jobs))
                continue
            declared, found = live[column.name]
            expected = _family(column.type)
            if not _compatible(expected, found, postgres):
                findings.append(
                    Finding("error", where, f"type {declared}: the jobs need {expected}", jobs)
                )
        if inspector is not None:
            findings += _missing_indexes(inspector, table, jobs, postgres)
    return findings


def _missing_indexes(inspector, table: Table, jobs, postgres: bool) -> list[Finding]:
    live_indexes = [list(index["column_names"]) for index in inspector.get_indexes(table.name)]
    live_indexes += [
        list(unique["column_names"]) for unique in inspector.get_unique_constraints(table.name)
    ]
    live_indexes.append(list(inspector.get_pk_constraint(table.name)["constrained_columns"]))
    return [
        Finding(
            "warning",
            f"{table.name}({', '.join(c.name for c in index.columns)})",
            "index missing: the jobs run, slower",
            jobs,
            _index_statement(index, postgres),
        )
        for index in sorted(table.indexes, key=lambda index: index.name)
        if not _covered(index, live_indexes)
    ]


def check_project_tables(engine: Engine) -> list[Finding]:
    """The project's own tables, created by `db upgrade`."""
    namespace = state_schema(engine)
    present = set(inspect(engine).get_table_names(schema=namespace))
    return [
        Finding(
            "error",
            f"{namespace}.{table.name}",
            "project table missing",
            ("every job",),
            "ops-platform db upgrade",
        )
        for table in schema.state_metadata.sorted_tables
        if table.name not in present
    ]


def check_database(engine: Engine) -> list[Finding]:
    """Everything `db check` reports."""
    return check_tables(engine, list(schema.metadata.sorted_tables)) + check_project_tables(engine)


def tables_of(names: set[str]) -> list[Table]:
    """The app tables the jobs or assets `names` use."""
    return [
        table
        for table in schema.metadata.sorted_tables
        if names & set(TABLE_USERS.get(table.name, ()))
    ]


def require_tables_for(engine: Engine, names: set[str]) -> None:
    """Raise `SchemaNotReady` naming table.column and the job when the app tables the jobs
    or assets `names` use are short (missing, or of a type the job cannot use)."""
    errors = [
        finding
        for finding in check_tables(engine, tables_of(names), indexes=False)
        if finding.level == "error"
    ]
    if errors:
        who = ", ".join(sorted(names & {job for f in errors for job in f.jobs}))
        details = "; ".join(f"{f.where}: {f.problem}" for f in errors)
        raise SchemaNotReady(
            f"{who} cannot run on this database: {details} (see `ops-platform db check`)"
        )


def render(findings: list[Finding]) -> str:
    from tabulate import tabulate

    if not findings:
        return "every contract table, column, type and index the jobs need is there"
    rows = [
        (
            f.level,
            f.where,
            f.problem,
            ", ".join(f.jobs[:4]) + ("…" if len(f.jobs) > 4 else ""),
            f.fix,
        )
        for f in sorted(findings, key=lambda f: (f.level != "error", f.where))
    ]
    return tabulate(rows, headers=("level", "where", "problem", "jobs", "fix"))
