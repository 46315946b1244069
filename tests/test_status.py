"""`ops-platform status` on a test instance holding real runs (executed in-process)."""

import json
import sys
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ops_platform.cli import main
from ops_platform.db.migrate import upgrade
from ops_platform.jobs.sessions import session_cleanup
from ops_platform.resources.database import Database
from ops_platform.status import collect_status, format_table

NOW = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)


class FlakyConfig(dg.Config):
    fail: bool = False


@dg.op
def maybe_fail(config: FlakyConfig) -> None:
    if config.fail:
        raise RuntimeError("planned failure")


@dg.job
def flaky():
    maybe_fail()


@dg.job
def idle():
    maybe_fail()


@dg.sensor(job=idle, default_status=dg.DefaultSensorStatus.STOPPED)
def idle_sensor():
    return dg.SkipReason("never")


status_defs = dg.Definitions(
    jobs=[flaky, idle],
    schedules=[
        dg.ScheduleDefinition(
            name="flaky_hourly",
            job=flaky,
            cron_schedule="0 * * * *",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        ),
        # 01:30 in Sydney on 2 January (UTC+11) is 14:30 UTC on 1 January.
        dg.ScheduleDefinition(
            name="flaky_nightly_sydney",
            job=flaky,
            cron_schedule="30 1 * * *",
            execution_timezone="Australia/Sydney",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        ),
    ],
    sensors=[idle_sensor],
)


def run_flaky(instance, *outcomes: str) -> None:
    for outcome in outcomes:
        config = {"ops": {"maybe_fail": {"config": {"fail": outcome == "fail"}}}}
        result = flaky.execute_in_process(
            run_config=config, instance=instance, raise_on_error=False
        )
        assert result.success == (outcome == "ok")


def by_job(statuses):
    return {s.job: s for s in statuses}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_counts_last_run_success_rate_and_consecutive_failures(instance):
    run_flaky(instance, "ok", "fail", "ok", "fail", "fail")

    status = by_job(collect_status(instance, status_defs, last_n=20, now=NOW))["flaky"]
    assert status.last_run_status == "FAILURE"
    assert status.finished_runs == 5
    assert status.success_rate == pytest.approx(0.4)
    assert status.consecutive_failures == 2
    last = instance.get_run_records(dg.RunsFilter(job_name="flaky"), limit=1)[0]
    assert status.last_run_id == last.dagster_run.run_id
    assert status.last_run_at == datetime.fromtimestamp(last.start_time, UTC).isoformat(
        timespec="seconds"
    )

    # Only the last N finished runs count for the rate: ok, fail, fail.
    recent = by_job(collect_status(instance, status_defs, last_n=3, now=NOW))["flaky"]
    assert recent.finished_runs == 3
    assert recent.success_rate == pytest.approx(1 / 3)
    assert recent.consecutive_failures == 2

    run_flaky(instance, "ok")
    healed = by_job(collect_status(instance, status_defs, last_n=20, now=NOW))["flaky"]
    assert healed.last_run_status == "SUCCESS"
    assert healed.consecutive_failures == 0
    assert healed.success_rate == pytest.approx(3 / 6)


def test_consecutive_failures_are_not_capped_by_last_n(instance):
    run_flaky(instance, "ok", "fail", "fail", "fail", "fail")
    status = by_job(collect_status(instance, status_defs, last_n=2, now=NOW))["flaky"]
    assert status.success_rate == 0
    assert status.consecutive_failures == 4


def test_job_never_run(instance):
    status = by_job(collect_status(instance, status_defs, now=NOW))["idle"]
    assert (status.last_run_status, status.success_rate, status.consecutive_failures) == (
        None,
        None,
        0,
    )
    assert status.schedule_on is None and status.next_tick is None
    assert status.sensors == ["idle_sensor"] and status.sensor_on is False


