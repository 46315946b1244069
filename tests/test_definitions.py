"""The code location loads, and the schedule table is sound."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.schedules import is_valid_cron_string

from ops_platform.definitions import build_definitions, defs
from ops_platform.schedules.catalog import SCHEDULES, TIER_PRIORITY, job_tags
from ops_platform.settings import GROUPS, SettingsError, check_timezone, load_settings


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize("row", SCHEDULES, ids=lambda r: r.name)
def test_every_row_has_valid_cron_timezone_tier_and_group(row):
    if row.cron is not None:
        assert is_valid_cron_string(row.cron), row.cron
    check_timezone(row.name, row.timezone)
    assert row.tier in TIER_PRIORITY
    assert row.group in GROUPS
    assert row.max_runtime_s > 0


def test_schedule_names_unique():
    names = [row.name for row in SCHEDULES]
    assert len(names) == len(set(names))


def test_every_scheduled_target_in_definitions_has_derived_tags():
    repo = defs.get_repository_def()
    for schedule in repo.schedule_defs:
        job = repo.get_job(schedule.job_name)
        row_target = next(r.target for r in SCHEDULES if r.name == schedule.name)
        for key, value in job_tags(row_target).items():
            assert job.tags.get(key) == value, (schedule.name, key)


def test_group_switch_stops_its_schedules():
    stopped = build_definitions(load_settings({"OPS_ENABLE_CLEANUP": "false"}))
    for schedule in stopped.get_repository_def().schedule_defs:
        row = next(r for r in SCHEDULES if r.name == schedule.name)
        expected = (
            dg.DefaultScheduleStatus.STOPPED
            if row.group == "cleanup"
            else dg.DefaultScheduleStatus.RUNNING
        )
        assert schedule.default_status == expected, schedule.name


def test_group_switches_stop_their_sensors_too():
    repo = build_definitions(
        load_settings({"OPS_ENABLE_EMAIL": "false", "OPS_ENABLE_PAYMENTS": "false"})
    ).get_repository_def()
    status = {sensor.name: sensor.default_status for sensor in repo.sensor_defs}
    stopped = dg.DefaultSensorStatus.STOPPED
    running = dg.DefaultSensorStatus.RUNNING
    for name in ("email_queue_due_sensor", "payment_status_check_sensor", "email_backlog_sensor"):
        assert status[name] == stopped, name
    for name in ("realtime_publish_sensor", "stalled_cleanup_sensor", "run_failure_alert_sensor"):
        assert status[name] == running, name
    everything_on = build_definitions(load_settings({})).get_repository_def()
    assert all(s.default_status == running for s in everything_on.sensor_defs)


def test_settings_are_read_only_at_start_up():
    """No module the code location loads reads the environment itself: the settings passed
    to build_definitions govern everything."""
    import ops_platform

    root = Path(ops_platform.__file__).parent
    readers = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "load_settings(" in path.read_text()
        # start-up: the definitions, the command line's entry points, and the run queue's
        # coordinator (built once by the daemon and the webserver, not by the code location)
        and path.name
        not in (
            "settings.py",
            "definitions.py",
            "cli.py",
            "demo.py",
            "metrics.py",
            "run_coordinator.py",
        )
    ]
    assert readers == []


def test_op_job_schedule_passes_its_mode():
    schedule = defs.get_repository_def().get_schedule_def("session_cleanup_deep")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 1, 12, tzinfo=UTC)
    )
    [request] = list(schedule.evaluate_tick(context).run_requests)
    assert request.run_config["ops"]["cleanup_sessions"]["config"]["mode"] == "deep"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"OPS_ENABLE_BILLING": "false"}, "unknown group 'billing'"),
        ({"OPS_ENABLE_CLEANUP": "maybe"}, "is not a boolean"),
        ({"OPS_DATABASE_URL": "mysql://x"}, "scheme must be one of"),
        ({"OPS_SMTP_URL": "smtp://"}, "has no host"),
        ({"OPS_ALERT_EMAIL": "nobody"}, "is not an email address"),
        ({"OPS_S3_ENDPOINT_URL": "http://localhost:5000"}, "OPS_S3_BUCKET is not"),
    ],
)
def test_bad_settings_are_clear_errors(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_bad_timezone_is_a_clear_error():
    with pytest.raises(SettingsError, match="not a known IANA timezone"):
        check_timezone("OPS_X_TZ", "Mars/Olympus")


def test_every_scheduled_asset_has_its_concurrency_pool():
    from ops_platform.schedules.catalog import asset_pool

    repo = defs.get_repository_def()
    for row in SCHEDULES:
        if row.kind != "asset":
            continue
        asset = repo.assets_defs_by_key[dg.AssetKey(row.target)]
        node = asset.node_def
        assert node.pool == asset_pool(row.target) == row.job_name, row.target


# Imported inside the functions that use them, never when the definitions load (every run,
# step process and code-server reload imports them).
HEAVY_MODULES = (
    "matplotlib",
    "pandas",
    "numpy",
    "boto3",
    "botocore",
    "dagster_aws",
    "redis",
    "cryptography",
    "alembic",
    "urllib3",
    "tabulate",
    "prometheus_client",
)

EVERY_SERVICE_CONFIGURED = {
    "OPS_S3_BUCKET": "bucket",
    "OPS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "OPS_SMTP_URL": "smtp://127.0.0.1:2525",
    "OPS_PAYMENTS_URL": "http://127.0.0.1:9",
    "OPS_REDIS_URL": "redis://127.0.0.1:9/0",
    "OPS_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
    "OPS_ALERT_EMAIL": "ops@example.com",
}


@pytest.mark.parametrize(
    "env", [{}, EVERY_SERVICE_CONFIGURED], ids=["embedded defaults", "every service configured"]
)
def test_definitions_load_without_heavy_libraries(env, tmp_path):
    probe = (
        "import json, sys\n"
        "import ops_platform.definitions\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("OPS_", "AWS_"))
    }
    environment.update(env, OPS_DATA_DIR=str(tmp_path), PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
