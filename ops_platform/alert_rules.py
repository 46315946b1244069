"""Prometheus alerting rules of the platform, generated from the schedule table.

`deploy/prometheus/alerts.yml` is this module's output (`ops-platform metrics rules`); a
test fails when the file no longer matches the table. The missed-run rules use the same
window as `status --check` and `missed_run_alert_sensor`: twice the schedule's period plus
its job's maximum runtime; they are quiet while a maintenance window holds the schedule's group
and for one missed-run window after it. The maintenance rules' "too long" is
OPS_MAINTENANCE_MAX_HOURS, the length past which `maintenance_window_alert_sensor` warns too.
"""

from __future__ import annotations

from ops_platform.schedules.catalog import SCHEDULES, ScheduleRow
from ops_platform.schedules.overdue import DAEMON_STALE_AFTER_S, missed_run_window_s, scheduled_rows
from ops_platform.sensors.alerting import BACKLOG_THRESHOLD, CRITICAL_STREAK
from ops_platform.settings import Settings

SCRAPE_JOB = "ops_platform"  # the Prometheus scrape job of `ops-platform metrics serve`
SEVERITY = {"critical": "critical", "high": "critical", "medium": "warning", "low": "warning"}
HEADER = """\
# Alerting rules of ops_platform. GENERATED from ops_platform/schedules/catalog.py by
#   ops-platform metrics rules > deploy/prometheus/alerts.yml
# Do not edit by hand: tests/test_alert_rules.py fails when this file is out of date.
# The scrape job must keep the exporter's own `job` label: `honor_labels: true`
# (see deploy/prometheus/prometheus.yml).
"""


def _missed_run_rule(row: ScheduleRow) -> dict:
    window = missed_run_window_s(row)
    return {
        "alert": "OpsMissedRun",
        # Since the last success; before the first one, since the schedule was switched on.
        "expr": (
            f'(time() - (ops_job_last_success_timestamp_seconds{{job="{row.job_name}"}}'
            f' or on(job) ops_schedule_on_since_timestamp_seconds{{schedule="{row.name}"}}))'
            f' > {window} and on(job) ops_schedule_running{{schedule="{row.name}"}} == 1'
            # A maintenance window over the group held the job: quiet until one missed-run
            # window after it, like missed_run_alert_sensor.
            f' unless on() max_over_time(ops_maintenance_active{{group="{row.group}"}}[{window}s])'
            " == 1"
        ),
        "for": "1m",
        "labels": {"severity": SEVERITY[row.tier], "tier": row.tier, "schedule": row.name},
        "annotations": {
            "summary": f"{row.job_name} has not succeeded for over {_human(window)}",
            "description": (
                f"Schedule {row.name} ({row.cron} {row.timezone}) is on, but {row.job_name} "
                f"has had no successful run for {{{{ $value | humanizeDuration }}}} (window: "
                "twice its period plus its max runtime). Is dagster-daemon running, the code "
                "server loading, the schedule ticking? `ops-platform status --check` says which."
            ),
        },
    }


def _assets_by_group() -> list[tuple[str, list[str]]]:
    """The assets of the schedule table (reports too) of each group, groups in table order."""
    groups: dict[str, list[str]] = {}
    for row in SCHEDULES:
        if row.kind == "asset" and row.target not in groups.get(row.group, []):
            groups.setdefault(row.group, []).append(row.target)
    return list(groups.items())


def _partitions_missing_rule(group: str, assets: list[str]) -> dict:
    """Missing partitions of a group's assets; quiet while a maintenance window holds the
    group (its catch-up sensors are held) and for the rule's 30 minutes after it."""
    rule = _rule(
        "OpsPartitionsMissing",
        f'ops_partition_missing{{asset=~"{"|".join(assets)}"}} > 0'
        f' unless on() max_over_time(ops_maintenance_active{{group="{group}"}}[30m]) == 1',
        "30m",
        "warning",
        "{{ $value }} partitions of {{ $labels.asset }} are due and not materialized",
        "Its catch-up sensor should have requested them: is it on, is the daemon running? "
        "A report waits for its inputs: freshness_alert_sensor's alert names those missing.",
    )
    rule["labels"]["group"] = group  # one rule per group
    return rule


def _human(seconds: int) -> str:
    if seconds % 86400 == 0 or seconds >= 3 * 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3 * 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds / 60:g} minutes"


