"""Maintenance jobs: `log_pruning` (seed 002) and `database_maintenance` (seed 000).

- log_pruning: the log folder (`OPS_LOG_DIR`) pruned by the rules in `_log_files.py`.
- database_maintenance: Postgres `VACUUM (ANALYZE)` of the current schema's tables whose
  dead-tuple ratio passes a threshold, a connection/activity report from
  `pg_stat_activity`, `ANALYZE` + `PRAGMA optimize` on SQLite; and pruning of Dagster runs
  older than a retention, since the instance's event log otherwise grows without bound.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, text
from tabulate import tabulate

from ops_platform.db.engine import as_utc, is_postgres, utcnow
from ops_platform.jobs._common import DestructiveJobConfig, singleton, transient_retries
from ops_platform.jobs._log_files import LogPruneResult, prune_log_folder
from ops_platform.resources.database import Database
from ops_platform.schedules.catalog import job_tags
from ops_platform.settings import load_settings

MAX_LISTED = 50  # paths/sessions listed in metadata; counts are always complete


def _skipped_output(reason: str = "another run holds the lock") -> dg.Output[int]:
    return dg.Output(0, metadata={"skipped": reason, "rows_changed": 0})


# --- log_pruning -------------------------------------------------------------------------


class LogPruningConfig(DestructiveJobConfig):
    log_dir: str = Field(default="", description="Log folder; empty means OPS_LOG_DIR (default <OPS_DATA_DIR>/logs).")
    retention_days: float = Field(default=30, gt=0, description="Delete log files older than this.")
    compress_after_days: float = Field(default=1, ge=0, description="Gzip log files older than this.")
    max_file_mb: float = Field(default=100, gt=0, description="Rotate live files larger than this.")
    max_files_per_stream: int = Field(default=10, ge=1, description="Rotated files kept per log stream.")


def _bullets(items: list[str]) -> dg.MetadataValue:
    shown = items[:MAX_LISTED]
    more = f"\n- … and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return dg.MetadataValue.md("\n".join(f"- `{item}`" for item in shown) + more)


def log_pruning_metadata(result: LogPruneResult, config: LogPruningConfig, log_dir: str, started: float) -> dict:
    metadata = {
        "dry_run": config.dry_run,
        "log_dir": log_dir,
        "files_seen": result.files_seen,
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
    if result.notes:
        metadata["note"] = " ".join(result.notes)
    return metadata


@dg.op(description="Gzip, rotate, cap and delete log files in the log folder.")
def prune_logs(context: dg.OpExecutionContext, config: LogPruningConfig, database: Database) -> dg.Output[int]:
    started = time.perf_counter()
    log_dir = config.log_dir or str(load_settings().log_dir)
    with transient_retries(context), singleton(context, database) as acting:
        if not acting:
            return _skipped_output()
        result = prune_log_folder(
            log_dir, utcnow(),
            retention_days=config.retention_days, compress_after_days=config.compress_after_days,
            max_file_mb=config.max_file_mb, max_files_per_stream=config.max_files_per_stream,
            dry_run=config.dry_run, progress=context.log.info,
        )
    for note in result.notes:
        context.log.info(note)
    for item in result.problems[:MAX_LISTED]:
        context.log.warning(f"log_pruning: {item}")
    verb = "would change" if config.dry_run else "changed"
    context.log.info(
        f"log_pruning {verb} {result.files_changed} files in {log_dir}: {result.files_compressed} compressed, "
        f"{result.files_rotated} rotated, {result.files_deleted} deleted, {result.bytes_freed} bytes freed; "
        f"{len(result.symlinks_skipped)} symlinks skipped, {len(result.problems)} problems"
    )
    metadata = log_pruning_metadata(result, config, log_dir, started)
    return dg.Output(metadata["rows_changed"], metadata=metadata)


@dg.job(tags=job_tags("log_pruning"), description="Daily: compress, rotate and prune the log folder (seed 002).")
def log_pruning():
    prune_logs()


defs = dg.Definitions(jobs=[log_pruning])
