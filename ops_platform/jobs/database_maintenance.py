"""`database_maintenance` (Sundays 03:00): the app database's VACUUM (ANALYZE) and activity
report (`_vacuum.py`; ANALYZE on SQLite), then pruning of old Dagster runs
(`_run_pruning.py`)."""

import dagster as dg
from pydantic import Field

from ops_platform.db.engine import LONG_STATEMENT_TIMEOUT_S, utcnow
from ops_platform.jobs._common import DestructiveJobConfig, add_earlier_counts, job_op
from ops_platform.jobs._run_pruning import prune_dagster_runs
from ops_platform.jobs._vacuum import MaintenanceResult, activity_report, maintain_database
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database, run_max_runtime_s
from ops_platform.schedules.catalog import job_tags


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


@job_op(
    "database_maintenance",
    "VACUUM (ANALYZE) tables with many dead tuples and report connection usage (Postgres); "
    "ANALYZE on SQLite.",
    when_lock_held={"rows_changed": 0},
)
def maintain_app_database(
    context: dg.OpExecutionContext, config: DatabaseMaintenanceConfig, database: Database
) -> dg.Output[int]:
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
    retried = add_earlier_counts(context, result)
    metadata = {**maintenance_metadata(result, report, config), **retried}
    log_maintenance(context, result, report, config.dry_run)
    return dg.Output(metadata["rows_changed"], metadata=metadata)


def maintenance_metadata(
    result: MaintenanceResult, report: dict, config: DatabaseMaintenanceConfig
) -> dict:
    metadata = {
        "dry_run": config.dry_run,
        "backend": result.backend,
        "tables_checked": result.tables_checked,
        "tables_due": result.tables_due,
        "tables_vacuumed": result.tables_vacuumed,
        "tables_recently_vacuumed": len(result.recently_vacuumed),
        "tables_not_owned": len(result.not_owned),
        "rows_matched": result.tables_due,
        "rows_changed": result.tables_vacuumed,
        "problems": len(result.problems),
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
    if result.not_owned:
        metadata["not_owned"] = ", ".join(outcome.table for outcome in result.not_owned)
    return metadata


def log_maintenance(
    context: dg.OpExecutionContext, result: MaintenanceResult, report: dict, dry_run: bool
) -> None:
    for problem in result.problems:
        context.log.warning(f"database_maintenance: {problem}")
    if result.not_owned:
        names = ", ".join(outcome.table for outcome in result.not_owned)
        context.log.warning(
            f"database_maintenance: could not VACUUM {names}: the run's database role does not "
            "own them (grant ownership, or leave them to autovacuum)"
        )
    if result.backend != "postgresql":
        context.log.info(result.note)
        return
    verb = "would vacuum" if dry_run else "vacuumed"
    context.log.info(
        f"database_maintenance {verb} {result.tables_due if dry_run else result.tables_vacuumed} of "
        f"{result.tables_checked} tables; {report['connections_total']}/{report['max_connections']} connections, "
        f"{report['idle_in_transaction']} idle in transaction, {report['long_running_queries']} long-running"
    )


@dg.job(
    tags=job_tags("database_maintenance"),
    executor_def=dg.in_process_executor,  # steps share the job lock, so they run one after the other
    description="Weekly: VACUUM (ANALYZE) and activity report of the app database; old Dagster runs pruned.",
)
def database_maintenance():
    maintain_app_database()
    prune_dagster_runs()


defs = dg.Definitions(jobs=[database_maintenance])
