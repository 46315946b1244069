"""Agency portal upkeep: removed team members and deliverable access.

- `team_member_cleanup`: `project_team` rows soft-removed (`removed_at`) over 90 days ago
  are hard-deleted; current members (`removed_at` NULL) are never touched.
- `deliverable_expiry`: deliverables with `expires_at <= now` and a status other than
  `expired` are marked `expired`. Access lasts 365 days after delivery, so a deliverable
  with no `expires_at` but a `delivered_at` expires 365 days after delivery (its
  `expires_at` stays NULL; only the status changes). One with neither is a bad row:
  kept and counted.
"""

from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ops_platform.db.batch_steps import update_batch
from ops_platform.db.batching import (
    BatchResult,
    count_rows,
    delete_in_batches,
    dry_run_results,
    run_in_batches,
)
from ops_platform.jobs._cleanup import RuleOutcome, rule_job
from ops_platform.jobs._common import GuardedJobConfig
from ops_platform.log_line import LogLine


class TeamMemberCleanupConfig(GuardedJobConfig):
    retention_days: int = Field(
        default=90, ge=0, description="Hard-delete members removed longer ago than this."
    )


def delete_removed_team_members(
    engine: Engine, config: TeamMemberCleanupConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Hard-delete project team members soft-removed longer ago than the retention."""
    params = {"cutoff": now - timedelta(days=config.retention_days)}
    result = delete_in_batches(
        engine,
        "project_team",
        "removed_at IS NOT NULL AND removed_at < :cutoff",
        params,
        **config.batching(log),
        label="project_team_removed",
    )
    recently_removed = count_rows(engine, "project_team", "removed_at >= :cutoff", params)
    return RuleOutcome([result], {"project_team_removed_within_retention": recently_removed})


team_member_cleanup = rule_job(
    "team_member_cleanup",
    "cleanup_team_members",
    delete_removed_team_members,
    description="Hard-delete team members removed over 90 days ago.",
)


# --- deliverables -------------------------------------------------------------------------

NOT_EXPIRED = "status <> 'expired'"


def deliverable_rules(now: datetime, access_days: int) -> list[tuple[str, str, dict]]:
    """(label, WHERE clause, parameters) of each way a deliverable expires."""
    return [
        ("deliverables_expired", f"{NOT_EXPIRED} AND expires_at <= :now", {"now": now}),
        (
            "deliverables_expired_after_delivery",
            f"{NOT_EXPIRED} AND expires_at IS NULL AND delivered_at <= :delivered_cutoff",
            {"delivered_cutoff": now - timedelta(days=access_days)},
        ),
    ]


class DeliverableExpiryConfig(GuardedJobConfig):
    access_days: int = Field(
        default=365,
        ge=1,
        description="Deliverables without expires_at expire this long after delivered_at.",
    )


def mark_expired(
    engine: Engine, config: DeliverableExpiryConfig, label: str, where: str, params: dict, log=None
) -> list[BatchResult]:
    """Mark the deliverables matching one way of expiring as expired, in bounded batches."""
    if config.dry_run:
        return dry_run_results(engine, "deliverables", where, params, label=label)
    return run_in_batches(
        engine,
        "deliverables",
        where,
        params,
        lambda connection, batch_where, batch_params: update_batch(
            connection, "deliverables", "status = 'expired'", batch_where, batch_params, label=label
        ),
        batch_size=config.batch_size,
        progress=log,
        label=label,
        verb="expired",
    )


def mark_deliverables_expired(
    engine: Engine, config: DeliverableExpiryConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Mark deliverables past their expiry (or 365 days after delivery) as expired."""
    results = [
        result
        for label, where, params in deliverable_rules(now, config.access_days)
        for result in mark_expired(engine, config, label, where, params, log)
    ]
    no_expiry = f"{NOT_EXPIRED} AND expires_at IS NULL AND delivered_at IS NULL"
    skipped = count_rows(engine, "deliverables", no_expiry, {})
    return RuleOutcome(results, {"deliverables_skipped_no_expiry": skipped})


deliverable_expiry = rule_job(
    "deliverable_expiry",
    "expire_deliverables",
    mark_deliverables_expired,
    description="Mark deliverables past expires_at as expired.",
)


defs = dg.Definitions(jobs=[team_member_cleanup, deliverable_expiry])
