"""`ops-platform metrics serve` scraped by a real Prometheus server (Debian's `prometheus`):
after real runs — a success with a dead mail, a failed run, a cleanup that changed rows —
Prometheus' HTTP API returns every family with the values the instance and the app
database hold, and loads the generated alert rules."""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.types import DaemonHeartbeat
from sqlalchemy import insert, update

from ops_platform.db import schema
from ops_platform.db.engine import make_engine, utcnow
from ops_platform.metrics import OpsCollector, exposition, partition_family, registry_for
from tests.jobs.test_email import seed_batches
from tests.platform_env import platform_defs, platform_env, run_job
from tests.prometheus_tools import prometheus_tool
from tests.smtp_server import free_port, smtp_server

RULES = os.path.join(os.path.dirname(__file__), "..", "deploy", "prometheus", "alerts.yml")
FAMILIES = (
    "ops_job_last_success_timestamp_seconds",
    "ops_job_last_run_duration_seconds",
    "ops_job_runs_total",
    "ops_job_consecutive_failures",
    "ops_job_rows_changed",
    "ops_schedule_running",
    "ops_queue_depth",
    "ops_queue_oldest_age_seconds",
    "ops_partition_missing",
    "ops_daemon_heartbeat_age_seconds",
)


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for(what: str, probe, seconds: float, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: process exited {process.returncode}")
        try:
            found = probe()
            if found:
                return found
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not ready after {seconds}s")


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def seed_work(engine) -> None:
    """Three due mail batches (the third for a user without an address: dead at once), one
    pending payment, two expired active thrones."""
    now = utcnow()
    seed_batches(engine, 3)
    with engine.begin() as connection:
        connection.execute(
            update(schema.users).where(schema.users.c.id == 3).values(email="no-address")
        )
        connection.execute(
            insert(schema.payments).values(
                id=1, provider_ref="pay_1", status="pending", created_at=now - timedelta(minutes=2)
            )
        )
        connection.execute(
            insert(schema.thrones),
            [
                {"id": i, "holder_id": 1, "expires_at": now - timedelta(hours=1), "is_active": True}
                for i in (1, 2)
            ],
        )


@pytest.fixture
def scraped(db_url, tmp_path, monkeypatch):
    """Real runs on a real instance, the exporter serving it, Prometheus scraping the exporter;
    yields a function querying Prometheus (PromQL → {labels: value})."""
    prometheus = prometheus_tool("prometheus")
    with smtp_server() as (smtp_url, handler):
        env = platform_env(
            monkeypatch,
            tmp_path,
            db_url,
            OPS_SMTP_URL=smtp_url,
            OPS_PAYMENTS_URL=f"http://127.0.0.1:{free_port()}",  # nobody answers: the sweep fails
        )
        engine = make_engine(db_url)
        seed_work(engine)
        defs = platform_defs()
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        assert run_job(defs, instance, "email_queue").success
        assert len(handler.messages) == 2
        assert not run_job(defs, instance, "payment_status_sweep").success
        assert run_job(defs, instance, "throne_expiry").success
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(timestamp=time.time() - 42, daemon_type="SCHEDULER", daemon_id="t")
        )

    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops_platform.cli",
            "metrics",
            "serve",
            "--port",
            str(exporter_port),
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [os.path.abspath(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "ops_platform",
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            }
        )
    )
    server = None
    try:
        wait_for(
            "exporter /healthz",
            lambda: get(f"http://127.0.0.1:{exporter_port}/healthz") == b"ok\n",
            120,
            exporter,
        )
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{prometheus_port}/api/v1"

        def query(promql: str) -> dict:
            url = f"{base}/query?" + urllib.parse.urlencode({"query": promql})
            body = json.loads(get(url))
            assert body["status"] == "success", body
            return {
                tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(
                    r["value"][1]
                )
                for r in body["data"]["result"]
            }

        wait_for("first scrape", lambda: query('up{job="ops_platform"} == 1'), 60, server)
        yield query, base, instance, engine
    finally:
        if server is not None:
            stop(server)
        stop(exporter)
        instance.dispose()
        engine.dispose()


def one(result: dict, **labels) -> float:
    matches = [v for k, v in result.items() if all((n, str(x)) in k for n, x in labels.items())]
    assert len(matches) == 1, (labels, result)
    return matches[0]


