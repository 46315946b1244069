"""`game_cleanup`: stale game sessions, orphaned and old leaderboard entries.

In order, each rule in bounded batches:
1. game sessions still `active` 30 minutes after `started_at` are marked `expired`
   (`ended_at` = now). Active sessions with no `started_at`, and sessions whose status is
   none of active/completed/expired, are bad rows: kept and counted.
2. leaderboard entries whose `session_id` names a game session that no longer exists are
   deleted. Entries with no `session_id` are kept (a score recorded without a session,
   e.g. imported, is not an orphan) and counted.
3. entries older than 90 days move to `leaderboard_entries_archive`: each batch copies
   (INSERT … ON CONFLICT DO NOTHING) and deletes in one transaction, so a crash never
   loses an entry nor archives one twice.
"""

from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ops_platform.db.batch_steps import move_batch, update_batch
from ops_platform.db.batching import (
    BatchResult,
    count_rows,
    delete_in_batches,
    dry_run_results,
    excluding,
    run_in_batches,
)
from ops_platform.db.engine import state_table
from ops_platform.jobs._cleanup import RuleOutcome, rule_job
from ops_platform.jobs._common import GuardedJobConfig
from ops_platform.log_line import LogLine

GAME_STATUSES = ("active", "completed", "expired")
STALE_SESSION = "status = 'active' AND started_at < :started_cutoff"
ORPHANED_ENTRY = (
    "session_id IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM game_sessions WHERE game_sessions.id = leaderboard_entries.session_id)"
)
OLD_ENTRY = "created_at < :archive_cutoff"
ENTRY_COLUMNS = ("id", "session_id", "game_type", "player_address", "score", "created_at")


class GameCleanupConfig(GuardedJobConfig):
    def gate_scope(self) -> str:
        return "" if self.archive_leaderboards else "no_archive"

    session_expiry_minutes: int = Field(
        default=30, ge=1, description="Expire sessions active longer than this."
    )
    archive_leaderboards: bool = Field(
        default=True, description="Move old leaderboard entries to the archive."
    )
    leaderboard_archive_age_days: int = Field(
        default=90, ge=1, description="Archive entries older than this."
    )


def expire_game_sessions(
    engine: Engine, config: GameCleanupConfig, now: datetime, log=None
) -> list[BatchResult]:
    params = {"now": now, "started_cutoff": now - timedelta(minutes=config.session_expiry_minutes)}
    if config.dry_run:
        return dry_run_results(
            engine, "game_sessions", STALE_SESSION, params, label="game_sessions_expired"
        )
    return run_in_batches(
        engine,
        "game_sessions",
        STALE_SESSION,
        params,
        lambda connection, batch_where, batch_params: update_batch(
            connection,
            "game_sessions",
            "status = 'expired', ended_at = :now",
            batch_where,
            batch_params,
            label="game_sessions_expired",
        ),
        batch_size=config.batch_size,
        progress=log,
        label="game_sessions_expired",
        verb="expired",
    )


def delete_orphaned_entries(engine: Engine, config: GameCleanupConfig, log=None) -> BatchResult:
    return delete_in_batches(
        engine,
        "leaderboard_entries",
        ORPHANED_ENTRY,
        {},
        **config.batching(log),
        label="leaderboard_entries_orphaned",
    )


def archive_old_entries(
    engine: Engine, config: GameCleanupConfig, now: datetime, log=None
) -> list[BatchResult]:
    params = {
        "now": now,
        "archive_cutoff": now - timedelta(days=config.leaderboard_archive_age_days),
    }
    archive = state_table(engine, "leaderboard_entries_archive")
    if config.dry_run:
        # The real run deletes orphans first, so they are not archived.
        where = excluding(OLD_ENTRY, [ORPHANED_ENTRY])
        not_yet_archived = (
            f"{where} AND NOT EXISTS (SELECT 1 FROM {archive} a "
            "WHERE a.id = leaderboard_entries.id)"
        )
        moved = dry_run_results(
            engine, "leaderboard_entries", where, params, label="leaderboard_entries_archived"
        )
        copied = BatchResult(
            table="leaderboard_entries_archive",
            label="leaderboard_entries_archive",
            matched=count_rows(engine, "leaderboard_entries", not_yet_archived, params),
            inserts=True,
        )
        return [*moved, copied]
    return run_in_batches(
        engine,
        "leaderboard_entries",
        OLD_ENTRY,
        params,
        lambda connection, batch_where, batch_params: move_batch(
            connection,
            "leaderboard_entries",
            archive,
            ENTRY_COLUMNS,
            batch_where,
            batch_params,
            label="leaderboard_entries_archived",
            extra={"archived_at": ":now"},
            target_label="leaderboard_entries_archive",
        ),
        batch_size=config.batch_size,
        progress=log,
        label="leaderboard_entries_archived",
        verb="archived",
    )


def clean_game_sessions_and_leaderboards(
    engine: Engine, config: GameCleanupConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Expire stale game sessions, delete orphaned leaderboard entries, archive old ones."""
    results = [
        *expire_game_sessions(engine, config, now, log),
        delete_orphaned_entries(engine, config, log),
    ]
    if config.archive_leaderboards:
        results += archive_old_entries(engine, config, now, log)
    statuses = ", ".join(f"'{status}'" for status in GAME_STATUSES)
    return RuleOutcome(
        results,
        {
            "game_sessions_skipped_null_started_at": count_rows(
                engine, "game_sessions", "status = 'active' AND started_at IS NULL", {}
            ),
            "game_sessions_skipped_unknown_status": count_rows(
                engine, "game_sessions", f"status NOT IN ({statuses})", {}
            ),
            "leaderboard_entries_kept_null_session": count_rows(
                engine, "leaderboard_entries", "session_id IS NULL", {}
            ),
        },
    )


game_cleanup = rule_job(
    "game_cleanup",
    "cleanup_games",
    clean_game_sessions_and_leaderboards,
    description="Expire stale game sessions and tidy leaderboards.",
)


defs = dg.Definitions(jobs=[game_cleanup])
