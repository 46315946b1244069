"""`log_pruning` (daily 04:00): the log folder (`OPS_LOG_DIR`) pruned by the rules in
`_log_files.py`, never outside it (`_log_folder.py`)."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from pydantic import Field

from ops_platform.db.engine import utcnow
from ops_platform.jobs._common import (
    DestructiveJobConfig,
    add_earlier_counts,
    bullet_list,
    job_op,
    one_op_job,
    warn_listed,
)
from ops_platform.jobs._log_files import SKIP_KINDS, LogPruneResult, prune_log_folder
from ops_platform.jobs._log_folder import LogFolderError, check_log_root, narrow_log_dir
from ops_platform.resources.database import Database
from ops_platform.resources.folders import Folders


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


# The run config fields that are `prune_log_folder`'s keyword arguments of the same names.
PRUNE_OPTIONS = {
    "retention_days",
    "compress_after_days",
    "max_file_mb",
    "max_files_per_stream",
    "dry_run",
}


def log_pruning_metadata(result: LogPruneResult, config: LogPruningConfig, log_dir: str) -> dict:
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
        **{f"skipped_{kind}": result.skipped[kind] for kind in SKIP_KINDS},
    }
    if result.problems:
        metadata["problem_files"] = bullet_list(result.problems)
    if result.symlinks_skipped:
        metadata["symlinks"] = bullet_list(result.symlinks_skipped)
    if result.not_log_files:
        metadata["not_log_files_left_alone"] = bullet_list(result.not_log_files)
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


def pruning_summary(
    result: LogPruneResult, log_dir: str, patterns: Sequence[str], dry_run: bool
) -> str:
    verb = "would change" if dry_run else "changed"
    return (
        f"log_pruning {verb} {result.files_changed} files in {log_dir}: {result.files_compressed} compressed, "
        f"{result.files_rotated} rotated, {result.files_deleted} deleted, {result.bytes_freed} bytes freed; "
        f"{len(result.not_log_files)} files not named like logs ({', '.join(patterns)}) "
        f"left alone, {len(result.symlinks_skipped)} symlinks skipped, {len(result.problems)} problems"
    )


@job_op(
    "log_pruning",
    "Gzip, rotate, cap and delete log files (named like logs) in OPS_LOG_DIR.",
    when_lock_held={"rows_changed": 0},
)
def prune_logs(
    context: dg.OpExecutionContext, config: LogPruningConfig, database: Database, folders: Folders
) -> dg.Output[int]:
    log_dir = str(log_folder_of_run(folders, config))
    result = prune_log_folder(
        log_dir,
        utcnow(),
        **config.model_dump(include=PRUNE_OPTIONS),
        patterns=folders.log_patterns,
        protected=folders.protected,
        data_dir=folders.data_dir,
        progress=context.log.info,
    )
    retried = add_earlier_counts(context, result)
    for note in result.notes:
        context.log.info(note)
    warn_listed(context.log.warning, "log_pruning: ", result.problems)
    context.log.info(pruning_summary(result, log_dir, folders.log_patterns, config.dry_run))
    metadata = {**log_pruning_metadata(result, config, log_dir), **retried}
    return dg.Output(metadata["rows_changed"], metadata=metadata)


log_pruning = one_op_job(
    "log_pruning", prune_logs, "Daily: compress, rotate and prune the log folder."
)


defs = dg.Definitions(jobs=[log_pruning])