def test_prometheus_scrapes_every_family_with_the_right_values(scraped):
    query, base, instance, engine = scraped
    for family in FAMILIES:
        assert query(f"count({family})"), f"{family} not scraped"

    runs = query("ops_job_runs_total")
    assert one(runs, job="email_queue", status="success") == 1
    assert one(runs, job="email_queue", status="failure") == 0
    assert one(runs, job="payment_status_sweep", status="failure") == 1
    assert one(query("ops_job_consecutive_failures"), job="payment_status_sweep") == 1
    assert one(query("ops_job_consecutive_failures"), job="email_queue") == 0

    [success] = instance.get_run_records(dg.RunsFilter(job_name="email_queue"), limit=1)
    last_success = query("ops_job_last_success_timestamp_seconds")
    assert one(last_success, job="email_queue") == pytest.approx(success.end_time, abs=0.01)
    assert not [k for k in last_success if ("job", "payment_status_sweep") in k]
    duration = one(query("ops_job_last_run_duration_seconds"), job="email_queue")
    assert duration == pytest.approx(success.end_time - success.start_time, abs=0.01)
    assert one(query("ops_job_rows_changed"), job="throne_expiry") >= 2

    depth = query("ops_queue_depth")
    assert one(depth, queue="email", state="dead") == 1
    assert one(depth, queue="email", state="due") == 0
    assert one(depth, queue="payments", state="pending") == 1
    assert one(query("ops_queue_oldest_age_seconds"), queue="payments") >= 120
    assert one(query("ops_schedule_running"), schedule="email_queue_every_minute") == 1
    assert one(query("ops_partition_missing"), asset="og_daily_bonus") == 0
    heartbeats = query("ops_daemon_heartbeat_age_seconds")
    assert 42 <= one(heartbeats, daemon="SCHEDULER") < 300
    assert one(heartbeats, daemon="SENSOR") == float("inf")
    assert one(query("ops_metrics_source_up"), source="app_database") == 1

    # The generated rules are loaded and evaluated on these series.
    def alerts():
        return {
            a["labels"]["alertname"]: a for a in json.loads(get(f"{base}/alerts"))["data"]["alerts"]
        }

    expected = {"OpsDeadItems", "OpsDaemonDown"}  # each group is evaluated on its own
    firing = wait_for(
        "alerts evaluated", lambda: (found := alerts()).keys() >= expected and found, 30
    )
    assert firing["OpsDeadItems"]["labels"]["queue"] == "email"
    assert firing["OpsDaemonDown"]["labels"]["daemon"] != "SCHEDULER"  # its heartbeat is fresh


