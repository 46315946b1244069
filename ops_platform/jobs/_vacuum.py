"""The app database's upkeep, for `database_maintenance`: on Postgres `VACUUM (ANALYZE)` of
the current schema's tables whose dead-tuple ratio passes a threshold (not again within
`revacuum_after_hours`: dead tuples that survive a VACUUM are held by an older transaction)
and a connection/activity report from `pg_stat_activity`; on SQLite `ANALYZE` and
`PRAGMA optimize`."""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ops_platform.db.engine import LONG_STATEMENT_TIMEOUT_S, is_postgres, statement_timeout, utcnow
from ops_platform.jobs._common import MAX_LISTED
from ops_platform.markdown import markdown_table
from ops_platform.retries import note_done

SQLITE_NOTE = (
    "SQLite: dead-tuple statistics, per-table VACUUM and pg_stat_activity do not exist; "
    "ran ANALYZE and PRAGMA optimize instead (a full VACUUM would rewrite the whole file "
    "under an exclusive lock, so it is left to an operator)."
)


NOT_OWNER = (
    "skipped: not its owner (only the table's owner may VACUUM it; its autovacuum still runs)"
)


@dataclass
class VacuumOutcome:
    table: str
    live_tuples: int
    dead_tuples: int
    dead_ratio: float
    status: str = "planned"  # vacuumed | would vacuum | skipped: <why>
    seconds: float = 0.0


