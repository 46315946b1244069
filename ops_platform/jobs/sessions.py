"""`session_cleanup`: light every 2 h, deep every 12 h, a weekly safety net.

- light: sessions past `expires_at`.
- deep: light, plus revoked sessions past the revoked retention and sessions idle past
  the idle retention.
- safety_net: deep, plus player (anonymous) sessions whose last activity is older than the
  player retention, whatever their expiry says — including those with no expiry at all.
User sessions with no `expires_at` are bad rows: never deleted by expiry, counted.
"""

from datetime import datetime, timedelta
from enum import StrEnum

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ops_platform.db.batching import BatchResult, count_rows, delete_in_batches, excluding
from ops_platform.jobs._cleanup import RuleOutcome, rule_job
from ops_platform.jobs._common import GuardedJobConfig
from ops_platform.log_line import LogLine


class SessionMode(StrEnum):
    """The launchpad offers these; any other value is refused before a run starts."""

    light = "light"
    deep = "deep"
    safety_net = "safety_net"


MODES = tuple(mode.value for mode in SessionMode)


# Tuned with benchmarks/session_cleanup.py: on Postgres, 10M expired sessions go at
# ~250k rows/s with transactions of ~0.2 s (longest under 1 s).
SESSION_BATCH_SIZE = 50_000


class SessionCleanupConfig(GuardedJobConfig):
    batch_size: int = Field(
        default=SESSION_BATCH_SIZE, gt=0, le=1_000_000, description="Rows per transaction."
    )
    mode: SessionMode = Field(default=SessionMode.light, description="light | deep | safety_net")
    revoked_retention_days: int = Field(default=7, ge=0)
    idle_retention_days: int = Field(default=30, ge=1)
    player_retention_days: int = Field(default=30, ge=1)

    def gate_scope(self) -> str:
        return f"mode={self.mode}"  # a deep run is compared with deep runs, not light ones


def session_rules(
    mode: str, now: datetime, config: SessionCleanupConfig
) -> list[tuple[str, str, dict]]:
    """(label, WHERE clause, parameters) of each rule the mode applies, in order."""
    rules = [("sessions_expired", "expires_at < :now", {"now": now})]
    if mode in ("deep", "safety_net"):
        rules.append(
            (
                "sessions_revoked",
                "revoked_at IS NOT NULL AND revoked_at < :revoked_cutoff",
                {"revoked_cutoff": now - timedelta(days=config.revoked_retention_days)},
            )
        )
        rules.append(
            (
                "sessions_idle",
                "last_seen_at < :idle_cutoff",
                {"idle_cutoff": now - timedelta(days=config.idle_retention_days)},
            )
        )
    if mode == "safety_net":
        rules.append(
            (
                "sessions_player_stale",
                "kind = 'player' AND COALESCE(last_seen_at, created_at) < :player_cutoff",
                {"player_cutoff": now - timedelta(days=config.player_retention_days)},
            )
        )
    return rules


def apply_session_cleanup_rules(
    engine: Engine,
    config: SessionCleanupConfig,
    now: datetime,
    log=None,
) -> tuple[list[BatchResult], int]:
    """Apply the mode's rules in bounded batches; returns per-rule results and the number
    of user sessions skipped because they have no expiry."""
    rules = session_rules(config.mode, now, config)
    results = []
    for n, (label, where, params) in enumerate(rules):
        if config.dry_run:
            # A real run deletes rule by rule, so a row is counted by the first rule it matches.
            where = excluding(where, [earlier for _, earlier, _ in rules[:n]])
            params = {name: value for _, _, p in rules[: n + 1] for name, value in p.items()}
        results.append(
            delete_in_batches(
                engine,
                "sessions",
                where,
                params,
                **config.batching(log),
                label=label,
            )
        )
    skipped = count_rows(engine, "sessions", "expires_at IS NULL AND kind <> 'player'", {})
    return results, skipped


def session_cleanup_rule(
    engine: Engine, config: SessionCleanupConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Delete expired, revoked, idle and stale player sessions in bounded batches."""
    results, skipped = apply_session_cleanup_rules(engine, config, now, log)
    return RuleOutcome(results, {"skipped_null_expiry": skipped})


session_cleanup = rule_job(
    "session_cleanup",
    "cleanup_sessions",
    session_cleanup_rule,
    description=__doc__.splitlines()[0],
    metadata=lambda config: {"mode": str(config.mode)},
)


defs = dg.Definitions(jobs=[session_cleanup])
