"""Bad run config never becomes a failed run: choices are enums and a Config class's rules
are checked when the run config is resolved, before a run exists; what only the run can
check fails with one line, tagged, and the failure alert calls it a config error."""

import json
import os

import dagster as dg
import pytest

from ops_platform.definitions import defs
from ops_platform.resources.alerts import Alerts
from ops_platform.retries import (
    CONFIG_FAILURE,
    FAILURE_KIND_TAG,
    RunConfigError,
    transient_retries,
)
from ops_platform.schedules.catalog import SCHEDULES
from ops_platform.sensors.alerting import build_sensors
from ops_platform.settings import load_settings
from tests.platform_env import run_dagster

REPO = defs.get_repository_def()
run_failure_alert_sensor = build_sensors(load_settings({}))[0]


def _sessions(config: dict) -> dict:
    return {"ops": {"cleanup_sessions": {"config": config}}}


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"batch_size": -5}, "batch_size: Input should be greater than 0 (got -5)"),
        ({"batch_size": 0}, "batch_size: Input should be greater than 0 (got 0)"),
        ({"mode": "bogus"}, "not in enum type SessionMode got bogus"),
        ({"idle_retention_days": 0}, "idle_retention_days"),
    ],
)
def test_bad_config_is_rejected_before_a_run_exists(config, says):
    job = REPO.get_job("session_cleanup")
    with pytest.raises(dg.DagsterInvalidConfigError, match="config") as raised:
        dg.validate_run_config(job, _sessions(config))
    assert says in str(raised.value)
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError):
            job.execute_in_process(run_config=_sessions(config), instance=instance)
        assert instance.get_runs_count() == 0


def test_asset_config_is_checked_too():
    job = REPO.get_job("og_daily_bonus_job")
    bad = {"ops": {"og_daily_bonus": {"config": {"batch_size": 0}}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match="batch_size"):
        dg.validate_run_config(job, bad)


def test_defaults_still_resolve_to_a_full_config():
    resolved = dg.validate_run_config(REPO.get_job("session_cleanup"))
    config = resolved["ops"]["cleanup_sessions"]["config"]
    assert config["mode"] == "light" and config["batch_size"] > 0


def test_every_schedule_config_passes():
    for row in SCHEDULES:
        if row.cron is None:
            continue  # launched by a sensor or by hand, with config of its own
        job = REPO.get_job(row.job_name)
        dg.validate_run_config(job, dict(row.run_config) or None)


def test_the_launchpad_offers_the_choices():
    job = REPO.get_job("session_cleanup")
    config_type = job.run_config_schema.config_type_named("SessionMode")
    assert [v.config_value for v in config_type.enum_values] == ["light", "deep", "safety_net"]
    kinds = REPO.get_job("token_cleanup").run_config_schema.config_type_named("TokenKind")
    assert {v.config_value for v in kinds.enum_values} == {
        "refresh",
        "email_verification",
        "password_reset",
    }


def test_dagster_job_execute_refuses_bad_config_without_a_run(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "ops:\n  cleanup_sessions:\n    config:\n      batch_size: -5\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "OPS_DATA_DIR": str(tmp_path / "d")}
    env.pop("OPS_DATABASE_URL", None)
    result = run_dagster(
        "job execute", "-j", "session_cleanup", "-c", "bad.yaml", env=env, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "batch_size: Input should be greater than 0 (got -5)" in result.stderr
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_runs_count() == 0


# --- what only the run can check ------------------------------------------------------------


class FolderConfig(dg.Config):
    folder: str = "logs"


@dg.op
def use_folder(context: dg.OpExecutionContext, config: FolderConfig):
    with transient_retries(context):
        if config.folder.startswith("/"):
            raise RunConfigError(f"folder {config.folder!r} is outside the allowed folder")
        if config.folder == "boom":
            raise RuntimeError("database said no")


@dg.job(name="folder_job")
def folder_job():
    use_folder()


def _run_and_alert(instance, alerts, folder):
    result = folder_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"use_folder": {"config": {"folder": folder}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=failure.dagster_event,
        resources={"alerts": alerts},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    return result


def test_a_run_time_config_error_is_one_line_tagged_and_never_a_streak(tmp_path):
    log = tmp_path / "alerts.log"
    alerts = Alerts(log_file=str(log))
    with dg.instance_for_test() as instance:
        first = _run_and_alert(instance, alerts, "/etc")
        run = instance.get_run_by_id(first.run_id)
        assert run.tags[FAILURE_KIND_TAG] == CONFIG_FAILURE
        [step_failure] = [e for e in first.all_events if e.is_step_failure]
        message = step_failure.event_specific_data.error.message.strip()
        assert message.splitlines()[0].endswith(
            "run config error: folder '/etc' is outside the allowed folder"
        )
        _run_and_alert(instance, alerts, "/etc")
        _run_and_alert(instance, alerts, "boom")
        _run_and_alert(instance, alerts, "/var")
        _run_and_alert(instance, alerts, "boom")
        sent = [json.loads(line) for line in log.read_text().splitlines()]
    titles = [(a["severity"], a["title"]) for a in sent]
    assert titles == [
        ("warning", "folder_job: run config rejected"),
        ("warning", "folder_job: run config rejected"),
        ("error", "folder_job failed"),
        ("warning", "folder_job: run config rejected"),
        ("error", "folder_job failed"),  # 2 real failures in a row: no critical
    ]