def test_next_tick_is_the_earliest_running_schedule_and_follows_stored_state(instance):
    status = by_job(collect_status(instance, status_defs, now=NOW))["flaky"]
    assert status.schedules == ["flaky_hourly", "flaky_nightly_sydney"]
    assert status.schedule_on is True
    assert status.next_tick == "2026-01-01T11:00:00+00:00"

    origin = LoadableTargetOrigin(
        executable_path=sys.executable, python_file=__file__, attribute="status_defs"
    )
    with in_process_test_workspace(instance, origin) as workspace:
        location = next(iter(workspace.get_code_location_entries().values())).code_location
        repo = location.get_repository("__repository__")

        hourly = repo.get_schedule("flaky_hourly")
        instance.stop_schedule(hourly.get_remote_origin_id(), hourly.selector_id, hourly)
        status = by_job(collect_status(instance, status_defs, now=NOW))["flaky"]
        assert status.schedule_on is True
        assert status.next_tick == "2026-01-01T14:30:00+00:00"

        nightly = repo.get_schedule("flaky_nightly_sydney")
        instance.stop_schedule(nightly.get_remote_origin_id(), nightly.selector_id, nightly)
        status = by_job(collect_status(instance, status_defs, now=NOW))["flaky"]
        assert status.schedule_on is False
        assert status.next_tick is None

        instance.start_sensor(repo.get_sensor("idle_sensor"))
        assert by_job(collect_status(instance, status_defs, now=NOW))["idle"].sensor_on is True


def test_table_has_a_row_per_job(instance):
    run_flaky(instance, "ok", "fail")
    table = format_table(collect_status(instance, status_defs, last_n=20, now=NOW), last_n=20)
    flaky_row = next(line for line in table.splitlines() if line.startswith("flaky"))
    assert (
        "FAILURE" in flaky_row and "50% of 2" in flaky_row and "2026-01-01T11:00:00Z" in flaky_row
    )


def test_cli_json_on_the_code_location(tmp_path, monkeypatch, capsys):
    """`ops-platform status --json` against DAGSTER_HOME, with real session_cleanup runs."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(app_url)
    with dg.DagsterInstance.get() as instance:
        for _ in range(2):
            result = session_cleanup.execute_in_process(
                instance=instance, resources={"database": Database(url=app_url)}
            )
            assert result.success

    assert main(["status", "--json", "--last", "5"]) == 0
    rows = {row["job"]: row for row in json.loads(capsys.readouterr().out)}
    from ops_platform.definitions import defs

    visible_jobs = {
        job.name
        for job in defs.get_repository_def().get_all_jobs()
        if not job.name.startswith("__")
    }
    assert set(rows) == visible_jobs
    cleanup = rows["session_cleanup"]
    assert cleanup["last_run_status"] == "SUCCESS"
    assert cleanup["finished_runs"] == 2 and cleanup["success_rate"] == 1.0
    assert cleanup["consecutive_failures"] == 0
    assert cleanup["schedules"] == [
        "session_cleanup_deep",
        "session_cleanup_light",
        "session_cleanup_safety_net",
    ]
    assert cleanup["next_tick"] is not None


def test_cli_rejects_bad_last(capsys):
    assert main(["status", "--last", "0"]) == 2
    assert "--last must be at least 1" in capsys.readouterr().err


def test_which_of_several_schedules_is_on_and_whether_the_daemon_beats(instance):
    from dagster._daemon.types import DaemonHeartbeat

    from ops_platform.status import daemon_line

    status = by_job(collect_status(instance, status_defs, now=NOW))["flaky"]
    assert status.schedules_running == ["flaky_hourly", "flaky_nightly_sydney"]
    assert "2/2 on: hourly, nightly_sydney" in format_table([status], last_n=20)
    assert daemon_line(instance, NOW).startswith("daemon: NOT RUNNING or stale")
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(NOW.timestamp(), daemon_type, "test", errors=[])
        )
    assert daemon_line(instance, NOW) == "daemon: heartbeats fresh"
