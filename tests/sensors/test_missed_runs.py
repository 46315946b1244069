"""Missed runs: with no daemon and the checks' clock moved past a schedule's window, the
missed-run sensor alerts once and `status --check` fails naming the job and the daemon;
after a good run (and the daemon back) both recover."""

import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat

from ops_platform.cli import main
from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database
from ops_platform.schedules import overdue
from ops_platform.schedules.catalog import SCHEDULES
from ops_platform.sensors.missed_runs import missed_run_alert_sensor
from tests.platform_env import platform_defs, platform_env, run_job

THRONES = next(row for row in SCHEDULES if row.name == "throne_expiry_every_5_min")


def test_window_is_twice_the_period_plus_the_max_runtime():
    assert overdue.missed_run_window_s(THRONES) == 2 * 300 + 240
    assert overdue.schedule_period_s("0 2 1 * *") == 31 * 86400  # the longest month
    assert overdue.schedule_period_s("5 0 * * *", "Australia/Sydney") == 25 * 3600  # DST ends
    assert overdue.schedule_period_s("30 3 * * 0") == 7 * 86400


def last_success(instance) -> datetime:
    found = overdue.last_success_time(instance, "throne_expiry")
    assert found is not None
    return found


def alerts_logged(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def evaluate(sensor_context_args, cursor):
    with dg.build_sensor_context(cursor=cursor, **sensor_context_args) as context:
        result = missed_run_alert_sensor(context)
        return context.cursor, result


def check(capsys) -> tuple[int, str]:
    code = main(["status", "--check"])
    return code, capsys.readouterr().out


def test_missed_run_alerts_once_and_recovers(db_url, tmp_path, monkeypatch, capsys):
    env = platform_env(monkeypatch, tmp_path, db_url)
    defs = platform_defs()
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    log_file = tmp_path / "alerts.log"
    sensor_args = dict(
        instance=instance,
        repository_def=defs.get_repository_def(),
        resources={"alerts": Alerts(log_file=str(log_file)), "database": Database(url=db_url)},
    )

    assert run_job(defs, instance, "throne_expiry").success
    first = last_success(instance)
    # The clock of the checks, moved just past the window after that success: the daemon
    # is gone (no heartbeat ever) and no run came.
    clock = first + timedelta(seconds=overdue.missed_run_window_s(THRONES) + 1)
    monkeypatch.setattr(overdue, "check_now", lambda: clock)

    cursor, result = evaluate(sensor_args, None)
    alerts = alerts_logged(log_file)
    assert [a["title"] for a in alerts] == ["throne_expiry missed its scheduled runs"]
    assert alerts[0]["severity"] == "warning"
    assert "throne_expiry_every_5_min" in alerts[0]["text"] and "window 14m" in alerts[0]["text"]
    assert "throne_expiry_every_5_min" in result.skip_message

    # Once per incident: the next tick says nothing new.
    cursor, _ = evaluate(sensor_args, cursor)
    assert len(alerts_logged(log_file)) == 1

    code, out = check(capsys)
    assert code == 1
    assert "OVERDUE throne_expiry (schedule throne_expiry_every_5_min)" in out
    assert "STALE daemon SCHEDULER: no heartbeat ever" in out
    assert "session_cleanup" not in out  # never succeeded and never switched on: not judged

    # The daemon comes back and a good run happens (a little after the first one).
    while datetime.now(UTC) < first + timedelta(seconds=3):
        time.sleep(0.2)
    assert run_job(defs, instance, "throne_expiry").success
    assert last_success(instance) > first + timedelta(seconds=2)
    for daemon in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(timestamp=clock.timestamp() - 10, daemon_type=daemon, daemon_id="t")
        )

    cursor, result = evaluate(sensor_args, cursor)
    alerts = alerts_logged(log_file)
    assert [a["title"] for a in alerts][1:] == ["throne_expiry recovered"]
    assert alerts[1]["severity"] == "info" and "succeeded again" in alerts[1]["text"]
    assert json.loads(cursor) == {"open": {}}
    code, out = check(capsys)
    assert (code, out.strip()) == (0, "ok: daemon heartbeats fresh, no schedule overdue")

    # A stale heartbeat alone fails the check too, naming the daemon.
    late = clock + timedelta(seconds=overdue.DAEMON_STALE_AFTER_S + 30)
    monkeypatch.setattr(overdue, "check_now", lambda: late)
    code, out = check(capsys)
    assert code == 1 and "STALE daemon SENSOR: last heartbeat 5m ago" in out
    instance.dispose()


def test_check_json(db_url, tmp_path, monkeypatch, capsys):
    platform_env(monkeypatch, tmp_path, db_url)
    code = main(["status", "--check", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False and report["overdue"] == []
    assert any("SCHEDULER" in line for line in report["stale_daemons"])


@pytest.mark.parametrize("tier,severity", [("critical", "critical"), ("low", "warning")])
def test_severity_follows_the_tier(tier, severity):
    from ops_platform.sensors.missed_runs import SEVERITY

    assert SEVERITY[tier] == severity
