"""Maintenance windows: `ops-platform pause` holds every schedule and sensor of the paused
groups (skip message: the reason and the end), `resume` lets them tick again, the instance's
schedule states are untouched; planned windows start and past ones end by themselves; the
catch-up sensor materializes the partition that fell due inside a window once, after it."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import select

from ops_platform import held_sensors, maintenance
from ops_platform.cli import main
from ops_platform.db import schema
from ops_platform.definitions import build_definitions
from ops_platform.jobs.maintenance_window import maintenance_window
from ops_platform.resources.database import Database
from ops_platform.schedules import build
from ops_platform.schedules.build import catchup_partition_keys, last_partition_keys
from ops_platform.schedules.catalog import row_for
from ops_platform.settings import load_settings


@pytest.fixture
def repo(ops_env):
    return build_definitions(load_settings(ops_env)).get_repository_def()


def _schedule_tick(repo, name, at=None):
    context = dg.build_schedule_context(
        scheduled_execution_time=at or datetime.now(UTC), repository_def=repo
    )
    return repo.get_schedule_def(name).evaluate_tick(context)


def _sensor_tick(repo, name, instance, db_url, cursor=None):
    with dg.build_sensor_context(
        instance=instance,
        repository_def=repo,
        cursor=cursor,
        resources={"database": Database(url=db_url)},
    ) as context:
        return repo.get_sensor_def(name).evaluate_tick(context)


def _windows(engine):
    table = schema.maintenance_windows
    with engine.connect() as connection:
        return connection.execute(select(table).order_by(table.c.id)).all()


WATCHING = json.dumps({"watching_since": "2025-11-01T00:00:00+00:00"})


def test_pause_all_holds_schedules_and_sensors_resume_releases(repo, ops_env, engine, capsys):
    db_url = ops_env["OPS_DATABASE_URL"]
    with dg.instance_for_test() as instance:
        states_before = instance.all_instigator_state()
        assert _schedule_tick(repo, "session_cleanup_light").run_requests
        assert _schedule_tick(repo, "og_daily_bonus_daily").run_requests

        assert main(["pause", "--all", "--reason", "app database migration", "--for", "2h"]) == 0
        assert "opened maintenance window #1 (all groups) by alice" in capsys.readouterr().out
        [row] = _windows(engine)
        assert (row.created_by, row.groups, row.ended_at) == ("alice", "*", None)

        for name in ("session_cleanup_light", "og_daily_bonus_daily"):
            tick = _schedule_tick(repo, name)
            assert tick.run_requests == []
            assert "app database migration" in tick.skip_message
            assert "until" in tick.skip_message and "UTC" in tick.skip_message
        for name in ("og_daily_bonus_catchup", "email_queue_due_sensor", "games_freshness_sensor"):
            tick = _sensor_tick(repo, name, instance, db_url, cursor=WATCHING)
            assert tick.run_requests == []
            assert "app database migration" in tick.skip_message
            assert tick.cursor == WATCHING  # the catch-up's cursor is kept through the window
        # Alerts on every job are never held.
        assert held_sensors.group_of(repo.get_sensor_def("missed_run_alert_sensor")) is None

        assert main(["resume"]) == 0
        assert "ended maintenance window #1" in capsys.readouterr().out
        assert _windows(engine)[0].ended_by == "alice"
        assert _schedule_tick(repo, "session_cleanup_light").run_requests
        assert _schedule_tick(repo, "og_daily_bonus_daily").run_requests
        assert _sensor_tick(repo, "og_daily_bonus_catchup", instance, db_url, WATCHING).run_requests
        assert "app database" not in (
            _sensor_tick(repo, "games_freshness_sensor", instance, db_url).skip_message or ""
        )
        assert instance.all_instigator_state() == states_before


def test_pause_of_some_groups_holds_only_them_and_resume_of_one_keeps_the_rest(
    repo, ops_env, engine, capsys
):
    assert main(["pause", "--groups", "cleanup,email", "--reason", "restore", "--by", "bob"]) == 0
    assert "restore" in _schedule_tick(repo, "session_cleanup_light").skip_message
    assert _schedule_tick(repo, "og_daily_bonus_daily").run_requests  # engagement: not paused
    assert main(["resume", "--groups", "cleanup"]) == 0
    out = capsys.readouterr().out
    assert "still paused: maintenance window #2 (email) by bob" in out
    assert _schedule_tick(repo, "session_cleanup_light").run_requests
    settings = load_settings(ops_env)
    assert maintenance.window_over(settings, "email").reason == "restore"
    assert maintenance.window_over(settings, "cleanup") is None


def test_bad_windows_are_refused(ops_env, capsys):
    assert main(["pause", "--groups", "cleanup,nope", "--reason", "x"]) == 2
    assert "unknown group(s) nope" in capsys.readouterr().err
    # Longer than the maximum (24 h) with --for: refused; --until may name a later end.
    assert main(["pause", "--all", "--reason", "x", "--for", "25h"]) == 2
    assert "OPS_MAINTENANCE_MAX_HOURS" in capsys.readouterr().err
    later = (datetime.now(UTC) + timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M")
    assert main(["pause", "--all", "--reason", "x", "--until", later]) == 0
    assert main(["pause", "--all", "--reason", "x", "--until", "2020-01-01T00:00"]) == 2
    assert "in the past" in capsys.readouterr().err


def test_default_length_is_the_maximum(ops_env, engine):
    ops_env["OPS_MAINTENANCE_MAX_HOURS"] = "3"
    settings = load_settings(ops_env)
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert maintenance.window_bounds(now, settings.maintenance_max_hours) == (
        now,
        now + timedelta(hours=3),
    )


def test_past_window_ends_and_planned_window_starts_by_themselves(
    repo, ops_env, engine, monkeypatch
):
    now = datetime.now(UTC)
    maintenance.open_window(
        engine,
        groups=None,
        reason="over already",
        by="alice",
        starts_at=now - timedelta(hours=3),
        ends_at=now - timedelta(minutes=1),
    )
    assert _schedule_tick(repo, "session_cleanup_light").run_requests
    assert main(["pause", "--all", "--reason", "release 4.2", "--from", _iso(now + timedelta(hours=1)), "--for", "1h"]) == 0  # fmt: skip
    assert _schedule_tick(repo, "session_cleanup_light").run_requests  # planned, not yet
    monkeypatch.setattr(maintenance, "utcnow", lambda: now + timedelta(minutes=90))
    assert "release 4.2" in _schedule_tick(repo, "session_cleanup_light").skip_message
    monkeypatch.setattr(maintenance, "utcnow", lambda: now + timedelta(hours=2, minutes=1))
    assert _schedule_tick(repo, "session_cleanup_light").run_requests


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def test_catchup_after_a_window_over_a_daily_boundary_materializes_the_missed_day_once(
    repo, ops_env, engine, monkeypatch
):
    """og_daily_bonus ticks at 00:05 Sydney (13:05 UTC in January). A window from 12:00 to
    14:00 UTC holds that tick and the catch-up; after it the catch-up requests that day once."""
    db_url = ops_env["OPS_DATABASE_URL"]
    partitions_def = repo.get_job("og_daily_bonus_job").partitions_def
    start, end = datetime(2026, 1, 10, 12, 0, tzinfo=UTC), datetime(2026, 1, 10, 14, 0, tzinfo=UTC)
    maintenance.open_window(
        engine, groups=None, reason="db migration", by="alice", starts_at=start, ends_at=end
    )
    cursor = json.dumps({"watching_since": "2026-01-08T00:00:00+00:00"})

    def at(moment):
        monkeypatch.setattr(build, "sensor_now", lambda: moment)
        monkeypatch.setattr(maintenance, "utcnow", lambda: moment)

    with dg.DagsterInstance.ephemeral() as instance:
        before = catchup_partition_keys(
            partitions_def, row_for("og_daily_bonus"), start, datetime(2026, 1, 8, tzinfo=UTC)
        )
        for key in before:  # every day due before the window was paid
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="og_daily_bonus", partition=key)
            )
        at(datetime(2026, 1, 10, 13, 30, tzinfo=UTC))
        tick_time = datetime(2026, 1, 10, 13, 5, tzinfo=UTC)
        assert (
            "db migration" in _schedule_tick(repo, "og_daily_bonus_daily", tick_time).skip_message
        )
        held = _sensor_tick(repo, "og_daily_bonus_catchup", instance, db_url, cursor)
        assert held.run_requests == [] and "db migration" in held.skip_message

        at(datetime(2026, 1, 10, 14, 30, tzinfo=UTC))  # the window ended by itself at 14:00
        missed = [str(k) for k in last_partition_keys(partitions_def, tick_time)]
        result = _sensor_tick(repo, "og_daily_bonus_catchup", instance, db_url, cursor)
        assert [str(r.partition_key) for r in result.run_requests] == missed
        assert [r.run_key for r in result.run_requests] == [f"og_daily_bonus:{missed[0]}"]
        for key in missed:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="og_daily_bonus", partition=key)
            )
        again = _sensor_tick(repo, "og_daily_bonus_catchup", instance, db_url, cursor)
        assert again.run_requests == []  # exactly once


def test_the_ui_job_opens_and_ends_windows(ops_env, database, engine):
    resources = {"database": database, "maintenance_policy": maintenance.MaintenancePolicy()}
    config = {"action": "pause", "groups": ["payments"], "reason": "provider outage"}
    result = maintenance_window.execute_in_process(
        run_config={"ops": {"set_maintenance_window": {"config": config}}}, resources=resources
    )
    assert result.success
    [row] = _windows(engine)
    assert (row.groups, row.reason) == ("payments", "provider outage")
    assert row.created_by.startswith("dagster run ")
    assert row.ends_at - row.starts_at == timedelta(hours=24)
    resume = {"action": "resume", "groups": ["payments"]}
    result = maintenance_window.execute_in_process(
        run_config={"ops": {"set_maintenance_window": {"config": resume}}}, resources=resources
    )
    assert result.success and _windows(engine)[0].ended_at is not None


# --- visible: alerts, missed-run quiet, status, gauge -----------------------------------------
def _alert_titles(path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["title"] for line in path.read_text().splitlines()]


def test_alerts_once_when_a_window_starts_ends_and_passes_the_maximum(database, engine, tmp_path):
    from ops_platform.resources.alerts import Alerts
    from ops_platform.sensors.maintenance import maintenance_window_alert_sensor

    log_file = tmp_path / "alerts.log"
    resources = {
        "alerts": Alerts(log_file=str(log_file)),
        "database": database,
        "maintenance_policy": maintenance.MaintenancePolicy(max_hours=1),
    }

    instance = dg.DagsterInstance.ephemeral()  # each tick also applies windows to its queue

    def tick(cursor):
        with dg.build_sensor_context(
            cursor=cursor, resources=resources, instance=instance
        ) as context:
            maintenance_window_alert_sensor(context)
            return context.cursor

    now = datetime.now(UTC)
    cursor = tick(None)
    assert _alert_titles(log_file) == []
    # Explicitly longer than the maximum (--until): it runs, and alerts once past 1 h.
    maintenance.open_window(
        engine,
        groups=["email"],
        reason="SMTP move",
        by="alice",
        starts_at=now - timedelta(hours=2),
        ends_at=now + timedelta(hours=1),
    )
    cursor = tick(cursor)
    assert _alert_titles(log_file) == [
        "maintenance window #1 started (email)",
        "maintenance window #1 still active after 1 h",
    ]
    cursor = tick(cursor)
    assert len(_alert_titles(log_file)) == 2  # once each
    maintenance.end_windows(engine, groups=None, by="bob", now=datetime.now(UTC))
    cursor = tick(cursor)
    assert _alert_titles(log_file)[2:] == ["maintenance window #1 ended (email)"]
    assert "resumed at" in log_file.read_text().splitlines()[-1]
    tick(cursor)
    assert len(_alert_titles(log_file)) == 3


def test_missed_runs_of_a_held_group_stay_quiet_then_alert_again(database, engine):
    from ops_platform.schedules.overdue import Overdue
    from ops_platform.sensors.missed_runs import _held_by_windows

    now = datetime.now(UTC)
    late = {
        "session_cleanup_light": Overdue(
            "session_cleanup_light", "session_cleanup", 1, now - timedelta(hours=6), True
        ),
        "og_daily_bonus_daily": Overdue(
            "og_daily_bonus_daily", "og_daily_bonus", 1, now - timedelta(days=3), True
        ),
    }
    assert _held_by_windows(database, late, now) == set()
    maintenance.open_window(
        engine,
        groups=["cleanup"],
        reason="restore",
        by="alice",
        starts_at=now - timedelta(hours=5),
        ends_at=now + timedelta(hours=1),
    )
    assert _held_by_windows(database, late, now) == {"session_cleanup_light"}
    # Long after the window (more than the schedule's missed-run window): alerting again.
    assert _held_by_windows(database, late, now + timedelta(days=2)) == set()


def test_status_shows_windows_first_and_the_gauge_says_which_groups(
    db_url, engine, tmp_path, monkeypatch, capsys
):
    from prometheus_client import CollectorRegistry, generate_latest

    from tests.platform_env import platform_env

    platform_env(monkeypatch, tmp_path, db_url)
    now = datetime.now(UTC)
    assert main(["pause", "--groups", "games", "--reason", "leaderboard fix", "--for", "1h"]) == 0
    assert main(["pause", "--all", "--reason", "release", "--from", _iso(now + timedelta(days=1))]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MAINTENANCE ACTIVE maintenance window #1 (games)")
    assert "leaderboard fix" in lines[0]
    assert lines[1].startswith("MAINTENANCE PLANNED maintenance window #2 (all groups)")

    class Family:
        def collect(self):
            yield maintenance.maintenance_family(engine, datetime.now(UTC))

    registry = CollectorRegistry()
    registry.register(Family())
    text = generate_latest(registry).decode()
    assert 'ops_maintenance_active{group="games"} 1.0' in text
    assert 'ops_maintenance_active{group="email"} 0.0' in text


def test_a_run_launched_by_hand_in_a_window_runs_and_says_so(db_url, tmp_path, monkeypatch):
    from tests.platform_env import platform_defs, platform_env, run_job

    platform_env(monkeypatch, tmp_path, db_url)
    assert main(["pause", "--groups", "cleanup", "--reason", "restore", "--for", "1h"]) == 0
    with dg.instance_for_test() as instance:
        result = run_job(platform_defs(), instance, "token_cleanup")
        assert result.success
        messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
        assert any("holds the group cleanup" in m and "restore" in m for m in messages)


# --- the reports after a window ---------------------------------------------------------------
WEEK_AND_MONTH_END = datetime(2026, 2, 1, tzinfo=UTC)  # a Sunday and a 1st: both reports due
REPORTS = {"weekly_trend_report": "2026-01-25", "monthly_executive_summary": "2026-01-01"}
DAILY_ANALYTICS = ("daily_course_analytics", "daily_student_analytics")


def _inputs_landed(instance, days) -> None:
    """Daily analytics partitions materialized with their blocking check passed, as their
    daily runs record them."""
    from ops_platform.assets.analytics.checks import IN_RANGE

    for day in days:
        for asset in DAILY_ANALYTICS:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=asset, partition=day)
            )
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(asset), check_name=IN_RANGE, passed=True, blocking=True
                )
            )


class _Automation:
    """Successive evaluations of the reports' automation conditions, as their
    `<asset>_automation` sensors run them in the daemon (cursor carried over)."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None

    def requested(self, moment: datetime) -> dict[str, list[str]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            asset_selection=dg.AssetSelection.assets(*REPORTS),
            evaluation_time=moment,
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        return {
            report: sorted(str(k) for k in result.get_requested_partitions(dg.AssetKey(report)))
            for report in REPORTS
            if result.get_requested_partitions(dg.AssetKey(report))
        }


def test_reports_due_inside_a_window_are_requested_once_after_it(ops_env, engine, monkeypatch):
    """The window (Saturday 23:30 to Sunday 03:00 UTC) covers the end of a week and of a month.
    What requests the reports is their automation sensor, which a window does not hold: they
    wait for their last input day, whose schedule and catch-up sensor the window does hold.
    After the window the catch-up runs that day (for real, on the app database), and each
    report's partition is requested exactly once."""
    db_url = ops_env["OPS_DATABASE_URL"]
    defs = build_definitions(load_settings(ops_env))
    repo = defs.get_repository_def()
    last_day = "2026-01-31"
    maintenance.open_window(
        engine,
        groups=None,
        reason="warehouse migration",
        by="alice",
        starts_at=WEEK_AND_MONTH_END - timedelta(minutes=30),
        ends_at=WEEK_AND_MONTH_END + timedelta(hours=3),
    )
    watching = json.dumps({"watching_since": "2026-01-31T22:00:00+00:00"})

    def at(moment):
        monkeypatch.setattr(build, "sensor_now", lambda: moment)
        monkeypatch.setattr(maintenance, "utcnow", lambda: moment)
        return moment

    with dg.instance_for_test() as instance:
        # Every day before the window's was computed (from the partitions' first day).
        days = [
            (datetime(2025, 12, 1) + timedelta(days=n)).date().isoformat()
            for n in range((datetime(2026, 1, 31) - datetime(2025, 12, 1)).days)
        ]
        _inputs_landed(instance, days)
        automation = _Automation(defs, instance)
        assert automation.requested(at(datetime(2026, 1, 31, 22, tzinfo=UTC))) == {}

        # Inside the window: the daily schedules and catch-up sensors skip, the reports wait.
        for moment in (WEEK_AND_MONTH_END, WEEK_AND_MONTH_END + timedelta(hours=2, minutes=30)):
            at(moment)
            for asset in DAILY_ANALYTICS:
                tick = _schedule_tick(repo, f"{asset}_daily", WEEK_AND_MONTH_END)
                assert tick.run_requests == [] and "warehouse migration" in tick.skip_message
                held = _sensor_tick(repo, f"{asset}_catchup", instance, db_url, watching)
                assert held.run_requests == [] and "warehouse migration" in held.skip_message
            assert automation.requested(moment) == {}

        # After it: the catch-up requests the last day of the week and month, once each.
        after = at(WEEK_AND_MONTH_END + timedelta(hours=3, minutes=10))
        for asset in DAILY_ANALYTICS:
            result = _sensor_tick(repo, f"{asset}_catchup", instance, db_url, watching)
            assert [r.run_key for r in result.run_requests] == [f"{asset}:{last_day}"]
            run = repo.get_job(f"{asset}_job").execute_in_process(
                partition_key=last_day, instance=instance
            )
            assert run.success
            assert (
                _sensor_tick(repo, f"{asset}_catchup", instance, db_url, watching).run_requests
                == []
            )
        assert automation.requested(after) == {report: [key] for report, key in REPORTS.items()}
        for report, key in REPORTS.items():  # the runs the sensor launched materialize them
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=report, partition=key)
            )
        for minutes in (1, 2, 60):
            assert automation.requested(after + timedelta(minutes=minutes)) == {}  # once
