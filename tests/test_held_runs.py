"""Queued runs of a paused group wait in the run queue through a maintenance window and run
after it: Dagster's own QueuedRunCoordinatorDaemon, on an instance configured by
deploy/dagster.yaml (its Postgres storage when the app database is Postgres), leaves them
QUEUED while the window is active and launches them once `resume` or the window's end
releases them. Other groups, and runs launched by hand during the window, are not held;
`pause --drain` waits only for the runs in progress."""

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.storage.tags import (
    ASSET_EVALUATION_ID_TAG,
    AUTO_MATERIALIZE_TAG,
    AUTOMATION_CONDITION_TAG,
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    SENSOR_NAME_TAG,
)
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator import QueuedRunCoordinatorDaemon
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ops_platform import held_runs, maintenance, maintenance_commands
from ops_platform.cli import main
from ops_platform.db.engine import psycopg_url, utcnow
from ops_platform.definitions import defs
from ops_platform.jobs.maintenance_window import maintenance_window
from ops_platform.resources.alerts import Alerts
from ops_platform.schedules.catalog import job_tags, row_for
from ops_platform.sensors import maintenance as alert_sensor
from ops_platform.settings import load_settings
from tests.conftest import POSTGRES_URL

REPO = defs.get_repository_def()
PRODUCTION = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
QUEUED, STARTING = dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING


@pytest.fixture
def dagster_pg(monkeypatch):
    """A database of its own for the instance's storage; DAGSTER_PG_* point at it."""
    url = make_url(POSTGRES_URL)
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    admin = create_engine(psycopg_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    env = {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": name,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def production_config(db_url, request) -> dict:
    """deploy/dagster.yaml, with a launcher that records launches instead of starting
    processes; Postgres storage beside a Postgres app database, else SQLite."""
    config = yaml.safe_load(PRODUCTION.read_text())
    config["run_launcher"] = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    if db_url.startswith("sqlite"):
        del config["storage"]
    else:
        request.getfixturevalue("dagster_pg")
    return config


@pytest.fixture
def instance(db_url, production_config, tmp_path, monkeypatch):
    """The production instance on the app database `db_url`. DAGSTER_HOME points at it, so
    `ops-platform pause` reaches the same run queue."""
    monkeypatch.setenv("OPS_DATABASE_URL", db_url)
    monkeypatch.setenv("OPS_DATA_DIR", str(tmp_path / "ops_data"))
    monkeypatch.setenv("OPS_OPERATOR", "alice")
    with dg.instance_for_test(overrides=production_config) as instance:
        assert held_runs.queue_holds_runs(instance)
        yield instance


def _queue(instance, target: str, tags=None) -> str:
    """A run of `target`'s job with its schedule-table tags, submitted to the run queue."""
    job_name = row_for(target).job_name
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="ops_platform.definitions")
    )
    run = instance.create_run_for_job(
        job_def=REPO.get_job(job_name),
        tags={**job_tags(target), **(tags or {})},
        remote_job_origin=RemoteJobOrigin(
            RemoteRepositoryOrigin(origin, "__repository__"), job_name
        ),
    )
    instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
    return run.run_id


def _queue_assets(instance, asset: str, tags: dict[str, str]) -> str:
    """A run of `asset` on the implicit asset job, as Dagster's automation sensors and the
    UI's Materialize button create it, submitted to the run queue."""
    keys = [dg.AssetKey(asset)]
    job = REPO.get_implicit_job_def_for_assets(keys)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="ops_platform.definitions")
    )
    run = instance.create_run_for_job(
        job_def=job,
        asset_selection=frozenset(keys),
        tags=tags,
        remote_job_origin=RemoteJobOrigin(
            RemoteRepositoryOrigin(origin, "__repository__"), job.name
        ),
    )
    instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
    return run.run_id


def _automation_tags(asset: str) -> dict[str, str]:
    """The tags Dagster's asset daemon gives a run its `<asset>_automation` sensor requests."""
    sensor = REPO.get_sensor_def(f"{asset}_automation")
    return {
        SENSOR_NAME_TAG: sensor.name,
        **sensor.run_tags,
        AUTO_MATERIALIZE_TAG: "true",
        AUTOMATION_CONDITION_TAG: "true",
        ASSET_EVALUATION_ID_TAG: "7",
    }


