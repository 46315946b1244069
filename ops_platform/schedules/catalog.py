"""Every schedule of the platform in one table.

Cron, timezone, tier, enable-group and maximum runtime of each job and asset live here;
schedules and run tags (`dagster/priority`, `dagster/max_runtime`, `ops/singleton`,
`ops/group`) are derived from this table, never written by hand on a job.
A row whose `cron` is None is sensor-driven or launched by hand: it still gives its job the tags.
A row with `waits_for_inputs` (the reports) gets no schedule: its asset is materialized by
declarative automation once every input partition it reads is materialized
(ops_platform/schedules/automation.py); its cron is then the time by which it is due.
Every asset row's cron and max runtime also give its freshness check (schedules/freshness.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ops_platform.db.pacing import Pacing

# Four tiers, the run queue's priority: critical (payments) > high (security, sessions, money) >
# medium (files, maintenance, engagement) > low (analytics).
TIER_PRIORITY = {"critical": 100, "high": 70, "medium": 40, "low": 10}

Tier = Literal["critical", "high", "medium", "low"]


@dataclass(frozen=True)
class Gate:
    """Blast-radius gate of a job that changes app rows: it applies from `gate_min_rows` rows
    and then refuses more than `max_fraction` of a table or `max_factor` x the median of the
    job's last successful runs (`confirm_large: true` in run config overrides)."""

    gate_min_rows: int = 1000
    max_fraction: float = 0.5
    max_factor: float = 10.0


GATE_KEYS = tuple(Gate.__dataclass_fields__)


@dataclass(frozen=True)
class ScheduleRow:
    name: str  # schedule name (unique)
    target: str  # op job name, or asset name when kind == "asset"
    kind: Literal["job", "asset"]
    cron: str | None
    tier: Tier
    group: str  # OPS_ENABLE_<GROUP>
    max_runtime_s: int
    timezone: str = "UTC"
    run_config: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # Jobs that change app rows: the gate's limits and the batch pacing (run config overrides).
    gate: Gate = Gate()
    pacing: Pacing = Pacing()
    waits_for_inputs: bool = False

    @property
    def job_name(self) -> str:
        """The job a schedule launches: the op job itself, or `<asset>_job`."""
        return self.target if self.kind == "job" else f"{self.target}_job"


MIN = 60
HOUR = 3600


def _mode(mode: str) -> dict:
    return {"ops": {"cleanup_sessions": {"config": {"mode": mode}}}}


def _token_kinds(*kinds: str) -> dict:
    return {"ops": {"cleanup_tokens": {"config": {"kinds": list(kinds)}}}}