def _rule(alert: str, expr: str, for_: str, severity: str, summary: str, description: str):
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def _maintenance_rules(max_hours: int) -> list[dict]:
    """A held group is news (info), a group held past the maximum window a forgotten pause."""
    return [
        _rule(
            "OpsMaintenanceActive",
            "ops_maintenance_active == 1",
            "0m",
            "info",
            "a maintenance window holds the {{ $labels.group }} group",
            "Its schedules and sensors skip their ticks until the window ends; "
            "`ops-platform status` shows who opened it, why and until when, "
            "`ops-platform resume --groups {{ $labels.group }}` ends it earlier.",
        ),
        _rule(
            "OpsMaintenanceTooLong",
            "ops_maintenance_active == 1",
            f"{max_hours}h",
            "warning",
            f"the {{{{ $labels.group }}}} group has been held for over {max_hours} hours",
            "Maintenance windows have held its schedules and sensors for longer than the "
            "maximum window (OPS_MAINTENANCE_MAX_HOURS): is the pause forgotten? "
            "`ops-platform resume` ends it; the catch-up then requests every partition missed.",
        ),
    ]


def alert_rules(max_hours: int = Settings.maintenance_max_hours) -> dict:
    """The rule groups, as the YAML document Prometheus reads (`max_hours`: the longest
    maintenance window, OPS_MAINTENANCE_MAX_HOURS)."""
    runs = [_missed_run_rule(row) for row in scheduled_rows()]
    runs.append(
        _rule(
            "OpsJobFailing",
            f"ops_job_consecutive_failures >= {CRITICAL_STREAK}",
            "0m",
            "critical",
            "{{ $labels.job }} failed {{ $value }} times in a row",
            "The job's last {{ $value }} finished runs failed or were canceled. See its runs "
            "in the Dagster UI; run_failure_alert_sensor sent each error.",
        )
    )
    daemon = [
        _rule(
            "OpsDaemonDown",
            f"ops_daemon_heartbeat_age_seconds > {DAEMON_STALE_AFTER_S}",
            "1m",
            "critical",
            "dagster-daemon {{ $labels.daemon }} has no fresh heartbeat",
            "Its last heartbeat is {{ $value | humanizeDuration }} old (+Inf: never). Nothing "
            "is scheduled, sensed or dequeued while it is down: restart dagster-daemon.",
        ),
        _rule(
            "OpsMetricsDown",
            f'up{{job="{SCRAPE_JOB}"}} == 0',
            "5m",
            "critical",
            "ops-platform metrics serve does not answer",
            "Prometheus cannot scrape the exporter: no other ops_platform alert can fire.",
        ),
        _rule(
            "OpsMetricsSourceDown",
            "ops_metrics_source_up == 0",
            "5m",
            "critical",
            "the metrics exporter cannot read the {{ $labels.source }}",
            "Its families are missing from the scrape; the exporter's log has the error.",
        ),
    ]
    queues = [
        _rule(
            "OpsEmailBacklog",
            f'ops_queue_depth{{queue="email",state="due"}} > {BACKLOG_THRESHOLD}',
            "5m",
            "warning",
            "{{ $value }} notification email batches are due",
            "Is email_queue running, and is the mail server reachable?",
        ),
        _rule(
            "OpsDeadItems",
            'ops_queue_depth{state="dead"} > 0',
            "5m",
            "warning",
            "{{ $value }} dead items in the {{ $labels.queue }} queue",
            "`ops-platform dead list --queue {{ $labels.queue }}` shows them with their last "
            "error; `ops-platform dead replay` puts them back once the cause is fixed.",
        ),
    ]
    partitions = [_partitions_missing_rule(group, assets) for group, assets in _assets_by_group()]
    return {
        "groups": [
            {"name": "ops_platform_runs", "rules": runs},
            {"name": "ops_platform_daemon", "rules": daemon},
            {"name": "ops_platform_queues", "rules": queues},
            {"name": "ops_platform_partitions", "rules": partitions},
            {"name": "ops_platform_maintenance", "rules": _maintenance_rules(max_hours)},
        ]
    }


def render_alert_rules(max_hours: int = Settings.maintenance_max_hours) -> str:
    import yaml

    return HEADER + yaml.safe_dump(alert_rules(max_hours), sort_keys=False, width=100)
