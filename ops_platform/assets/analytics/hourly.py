"""`hourly_platform_metrics` (UTC hour): signups, active sessions, payments, queue depths
and failed Dagster runs of the hour, one row per hour in `hourly_platform_metrics`."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import Connection, Engine, delete, insert, text

from ops_platform.assets._malformed import asset_bad_rows
from ops_platform.assets._ranges import PartitionOutcome, materialize_partitions
from ops_platform.assets.analytics.partitions import HOURLY_PARTITIONS, analytics_asset
from ops_platform.db import schema
from ops_platform.db.bad_rows import JOB_TABLES, well_formed
from ops_platform.db.engine import utcnow
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database
from ops_platform.retries import transient_retries


def hour_metrics(connection: Connection, start: datetime, end: datetime) -> dict:
    """Platform figures of the hour [start, end). Depths are as at the end of the hour."""
    p = {"start": start, "end": end}
    # Malformed payments, queue batches and outbox events are skipped (and counted apart).
    ok = {table: well_formed(connection, table) for table in JOB_TABLES["hourly_platform_metrics"]}
    settled = "COALESCE(settled_at, last_checked_at, created_at)"
    payments = f"payments WHERE {ok['payments']} AND {settled} >= :start AND {settled} < :end"
    row = (
        connection.execute(
            text(f"""
        SELECT
          (SELECT COUNT(*) FROM users WHERE created_at >= :start AND created_at < :end) AS signups,
          (SELECT COUNT(*) FROM sessions
            WHERE created_at < :end
              AND (expires_at IS NULL OR expires_at >= :end)
              AND (revoked_at IS NULL OR revoked_at >= :end)) AS active_sessions,
          (SELECT COUNT(*) FROM {payments} AND status = 'succeeded') AS payments_succeeded,
          (SELECT COUNT(*) FROM {payments} AND status = 'failed') AS payments_failed,
          (SELECT COALESCE(SUM(amount_cents), 0) FROM {payments} AND status = 'succeeded')
            AS revenue_cents,
          (SELECT COUNT(*) FROM notification_email_queue
            WHERE COALESCE(scheduled_for, claimed_at) < :end
              AND (status IN ('pending', 'processing', 'failed')
                   OR (status = 'sent' AND sent_at >= :end))
              AND {ok["notification_email_queue"]}) AS email_queue_depth,
          (SELECT COUNT(*) FROM realtime_events
            WHERE created_at < :end AND (published_at IS NULL OR published_at >= :end)
              AND {ok["realtime_events"]}) AS realtime_outbox_depth
    """),
            p,
        )
        .mappings()
        .one()
    )
    return {key: int(value or 0) for key, value in row.items()}


def count_failed_runs(instance: dg.DagsterInstance | None, start: datetime, end: datetime) -> int:
    """Dagster runs that failed during [start, end) (their last update in the hour)."""
    if instance is None:
        return 0
    return instance.get_runs_count(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE], updated_after=start, updated_before=end
        )
    )


def build_hourly_metrics(engine: Engine, start: datetime, job_failures: int, now: datetime) -> dict:
    end = start + timedelta(hours=1)
    with engine.connect() as connection:
        metrics = hour_metrics(connection, start, end)
    row = {"hour": start, **metrics, "job_failures": job_failures, "computed_at": now}
    table = schema.hourly_platform_metrics
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.hour == start))
        connection.execute(insert(table).values(**row))
    return row


@analytics_asset(
    "hourly_platform_metrics",
    HOURLY_PARTITIONS,
    "platform",
    deps=[
        dg.AssetKey(name)
        for name in ("users", "sessions", "payments", "notification_email_queue", "realtime_events")
    ],
    kinds={"pandas", "sql", "postgres"},
    description="Per UTC hour: signups, active sessions, payments succeeded/failed and revenue, email "
    "queue and real-time outbox depth, failed Dagster runs (table hourly_platform_metrics).",
)
def hourly_platform_metrics(context: dg.AssetExecutionContext, database: Database):
    bad_rows = asset_bad_rows(context, database)  # once for the run: a count of the tables

    def one(key: str) -> PartitionOutcome:
        started = time.perf_counter()
        window = HOURLY_PARTITIONS.time_window_for_partition_key(key)
        start = window.start.astimezone(UTC)
        failures = count_failed_runs(context.instance, start, window.end.astimezone(UTC))
        with transient_retries(context):
            row = build_hourly_metrics(database.engine, start, failures, utcnow())
        shown = {k: v for k, v in row.items() if k not in ("hour", "computed_at")}
        metadata = dict(shown)
        metadata.update(
            hour=start.isoformat(),
            rows_written=1,
            **bad_rows,
            duration_s=round(time.perf_counter() - started, 3),
            preview=dg.MetadataValue.md(markdown_table(None, [shown])),
        )
        return PartitionOutcome(metadata=metadata)

    yield from materialize_partitions(context, one)