SCHEDULES: tuple[ScheduleRow, ...] = (
    # --- assets -------------------------------------------------------------------------
    ScheduleRow(
        "stream_rankings_every_10_min",
        "stream_rankings",
        "asset",
        "*/10 * * * *",
        "medium",
        "engagement",
        8 * MIN,
    ),
    ScheduleRow(
        "user_trust_scores_every_30_min",
        "user_trust_scores",
        "asset",
        "*/30 * * * *",
        "medium",
        "engagement",
        20 * MIN,
    ),
    ScheduleRow(
        "leaderboards_hourly", "leaderboards", "asset", "0 * * * *", "medium", "games", 20 * MIN
    ),
    ScheduleRow(
        "daily_prize_pools_daily",
        "daily_prize_pools",
        "asset",
        "0 0 * * *",
        "high",
        "games",
        30 * MIN,
    ),
    ScheduleRow(
        "weekly_prize_pools_weekly",
        "weekly_prize_pools",
        "asset",
        "0 0 * * 1",
        "high",
        "games",
        30 * MIN,
    ),
    ScheduleRow(
        "og_daily_bonus_daily",
        "og_daily_bonus",
        "asset",
        "5 0 * * *",
        "high",
        "engagement",
        1 * HOUR,
        timezone="Australia/Sydney",
    ),
    *(
        ScheduleRow(f"{asset}_daily", asset, "asset", "0 0 * * *", "low", "analytics", 1 * HOUR)
        for asset in ("daily_course_analytics", "daily_student_analytics")
    ),
    ScheduleRow(
        "weekly_trend_report_weekly",
        "weekly_trend_report",
        "asset",
        "0 1 * * 0",
        "low",
        "analytics",
        1 * HOUR,
        waits_for_inputs=True,
    ),
    ScheduleRow(
        "monthly_executive_summary_monthly",
        "monthly_executive_summary",
        "asset",
        "0 2 1 * *",
        "low",
        "analytics",
        2 * HOUR,
        waits_for_inputs=True,
    ),
    ScheduleRow(
        "hourly_platform_metrics_hourly",
        "hourly_platform_metrics",
        "asset",
        "0 * * * *",
        "low",
        "analytics",
        30 * MIN,
    ),
    # --- cleanup and expiry ---------------------------------------------------------------
    ScheduleRow(
        "session_cleanup_light",
        "session_cleanup",
        "job",
        "0 */2 * * *",
        "high",
        "cleanup",
        30 * MIN,
        run_config=_mode("light"),
    ),
    ScheduleRow(
        "session_cleanup_deep",
        "session_cleanup",
        "job",
        "0 */12 * * *",
        "high",
        "cleanup",
        1 * HOUR,
        run_config=_mode("deep"),
    ),
    ScheduleRow(
        "session_cleanup_safety_net",
        "session_cleanup",
        "job",
        "30 3 * * 0",
        "high",
        "cleanup",
        2 * HOUR,
        run_config=_mode("safety_net"),
    ),
    ScheduleRow(
        "token_cleanup_daily",
        "token_cleanup",
        "job",
        "0 3 * * *",
        "high",
        "cleanup",
        1 * HOUR,
        run_config=_token_kinds("refresh"),
    ),
    ScheduleRow(
        "token_cleanup_email_verification_weekly",
        "token_cleanup",
        "job",
        "0 4 * * 0",
        "high",
        "cleanup",
        1 * HOUR,
        run_config=_token_kinds("email_verification"),
    ),
    ScheduleRow(
        "token_cleanup_password_reset_weekly",
        "token_cleanup",
        "job",
        "10 4 * * 0",
        "high",
        "cleanup",
        1 * HOUR,
        run_config=_token_kinds("password_reset"),
    ),
    ScheduleRow(
        "unverified_account_cleanup_daily",
        "unverified_account_cleanup",
        "job",
        "0 3 * * *",
        "high",
        "cleanup",
        1 * HOUR,
        # Deleted accounts cannot be brought back: a fifth of all users at once is suspect.
        gate=Gate(max_fraction=0.2),
    ),
    ScheduleRow(
        "team_member_cleanup_daily",
        "team_member_cleanup",
        "job",
        "0 2 * * *",
        "medium",
        "cleanup",
        30 * MIN,
    ),
    ScheduleRow(
        "deliverable_expiry_daily",
        "deliverable_expiry",
        "job",
        "0 5 * * *",
        "medium",
        "cleanup",
        30 * MIN,
    ),
    ScheduleRow(
        "throne_expiry_every_5_min",
        "throne_expiry",
        "job",
        "*/5 * * * *",
        "medium",
        "engagement",
        4 * MIN,
    ),
    ScheduleRow(
        "festival_activation_hourly",
        "festival_activation",
        "job",
        "0 * * * *",
        "medium",
        "engagement",
        15 * MIN,
    ),
    ScheduleRow(
        "game_cleanup_daily", "game_cleanup", "job", "0 3 * * *", "medium", "games", 1 * HOUR
    ),
    ScheduleRow(
        "log_pruning_daily", "log_pruning", "job", "0 4 * * *", "medium", "maintenance", 30 * MIN
    ),
    ScheduleRow(
        "secret_rotation_daily", "secret_rotation", "job", "0 5 * * *", "high", "security", 15 * MIN
    ),
    ScheduleRow(
        "orphaned_file_cleanup_weekly",
        "orphaned_file_cleanup",
        "job",
        "0 2 * * 6",
        "medium",
        "cleanup",
        3 * HOUR,
    ),
    ScheduleRow(
        "database_maintenance_weekly",
        "database_maintenance",
        "job",
        "0 3 * * 0",
        "medium",
        "maintenance",
        3 * HOUR,
    ),
    # --- outside world ----------------------------------------------------------------------
    ScheduleRow(
        "email_queue_every_minute", "email_queue", "job", "* * * * *", "high", "email", 5 * MIN
    ),
    ScheduleRow(
        "payment_status_check_sensor",
        "payment_status_check",
        "job",
        None,
        "critical",
        "payments",
        5 * MIN,
    ),
    ScheduleRow(
        "payment_status_sweep_every_30_min",
        "payment_status_sweep",
        "job",
        "*/30 * * * *",
        "critical",
        "payments",
        25 * MIN,
    ),
    ScheduleRow(
        "overdue_payment_reminders_daily",
        "overdue_payment_reminders",
        "job",
        "0 10 * * *",
        "critical",
        "payments",
        30 * MIN,
    ),
    ScheduleRow(
        "webhook_security_monitor_every_15_min",
        "webhook_security_monitor",
        "job",
        "*/15 * * * *",
        "high",
        "security",
        10 * MIN,
    ),
    ScheduleRow(
        "realtime_publish_sensor", "realtime_publish", "job", None, "high", "engagement", 5 * MIN
    ),
    # --- launched by hand (the UI, `ops-platform dead replay`) -------------------------------
    ScheduleRow(
        "replay_dead_items_manual",
        "replay_dead_items",
        "job",
        None,
        "high",
        "maintenance",
        10 * MIN,
        description="launched by hand from the UI; no schedule",
    ),
    ScheduleRow(
        "maintenance_window_manual",
        "maintenance_window",
        "job",
        None,
        "high",
        "maintenance",
        5 * MIN,
        description="launched by hand from the UI (`ops-platform pause`/`resume`); no schedule",
    ),
)


