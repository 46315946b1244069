"""Maintenance jobs: `log_pruning` and `database_maintenance`.

- log_pruning: the log folder (`OPS_LOG_DIR`) pruned by the rules in `_log_files.py`.
- database_maintenance: Postgres `VACUUM (ANALYZE)` of the current schema's tables whose
  dead-tuple ratio passes a threshold (not again within `revacuum_after_hours`: dead tuples
  that survive a VACUUM are held by an older transaction), a connection/activity report from
  `pg_stat_activity`, `ANALYZE` + `PRAGMA optimize` on SQLite; and pruning of Dagster runs
  older than a retention, since the instance's event log otherwise grows without bound.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    is_postgres,
    statement_timeout,
    utcnow,
)
from ops_platform.jobs._common import (
    DestructiveJobConfig,
    lock_held_output,
    singleton,
    transient_retries,
)
from ops_platform.jobs._log_files import (
    LogFolderError,
    LogPruneResult,
    check_log_root,
    narrow_log_dir,
    prune_log_folder,
)
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database, run_max_runtime_s
from ops_platform.resources.folders import Folders
from ops_platform.schedules.catalog import job_tags, op_tags

MAX_LISTED = 50  # paths/sessions listed in metadata; counts are always complete


# --- log_pruning -------------------------------------------------------------------------


class LogPruningConfig(DestructiveJobConfig):
    log_dir: str = Field(
        default="",
        description="A sub-folder of OPS_LOG_DIR to prune instead of all of it (relative to it, "
        "or absolute inside it); empty means OPS_LOG_DIR. Any other folder is refused.",
    )
    retention_days: float = Field(default=30, gt=0, description="Delete log files older than this.")
    compress_after_days: float = Field(
        default=1, ge=0, description="Gzip log files older than this."
    )
    max_file_mb: float = Field(default=100, gt=0, description="Rotate live files larger than this.")
    max_files_per_stream: int = Field(
        default=10, ge=1, description="Rotated files kept per log stream."
    )


def _bullets(items: list[str]) -> dg.MetadataValue:
    shown = items[:MAX_LISTED]
    more = f"\n- … and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return dg.MetadataValue.md("\n".join(f"- `{item}`" for item in shown) + more)


def log_pruning_metadata(
    result: LogPruneResult, config: LogPruningConfig, log_dir: str, started: float
) -> dict:
    metadata = {
        "dry_run": config.dry_run,
        "log_dir": log_dir,
        "files_seen": result.files_seen,
        "not_log_files": len(result.not_log_files),
        "files_compressed": result.files_compressed,
        "files_deleted": result.files_deleted,
        "files_rotated": result.files_rotated,
        "bytes_freed": result.bytes_freed,
        "rows_matched": result.files_changed,
        "rows_changed": 0 if config.dry_run else result.files_changed,
        "symlinks_skipped": len(result.symlinks_skipped),
        "problems": len(result.problems),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    if result.problems:
        metadata["problem_files"] = _bullets(result.problems)
    if result.symlinks_skipped:
        metadata["symlinks"] = _bullets(result.symlinks_skipped)
    if result.not_log_files:
        metadata["not_log_files_left_alone"] = _bullets(result.not_log_files)
    if result.notes:
        metadata["note"] = " ".join(result.notes)
    return metadata


def log_folder_of_run(folders: Folders, config: LogPruningConfig) -> Path:
    """The folder this run may prune: OPS_LOG_DIR, or a sub-folder of it named in run config;
    anything else is a one-line failure before a file is touched."""
    try:
        check_log_root(folders.log_dir, folders.protected, folders.data_dir)
        return check_log_root(
            narrow_log_dir(folders.log_dir, config.log_dir), folders.protected, folders.data_dir
        )
    except LogFolderError as refused:
        raise dg.Failure(
            description=f"log_pruning refused: {refused}", allow_retries=False
        ) from None


@dg.op(
    tags=op_tags("log_pruning"),
    description="Gzip, rotate, cap and delete log files (named like logs) in OPS_LOG_DIR.",
)
def prune_logs(
    context: dg.OpExecutionContext, config: LogPruningConfig, database: Database, folders: Folders
) -> dg.Output[int]:
    started = time.perf_counter()
    log_dir = str(log_folder_of_run(folders, config))
    with transient_retries(context), singleton(context, database) as acting:
        if not acting:
            return lock_held_output(rows_changed=0)
        result = prune_log_folder(
            log_dir,
            utcnow(),
            retention_days=config.retention_days,
            compress_after_days=config.compress_after_days,
            max_file_mb=config.max_file_mb,
            max_files_per_stream=config.max_files_per_stream,
            patterns=folders.log_patterns,
            protected=folders.protected,
            data_dir=folders.data_dir,
            dry_run=config.dry_run,
            progress=context.log.info,
        )
    for note in result.notes:
        context.log.info(note)
    for item in result.problems[:MAX_LISTED]:
        context.log.warning(f"log_pruning: {item}")
    verb = "would change" if config.dry_run else "changed"
    context.log.info(
        f"log_pruning {verb} {result.files_changed} files in {log_dir}: {result.files_compressed} compressed, "
        f"{result.files_rotated} rotated, {result.files_deleted} deleted, {result.bytes_freed} bytes freed; "
        f"{len(result.not_log_files)} files not named like logs ({', '.join(folders.log_patterns)}) "
        f"left alone, {len(result.symlinks_skipped)} symlinks skipped, {len(result.problems)} problems"
    )
    metadata = log_pruning_metadata(result, config, log_dir, started)
    return dg.Output(metadata["rows_changed"], metadata=metadata)


@dg.job(
    tags=job_tags("log_pruning"),
    description="Daily: compress, rotate and prune the log folder.",
)
def log_pruning():
    prune_logs()


# --- database_maintenance: the app database ---------------------------------------------

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

    @property
    def tables_vacuumed(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == "vacuumed")


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


class DatabaseMaintenanceConfig(DestructiveJobConfig):
    dead_ratio_threshold: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Vacuum tables with n_dead_tup/(n_live_tup+n_dead_tup) at least this.",
    )
    min_dead_tuples: int = Field(
        default=50, ge=0, description="…and at least this many dead tuples."
    )
    long_query_seconds: float = Field(
        default=300, gt=0, description="Report active queries running longer."
    )
    lock_timeout_seconds: float = Field(
        default=10, gt=0, description="Skip a table whose lock is not had in time."
    )
    revacuum_after_hours: float = Field(
        default=6, ge=0, description="A table vacuumed more recently is not vacuumed again."
    )


@dg.op(
    tags=op_tags("database_maintenance"),
    description="VACUUM (ANALYZE) tables with many dead tuples and report connection usage (Postgres); "
    "ANALYZE on SQLite.",
)
def maintain_app_database(
    context: dg.OpExecutionContext, config: DatabaseMaintenanceConfig, database: Database
) -> dg.Output[int]:
    started = time.perf_counter()
    with transient_retries(context), singleton(context, database) as acting:
        if not acting:
            return lock_held_output(rows_changed=0)
        engine = database.engine
        result = maintain_database(
            engine,
            dead_ratio_threshold=config.dead_ratio_threshold,
            min_dead_tuples=config.min_dead_tuples,
            lock_timeout_s=config.lock_timeout_seconds,
            revacuum_after_hours=config.revacuum_after_hours,
            dry_run=config.dry_run,
            progress=context.log.info,
            vacuum_timeout_s=run_max_runtime_s(context.run) or LONG_STATEMENT_TIMEOUT_S,
        )
        report = (
            activity_report(engine, utcnow(), config.long_query_seconds)
            if result.backend == "postgresql"
            else {}
        )

    planned = len(result.outcomes)
    metadata = {
        "dry_run": config.dry_run,
        "backend": result.backend,
        "tables_checked": result.tables_checked,
        "tables_due": planned,
        "tables_vacuumed": result.tables_vacuumed,
        "tables_recently_vacuumed": len(result.recently_vacuumed),
        "tables_not_owned": len(result.not_owned),
        "rows_matched": planned,
        "rows_changed": result.tables_vacuumed,
        "problems": len(result.problems),
        "duration_s": round(time.perf_counter() - started, 3),
        **report,
    }
    if result.backend == "postgresql":
        metadata["vacuum"] = dg.MetadataValue.md(
            markdown_table(
                None,
                [
                    vars(outcome)
                    for outcome in result.outcomes + result.recently_vacuumed + result.not_owned
                ],
                f"_no table over a {config.dead_ratio_threshold:g} dead-tuple ratio "
                f"with {config.min_dead_tuples}+ dead tuples_",
            )
        )
    else:
        metadata["note"] = result.note
        metadata["sqlite_pages"] = result.sqlite_pages
        metadata["sqlite_free_pages"] = result.sqlite_free_pages
    for problem in result.problems:
        context.log.warning(f"database_maintenance: {problem}")
    if result.not_owned:
        names = ", ".join(outcome.table for outcome in result.not_owned)
        metadata["not_owned"] = names
        context.log.warning(
            f"database_maintenance: could not VACUUM {names}: the run's database role does not "
            "own them (grant ownership, or leave them to autovacuum)"
        )
    if result.backend == "postgresql":
        verb = "would vacuum" if config.dry_run else "vacuumed"
        context.log.info(
            f"database_maintenance {verb} {planned if config.dry_run else result.tables_vacuumed} of "
            f"{result.tables_checked} tables; {report['connections_total']}/{report['max_connections']} connections, "
            f"{report['idle_in_transaction']} idle in transaction, {report['long_running_queries']} long-running"
        )
    else:
        context.log.info(result.note)
    return dg.Output(metadata["rows_changed"], metadata=metadata)


# --- database_maintenance: the Dagster instance -------------------------------------------

FINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


@dataclass
class RunPruneResult:
    matched: int = 0
    deleted: int = 0
    unfinished_old: int = 0  # old runs still queued/started: left alone, counted


def prune_runs(
    instance: dg.DagsterInstance,
    cutoff: datetime,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    progress=None,
) -> RunPruneResult:
    """Delete finished runs created before `cutoff`, with their event logs (delete_run)."""
    result = RunPruneResult()
    finished = dg.RunsFilter(created_before=cutoff, statuses=FINISHED_RUN_STATUSES)
    result.unfinished_old = instance.get_runs_count(
        dg.RunsFilter(created_before=cutoff)
    ) - instance.get_runs_count(finished)
    if dry_run:
        result.matched = instance.get_runs_count(finished)
        return result
    while True:
        records = instance.get_run_records(
            filters=finished, limit=min(batch_size, 500), ascending=True
        )
        if not records:
            break
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
        result.deleted += len(records)
        if progress:
            progress(
                f"database_maintenance: deleted {result.deleted} Dagster runs created before {cutoff:%Y-%m-%d}"
            )
    result.matched = result.deleted
    return result


class RunPruningConfig(DestructiveJobConfig):
    run_retention_days: float = Field(
        default=90, ge=1, description="Delete finished Dagster runs older than this."
    )


@dg.op(
    tags=op_tags("database_maintenance"),
    description="Delete finished Dagster runs (and their event logs) older than the retention.",
)
def prune_dagster_runs(
    context: dg.OpExecutionContext, config: RunPruningConfig, database: Database
) -> dg.Output[int]:
    started = time.perf_counter()
    cutoff = utcnow() - timedelta(days=config.run_retention_days)
    with transient_retries(context), singleton(context, database) as acting:
        if not acting:
            return lock_held_output(rows_changed=0)
        result = prune_runs(
            context.instance,
            cutoff,
            batch_size=config.batch_size,
            dry_run=config.dry_run,
            progress=context.log.info,
        )
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"database_maintenance {verb} {result.matched} Dagster runs created before {cutoff:%Y-%m-%d %H:%M}Z; "
        f"{result.unfinished_old} old unfinished runs left alone"
    )
    metadata = {
        "dry_run": config.dry_run,
        "runs_created_before": cutoff.isoformat(),
        "runs_matched": result.matched,
        "runs_deleted": result.deleted,
        "unfinished_old_runs": result.unfinished_old,
        "rows_matched": result.matched,
        "rows_changed": result.deleted,
        "duration_s": round(time.perf_counter() - started, 3),
    }
    return dg.Output(result.deleted, metadata=metadata)


@dg.job(
    tags=job_tags("database_maintenance"),
    executor_def=dg.in_process_executor,  # steps share the job lock, so they run one after the other
    description="Weekly: VACUUM (ANALYZE) and activity report of the app database; old Dagster runs pruned.",
)
def database_maintenance():
    maintain_app_database()
    prune_dagster_runs()


defs = dg.Definitions(jobs=[log_pruning, database_maintenance])