@dataclass
class MaintenanceResult:
    backend: str
    tables_checked: int = 0
    outcomes: list[VacuumOutcome] = field(default_factory=list)
    recently_vacuumed: list[VacuumOutcome] = field(default_factory=list)
    # Due, but the run's role does not own them: only a table's owner may VACUUM it.
    not_owned: list[VacuumOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = ""
    sqlite_pages: int = 0
    sqlite_free_pages: int = 0
    # Vacuumed by earlier attempts of the run (a transient fault retried it): due and done.
    vacuumed_before_retry: int = 0

    @property
    def tables_due(self) -> int:
        return len(self.outcomes) + self.vacuumed_before_retry

    @property
    def tables_vacuumed(self) -> int:
        vacuumed = sum(1 for outcome in self.outcomes if outcome.status == "vacuumed")
        return vacuumed + self.vacuumed_before_retry


def tables_needing_vacuum(
    engine: Engine, threshold: float, min_dead_tuples: int, vacuumed_since: datetime
) -> tuple[int, list[VacuumOutcome], list[VacuumOutcome]]:
    """(tables in the current schema, those due, those past the threshold but vacuumed since
    `vacuumed_since`). Dead tuples that survive a recent VACUUM are held by an older
    transaction somewhere (see the idle-in-transaction report); vacuuming again would not
    free them, so those tables wait until the re-vacuum interval has passed."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT s.relname, n_live_tup, n_dead_tup, "
                "COALESCE(n_dead_tup::float8 / NULLIF(n_live_tup + n_dead_tup, 0), 0) AS dead_ratio, "
                "GREATEST(last_vacuum, last_autovacuum) AS last_vacuumed, "
                "pg_has_role(c.relowner, 'USAGE') AS owned "
                "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
                "WHERE schemaname = current_schema() ORDER BY n_dead_tup DESC, s.relname"
            )
        ).all()
    due, recent = [], []
    for row in rows:
        if row.n_dead_tup < min_dead_tuples or row.dead_ratio < threshold:
            continue
        outcome = VacuumOutcome(
            row.relname, row.n_live_tup, row.n_dead_tup, round(row.dead_ratio, 4)
        )
        if not row.owned:
            outcome.status = NOT_OWNER
            recent.append(outcome)
        elif row.last_vacuumed is not None and row.last_vacuumed >= vacuumed_since:
            outcome.status = f"not again: vacuumed at {row.last_vacuumed:%Y-%m-%d %H:%M:%S}Z, an older transaction holds its dead tuples"
            recent.append(outcome)
        else:
            due.append(outcome)
    return len(rows), due, recent


def vacuum_tables(
    engine: Engine,
    outcomes: list[VacuumOutcome],
    lock_timeout_s: float,
    progress=None,
    vacuum_timeout_s: float = LONG_STATEMENT_TIMEOUT_S,
) -> list[str]:
    """`VACUUM (ANALYZE)` each table outside any transaction (VACUUM refuses to run inside
    one); a table whose lock cannot be had in time is skipped, not waited for. A VACUUM of
    a big table may outlast the usual statement timeout, up to `vacuum_timeout_s`."""
    problems = []
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        schema_name = connection.execute(text("SELECT current_schema()")).scalar_one()
        quote = connection.dialect.identifier_preparer.quote
        connection.execute(text(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'"))
        try:
            with statement_timeout(connection, vacuum_timeout_s):
                _vacuum_each(connection, schema_name, quote, outcomes, problems, progress)
        finally:
            if not connection.invalidated:
                connection.execute(
                    text("RESET lock_timeout")
                )  # the connection goes back to the pool
    return problems


def _vacuum_each(connection, schema_name, quote, outcomes, problems, progress) -> None:
    for outcome in outcomes:
        started = time.perf_counter()
        try:
            connection.execute(
                text(f"VACUUM (ANALYZE) {quote(schema_name)}.{quote(outcome.table)}")
            )
        except DBAPIError as error:
            if error.connection_invalidated:
                raise  # lost connection: a transient fault for the op's retry
            reason = str(error.orig).strip().splitlines()[0]
            outcome.status = f"skipped: {reason}"
            problems.append(f"{outcome.table}: {reason}")
            continue
        outcome.seconds = round(time.perf_counter() - started, 3)
        outcome.status = "vacuumed"
        note_done(vacuumed_before_retry=1)
        if progress:
            progress(
                f"database_maintenance: VACUUM (ANALYZE) {outcome.table} in {outcome.seconds}s"
            )


def sqlite_maintenance(engine: Engine, dry_run: bool) -> MaintenanceResult:
    result = MaintenanceResult(backend="sqlite", note=SQLITE_NOTE)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        result.tables_checked = connection.execute(
            text(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ).scalar_one()
        result.sqlite_pages = connection.execute(text("PRAGMA page_count")).scalar_one()
        result.sqlite_free_pages = connection.execute(text("PRAGMA freelist_count")).scalar_one()
        if dry_run:
            result.note = "dry run: would run ANALYZE and PRAGMA optimize. " + SQLITE_NOTE
        else:
            connection.execute(text("ANALYZE"))
            connection.execute(text("PRAGMA optimize"))
    return result


def maintain_database(
    engine: Engine,
    *,
    dead_ratio_threshold: float = 0.1,
    min_dead_tuples: int = 50,
    lock_timeout_s: float = 10.0,
    revacuum_after_hours: float = 6.0,
    dry_run: bool = False,
    now: datetime | None = None,
    progress=None,
    vacuum_timeout_s: float = LONG_STATEMENT_TIMEOUT_S,
) -> MaintenanceResult:
    """Postgres: VACUUM (ANALYZE) the current schema's tables past the threshold.
    SQLite: ANALYZE and PRAGMA optimize, with a note saying so."""
    if not is_postgres(engine):
        return sqlite_maintenance(engine, dry_run)
    result = MaintenanceResult(backend="postgresql")
    now = now or utcnow()
    result.tables_checked, result.outcomes, waiting = tables_needing_vacuum(
        engine, dead_ratio_threshold, min_dead_tuples, now - timedelta(hours=revacuum_after_hours)
    )
    result.not_owned = [o for o in waiting if o.status == NOT_OWNER]
    result.recently_vacuumed = [o for o in waiting if o.status != NOT_OWNER]
    if dry_run:
        for outcome in result.outcomes:
            outcome.status = "would vacuum"
    else:
        result.problems = vacuum_tables(
            engine, result.outcomes, lock_timeout_s, progress, vacuum_timeout_s
        )
    return result


def activity_report(
    engine: Engine, now: datetime, long_query_seconds: float, query_chars: int = 120
) -> dict:
    """Connections by state, idle-in-transaction sessions and long-running queries of the
    current database, from pg_stat_activity (Postgres only)."""
    with engine.connect() as connection:
        max_connections = int(connection.execute(text("SHOW max_connections")).scalar_one())
        by_state = [
            dict(row._mapping)
            for row in connection.execute(
                text(
                    "SELECT COALESCE(state, 'background') AS state, count(*) AS connections FROM pg_stat_activity "
                    "WHERE datname = current_database() GROUP BY 1 ORDER BY 2 DESC, 1"
                )
            )
        ]
        idle_in_transaction = [
            dict(row._mapping)
            for row in connection.execute(
                text(
                    'SELECT pid, usename AS "user", application_name AS application, state, '
                    "round(EXTRACT(EPOCH FROM (:now - state_change))::numeric, 1) AS seconds_in_state, "
                    "left(query, :chars) AS last_query FROM pg_stat_activity "
                    "WHERE datname = current_database() AND state LIKE 'idle in transaction%' "
                    "ORDER BY state_change LIMIT :limit"
                ),
                {"now": now, "chars": query_chars, "limit": MAX_LISTED},
            )
        ]
        long_running = [
            dict(row._mapping)
            for row in connection.execute(
                text(
                    'SELECT pid, usename AS "user", application_name AS application, '
                    "round(EXTRACT(EPOCH FROM (:now - query_start))::numeric, 1) AS seconds_running, "
                    "wait_event_type, left(query, :chars) AS query FROM pg_stat_activity "
                    "WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() "
                    "AND query_start < :cutoff ORDER BY query_start LIMIT :limit"
                ),
                {
                    "now": now,
                    "cutoff": now - timedelta(seconds=long_query_seconds),
                    "chars": query_chars,
                    "limit": MAX_LISTED,
                },
            )
        ]
    total = sum(row["connections"] for row in by_state)
    return {
        "connections_total": total,
        "max_connections": max_connections,
        "connection_usage_pct": round(100.0 * total / max_connections, 1)
        if max_connections
        else 0.0,
        "idle_in_transaction": len(idle_in_transaction),
        "long_running_queries": len(long_running),
        "connections_by_state": dg.MetadataValue.md(
            markdown_table(None, by_state, "_no connections_")
        ),
        "idle_in_transaction_sessions": dg.MetadataValue.md(
            markdown_table(None, idle_in_transaction, "_no session idle in a transaction_")
        ),
        "long_running_query_list": dg.MetadataValue.md(
            markdown_table(None, long_running, f"_no query running over {long_query_seconds:g} s_")
        ),
    }