def rows_for(target: str) -> list[ScheduleRow]:
    return [row for row in SCHEDULES if row.target == target]


def row_for(target: str) -> ScheduleRow:
    """The governing row of a job or asset: the one with the longest max runtime."""
    rows = rows_for(target)
    if not rows:
        raise KeyError(
            f"{target!r} has no row in the schedule table (ops_platform/schedules/catalog.py)"
        )
    return max(rows, key=lambda row: row.max_runtime_s)


# Jobs whose run is started again once when its worker crashed (instance `run_retries`;
# an op's own failure is not retried at run level). Only jobs whose re-run for the same
# window gives the same result, and whose next tick is hours away: daily/weekly cleanups
# and maintenance, and the partitioned assets (money and reports are exactly-once by
# design). Not retried: frequent jobs (the next tick comes in minutes) and jobs that talk
# to the outside world (mail, payment provider, real-time channel, secret rotation), whose
# leases and claims already recover a crashed run's work.
RETRY_CRASHED_RUNS = frozenset(
    {
        "session_cleanup",
        "token_cleanup",
        "unverified_account_cleanup",
        "team_member_cleanup",
        "deliverable_expiry",
        "game_cleanup",
        "log_pruning",
        "orphaned_file_cleanup",
        "database_maintenance",
        "daily_prize_pools",
        "weekly_prize_pools",
        "og_daily_bonus",
        "daily_course_analytics",
        "daily_student_analytics",
        "weekly_trend_report",
        "monthly_executive_summary",
        "hourly_platform_metrics",
    }
)


def row_of_run(job_name: str, schedule_name: str | None) -> ScheduleRow | None:
    """The row a run of `job_name` follows: its schedule's, else the job's governing row,
    else None (a job with no row in the table)."""
    for row in SCHEDULES:
        if row.name == schedule_name and row.job_name == job_name:
            return row
    try:
        return row_for(job_name)
    except KeyError:
        return None


def job_tags(target: str) -> dict[str, str]:
    """Run tags of a job or asset job, derived from its schedule-table row."""
    row = row_for(target)
    tags = {
        "dagster/priority": str(TIER_PRIORITY[row.tier]),
        "dagster/max_runtime": str(row.max_runtime_s),
        "ops/singleton": row.job_name,
        "ops/group": row.group,
        "ops/tier": row.tier,
    }
    if target in RETRY_CRASHED_RUNS:
        tags["dagster/max_retries"] = "1"
    return tags


def manual_run_tags(asset_names: list[str]) -> dict[str, str]:
    """Tags of a run launched by hand (the UI's Materialize, a backfill, the CLI) on the
    implicit asset job: those of the asset's own job when it is one scheduled asset; for
    several, the highest priority and the sum of their maximum runtimes."""
    scheduled = [name for name in asset_names if rows_for(name)]
    if len(scheduled) == 1 and len(asset_names) == 1:
        return job_tags(scheduled[0])
    if not scheduled:
        return {}
    rows = [row_for(name) for name in scheduled]
    return {
        "dagster/priority": str(max(TIER_PRIORITY[row.tier] for row in rows)),
        "dagster/max_runtime": str(sum(row.max_runtime_s for row in rows)),
    }


# Celery queue of each job's steps (OPS_EXECUTOR=celery): `heavy` for the assets and the jobs
# that scan whole tables, folders or buckets; `light` for the rest, so the many small runs
# (email every minute, payment checks, expiries) never wait behind a report or a vacuum.
HEAVY_JOBS = frozenset({"database_maintenance", "orphaned_file_cleanup", "game_cleanup"})
CELERY_QUEUE_TAG = "dagster-celery/queue"


def step_queue(target: str) -> str:
    row = row_for(target)
    return "heavy" if row.kind == "asset" or row.target in HEAVY_JOBS else "light"


def op_tags(target: str) -> dict[str, str]:
    """Tags of the step(s) of a job or asset: where a distributed executor sends them."""
    return {CELERY_QUEUE_TAG: step_queue(target)}


def asset_pool(asset: str) -> str:
    """Concurrency pool of an asset: its singleton name. Runs launched from the UI's
    "Materialize" button carry no job tags, so the production instance limits every pool
    to one step at a time (deploy/dagster.yaml `concurrency.pools`) to keep them single."""
    return row_for(asset).job_name