def test_metrics_once_prints_the_exposition(db_url, tmp_path, monkeypatch):
    """The same families through `ops-platform metrics` (no server): one exposition on stdout."""
    env = platform_env(monkeypatch, tmp_path, db_url)
    result = subprocess.run(
        [sys.executable, "-m", "ops_platform.cli", "metrics"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for family in FAMILIES:
        assert f"# HELP {family} " in result.stdout
    assert 'ops_job_runs_total{job="email_queue",status="success"} 0.0' in result.stdout
    assert 'ops_queue_depth{queue="email",state="dead"} 0.0' in result.stdout


def test_an_unreadable_app_database_does_not_fail_the_scrape(tmp_path, monkeypatch):
    platform_env(monkeypatch, tmp_path, "sqlite://")
    defs = platform_defs()
    with dg.instance_for_test() as instance:
        broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
        text = exposition(registry_for(OpsCollector(instance, defs, broken))).decode()
    assert 'ops_metrics_source_up{source="app_database"} 0.0' in text
    assert 'ops_metrics_source_up{source="instance"} 1.0' in text
    assert "ops_job_runs_total" in text and "ops_queue_depth{" not in text


class _FlakyConfig(dg.Config):
    fail: bool = False


@dg.op
def _flaky_op(config: _FlakyConfig) -> None:
    if config.fail:
        raise RuntimeError("planned failure")


@dg.job
def flaky():
    _flaky_op()


def test_run_counts_never_decrease_when_old_runs_are_pruned(monkeypatch):
    """The ledger settles the runs below the oldest unfinished one once: later scrapes read
    only the newer ids, a run finishing late is counted then, and pruning lowers nothing."""
    import ops_platform.instance_metrics as metrics

    monkeypatch.setattr(metrics, "SETTLE_LAG", 0)
    ledger = metrics.RunLedger()

    def counts(instance):
        stats, _rows = metrics.run_stats(instance, ["flaky"], ledger)
        return stats["flaky"].counts, stats["flaky"].consecutive_failures

    def run(instance, fail: bool):
        flaky.execute_in_process(
            run_config={"ops": {"_flaky_op": {"config": {"fail": fail}}}},
            instance=instance,
            raise_on_error=False,
        )

    with dg.instance_for_test() as instance:
        for fail in (False, True, False):
            run(instance, fail)
        assert counts(instance) == ({"SUCCESS": 2, "FAILURE": 1}, 0)
        first = instance.get_run_records(dg.RunsFilter(job_name="flaky"), ascending=True)[0]

        stuck = instance.add_run(
            dg.DagsterRun(job_name="flaky", status=dg.DagsterRunStatus.STARTED)
        )
        run(instance, True)
        assert counts(instance) == ({"SUCCESS": 2, "FAILURE": 2}, 1)
        assert ledger.watermark == instance.get_run_record_by_id(stuck.run_id).storage_id

        instance.delete_run(first.dagster_run.run_id)  # pruned: still counted
        instance.report_run_failed(stuck)  # the old run finishes late: counted now
        assert counts(instance) == ({"SUCCESS": 2, "FAILURE": 3}, 2)
        # A new process starts from what the storage still holds.
        assert metrics.run_stats(instance, ["flaky"])[0]["flaky"].counts == {
            "SUCCESS": 1,
            "FAILURE": 3,
        }

        # Runs launched by hand run as the implicit asset job, tagged with their job by the
        # run queue: they count for that job.
        def manual(status):
            instance.add_run(
                dg.DagsterRun(
                    job_name="__ASSET_JOB", status=status, tags={"ops/singleton": "flaky"}
                )
            )

        manual(dg.DagsterRunStatus.FAILURE)
        stats = metrics.run_stats(instance, ["flaky"])[0]["flaky"]
        assert (stats.counts, stats.consecutive_failures) == ({"SUCCESS": 1, "FAILURE": 4}, 3)
        manual(dg.DagsterRunStatus.SUCCESS)
        stats, rows = metrics.run_stats(instance, ["flaky"])
        assert (stats["flaky"].counts, stats["flaky"].consecutive_failures) == (
            {"SUCCESS": 2, "FAILURE": 4},
            0,
        )
        newest = instance.get_run_records(limit=1)[0]
        assert stats["flaky"].last_success_id == newest.storage_id


def first_tick(instance, sensor, day: str) -> None:
    """The state the asset daemon stores at a default-on automation sensor's first tick."""
    started = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    instance.add_instigator_state(
        InstigatorState(
            sensor.get_remote_origin(),
            InstigatorType.SENSOR,
            InstigatorStatus.DECLARED_IN_CODE,
            SensorInstigatorData(
                min_interval=sensor.min_interval_seconds,
                last_sensor_start_timestamp=started,
                sensor_type=sensor.sensor_type,
            ),
        )
    )


def test_a_report_partition_past_its_due_time_counts_as_missing(db_url, tmp_path, monkeypatch):
    """A report has no catch-up sensor: its partitions count from when its automation sensor
    was started, each once past its due time (cron plus max runtime) and not materialized."""
    env = platform_env(monkeypatch, tmp_path, db_url)
    defs = platform_defs()
    origin = LoadableTargetOrigin(
        executable_path=sys.executable, module_name="ops_platform.definitions", attribute="defs"
    )
    with (
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
        in_process_test_workspace(instance, origin) as workspace,
    ):

        def missing(now: datetime) -> dict[str, float]:
            family = partition_family(instance, defs, now)
            return {sample.labels["asset"]: sample.value for sample in family.samples}

        sunday_due = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)  # week from 2026-11-22: 01:00 + 1 h
        assert missing(sunday_due + timedelta(minutes=5))["weekly_trend_report"] == 0  # unwatched
        location = next(iter(workspace.get_code_location_entries().values())).code_location
        repo = location.get_repository("__repository__")
        first_tick(instance, repo.get_sensor("weekly_trend_report_automation"), "2026-11-26")
        assert missing(sunday_due - timedelta(minutes=5))["weekly_trend_report"] == 0
        after = missing(sunday_due + timedelta(minutes=5))
        assert after["weekly_trend_report"] == 1
        assert after["monthly_executive_summary"] == 0  # its sensor was never started