def _dequeue(instance) -> None:
    """One iteration of the daemon's run queue."""
    with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as context:
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))


def _status(instance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _held_tag(instance, run_id: str) -> str | None:
    return instance.get_run_by_id(run_id).tags.get(held_runs.HELD_TAG)


def test_pause_holds_queued_runs_of_the_group_and_resume_launches_them(instance, capsys):
    cleanup = _queue(instance, "session_cleanup")
    email = _queue(instance, "email_queue")
    assert main(["pause", "--groups", "cleanup", "--reason", "restore", "--for", "1h"]) == 0
    out = capsys.readouterr().out
    assert "held 1 queued run(s)" in out and f"session_cleanup {cleanup[:8]}" in out
    # During the window: one launched by hand runs; one a sensor requested (a tick that
    # raced the window) waits like the queued one.
    by_hand = _queue(instance, "token_cleanup")
    by_sensor = _queue(
        instance, "unverified_account_cleanup", {"dagster/sensor_name": "some_sensor"}
    )
    maintenance_commands.sync_queue(load_settings())  # the alert sensor's minute, now

    for _ in range(2):  # the queue keeps them, iteration after iteration
        _dequeue(instance)
        assert _status(instance, cleanup) == QUEUED
        assert _status(instance, by_sensor) == QUEUED
    assert _status(instance, email) == STARTING  # email is not paused
    assert _status(instance, by_hand) == STARTING  # the operator's choice
    assert _held_tag(instance, cleanup) == held_runs.HELD
    assert _held_tag(instance, by_hand) is None
    launched = {run.run_id for run in instance.run_launcher.queue()}
    assert launched == {email, by_hand}
    capsys.readouterr()
    assert main(["status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].startswith("MAINTENANCE ACTIVE maintenance window #1 (cleanup)")
    assert status[1].startswith("HELD 2 queued run(s) wait for their window to end: ")
    assert f"session_cleanup {cleanup[:8]}" in status[1]

    assert main(["resume"]) == 0
    assert "released 2 held run(s)" in capsys.readouterr().out
    _dequeue(instance)
    assert _status(instance, cleanup) == STARTING and _status(instance, by_sensor) == STARTING
    assert _held_tag(instance, cleanup) == held_runs.RELEASED
    assert len(instance.run_launcher.queue()) == 4


def test_resuming_some_groups_keeps_the_others_held_and_hand_launched_runs_free(instance):
    assert main(["pause", "--all", "--reason", "release", "--for", "1h"]) == 0
    by_hand = _queue(instance, "token_cleanup")
    cleanup = _queue(instance, "session_cleanup", {"dagster/schedule_name": "a_schedule"})
    assert main(["resume", "--groups", "email"]) == 0  # cleanup: reopened, still paused
    _dequeue(instance)
    assert (_status(instance, by_hand), _status(instance, cleanup)) == (STARTING, QUEUED)
    assert main(["resume"]) == 0
    _dequeue(instance)
    assert _status(instance, cleanup) == STARTING


def _open_window(engine, groups) -> maintenance.Window:
    """A window written to the table only, as another process opens it: no queue sync."""
    now = utcnow()
    return maintenance.open_window(
        engine,
        groups=groups,
        reason="restore",
        by="alice",
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
    )


def test_runs_schedules_sensors_and_automation_submit_in_a_window_are_held_at_submit(
    instance, engine, capsys
):
    window = _open_window(engine, ["cleanup", "analytics", "games"])
    by_sensor = _queue(instance, "session_cleanup", {SENSOR_NAME_TAG: "stalled_cleanup_sensor"})
    by_schedule = _queue(instance, "token_cleanup", {"dagster/schedule_name": "a_schedule"})
    report = _queue_assets(instance, "weekly_trend_report", _automation_tags("weekly_trend_report"))
    # Declarative automation's own tags are enough, with no sensor name.
    summary = _queue_assets(
        instance, "monthly_executive_summary", {AUTOMATION_CONDITION_TAG: "true"}
    )
    by_hand = _queue_assets(instance, "leaderboards", {})  # the UI's Materialize
    other_group = _queue(instance, "email_queue", {SENSOR_NAME_TAG: "email_queue_due_sensor"})
    # Re-executions keep their parent's tags: Dagster's automatic retry is held, the
    # operator's re-execution from the UI is not.
    parent = {SENSOR_NAME_TAG: "a_sensor", PARENT_RUN_ID_TAG: "0" * 36}
    retry = _queue(instance, "orphaned_file_cleanup", {**parent, RETRY_NUMBER_TAG: "1"})
    reexecuted = _queue(instance, "daily_prize_pools", parent)
    held = [by_sensor, by_schedule, report, summary]

    # Right after submit, before any alert-sensor tick: tagged, QUEUED, the reason logged.
    for run_id in held:
        run = instance.get_run_by_id(run_id)
        assert (run.status, run.tags[held_runs.HELD_TAG]) == (QUEUED, held_runs.HELD)
        logs = [e.message for e in instance.all_logs(run_id)]
        assert f"held in the run queue until it ends: {window.describe()}" in logs
    assert instance.get_run_by_id(summary).tags["ops/group"] == "analytics"
    assert _held_tag(instance, by_hand) is None and _held_tag(instance, other_group) is None
    assert (_held_tag(instance, retry), _held_tag(instance, reexecuted)) == (held_runs.HELD, None)

    for _ in range(3):  # the queue keeps them, iteration after iteration
        _dequeue(instance)
        assert [_status(instance, run_id) for run_id in held] == [QUEUED] * 4
    assert (_status(instance, by_hand), _status(instance, other_group)) == (STARTING, STARTING)
    assert (_status(instance, retry), _status(instance, reexecuted)) == (QUEUED, STARTING)

    assert main(["resume"]) == 0
    assert "released 5 held run(s)" in capsys.readouterr().out
    _dequeue(instance)
    assert [_status(instance, run_id) for run_id in held] == [STARTING] * 4
    assert _status(instance, retry) == STARTING
    assert len(instance.run_launcher.queue()) == 8


@pytest.mark.parametrize("app_db", ["postgres_down", "not_upgraded"])
def test_without_the_window_table_a_submit_queues_the_run_unheld_and_warns(
    app_db, production_config, tmp_path, monkeypatch, caplog
):
    if app_db == "postgres_down":  # nothing listens on port 1
        url = "postgresql://postgres@127.0.0.1:1/postgres"
    else:  # a database without the project's tables
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        create_engine(url).connect().close()
    monkeypatch.setenv("OPS_DATABASE_URL", url)
    monkeypatch.setenv("OPS_DATA_DIR", str(tmp_path / "ops_data"))
    with dg.instance_for_test(overrides=production_config) as instance:
        started = time.monotonic()
        run_id = _queue(instance, "session_cleanup", {SENSOR_NAME_TAG: "stalled_cleanup_sensor"})
        assert time.monotonic() - started < 5
        assert (_status(instance, run_id), _held_tag(instance, run_id)) == (QUEUED, None)
        assert "cannot read the maintenance windows" in caplog.text
        _dequeue(instance)
        assert _status(instance, run_id) == STARTING


def _alert_tick(instance, database, tmp_path, at, monkeypatch):
    """One tick of maintenance_window_alert_sensor, as the daemon runs it every minute."""
    monkeypatch.setattr(alert_sensor, "utcnow", lambda: at)
    resources = {
        "alerts": Alerts(log_file=str(tmp_path / "alerts.log")),
        "database": database,
        "maintenance_policy": maintenance.MaintenancePolicy(),
    }
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return alert_sensor.maintenance_window_alert_sensor(context)


def test_a_planned_window_holds_when_it_starts_and_releases_when_it_ends(
    instance, database, engine, tmp_path, monkeypatch
):
    now = utcnow()
    maintenance.open_window(
        engine,
        groups=None,
        reason="release 4.2",
        by="alice",
        starts_at=now + timedelta(minutes=10),
        ends_at=now + timedelta(minutes=70),
    )
    report = _queue(instance, "weekly_trend_report")
    assert "held 0" in _alert_tick(instance, database, tmp_path, now, monkeypatch).skip_message
    # Nobody acts: the window starts, the next tick holds the run.
    started = _alert_tick(instance, database, tmp_path, now + timedelta(minutes=11), monkeypatch)
    assert "held 1 queued run(s)" in started.skip_message
    _dequeue(instance)
    assert _status(instance, report) == QUEUED
    # The window reaches its end: the next tick releases it and the queue launches it.
    ended = _alert_tick(instance, database, tmp_path, now + timedelta(minutes=71), monkeypatch)
    assert "released 1" in ended.skip_message
    _dequeue(instance)
    assert _status(instance, report) == STARTING


def test_the_ui_job_holds_and_releases_at_once(instance, database):
    payments = _queue(instance, "payment_status_sweep")
    games = _queue(instance, "game_cleanup")
    resources = {"database": database, "maintenance_policy": maintenance.MaintenancePolicy()}

    def window_job(config):
        result = maintenance_window.execute_in_process(
            run_config={"ops": {"set_maintenance_window": {"config": config}}},
            resources=resources,
            instance=instance,
        )
        assert result.success
        return result.output_for_node("set_maintenance_window")

    window_job({"action": "pause", "groups": ["payments"], "reason": "provider outage"})
    assert _held_tag(instance, payments) == held_runs.HELD
    _dequeue(instance)
    assert (_status(instance, payments), _status(instance, games)) == (QUEUED, STARTING)
    window_job({"action": "resume", "groups": ["payments"]})
    _dequeue(instance)
    assert _status(instance, payments) == STARTING


def _finish(instance, run_id: str, after_s: float) -> threading.Thread:
    def report_success():
        time.sleep(after_s)
        event = DagsterEvent(
            event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name="session_cleanup"
        )
        instance.report_dagster_event(event, run_id=run_id)

    thread = threading.Thread(target=report_success)
    thread.start()
    return thread


def test_drain_waits_for_the_runs_in_progress_and_names_them(instance, capsys):
    running = create_run_for_test(
        instance,
        job_name="session_cleanup",
        status=dg.DagsterRunStatus.STARTED,
        tags=job_tags("session_cleanup"),
    ).run_id
    queued = _queue(instance, "token_cleanup")  # held by the window: not waited for
    argv = ["pause", "--groups", "cleanup", "--reason", "restore", "--for", "1h", "--drain"]
    assert main([*argv, "--drain-timeout", "1"]) == 1
    captured = capsys.readouterr()
    assert f"waiting for 1 run(s): session_cleanup {running[:8]} (STARTED)" in captured.out
    assert f"still running after 1s: session_cleanup {running} (STARTED)" in captured.err
    assert queued not in captured.out + captured.err

    # The run finishes meanwhile: drain returns at its next poll (5 s) and says so; the held
    # run is still queued, and is no reason to wait.
    thread = _finish(instance, running, after_s=2.0)
    assert main([*argv, "--drain-timeout", "60"]) == 0
    thread.join()
    assert "drained: no run of cleanup is running" in capsys.readouterr().out
    assert _status(instance, running) == dg.DagsterRunStatus.SUCCESS
    assert _status(instance, queued) == QUEUED


def test_every_shipped_instance_has_the_limit_that_holds():
    deploy = PRODUCTION.parent
    for name in ("dagster.yaml", "dagster.s3-logs.yaml", "docker/dagster.yaml"):
        runs = yaml.safe_load((deploy / name).read_text())["concurrency"]["runs"]
        assert held_runs.HELD_LIMIT in runs["tag_concurrency_limits"], name
    helm = yaml.safe_load((deploy / "helm" / "values.yaml").read_text())["concurrency"]
    assert held_runs.HELD_LIMIT in helm["runs"]["tagConcurrencyLimits"]
