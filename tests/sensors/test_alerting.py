"""Alerting: the alerts resource against a local HTTP receiver (Slack JSON) and aiosmtpd;
run-failure and 3-in-a-row alerts from real failing runs on a test instance; the email
backlog and stalled-cleanup sensors alert once per crossing."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time
from sqlalchemy import insert, update

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.resources.alerts import AlertDeliveryError, Alerts
from ops_platform.sensors.alerting import BACKLOG_THRESHOLD, build_sensors
from ops_platform.settings import load_settings
from tests.smtp_server import smtp_server

run_failure_alert_sensor, email_backlog_sensor, stalled_cleanup_sensor = build_sensors(
    load_settings({})
)

# --- a local webhook receiver -------------------------------------------------------------------


class Receiver:
    """Collects JSON POSTs; answers `fail_with` to the first `failures` requests."""

    def __init__(self, failures=0, fail_with=500):
        self.bodies, self.requests = [], 0
        self.failures, self.fail_with = failures, fail_with

    @property
    def texts(self):
        return [body["text"] for body in self.bodies]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests += 1
            if state.requests <= state.failures:
                self.send_response(state.fail_with)
                self.end_headers()
                return
            state.bodies.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def alerts(receiver, tmp_path):
    return Alerts(
        webhook_url=receiver.url, log_file=str(tmp_path / "logs" / "alerts.log"), retry_base_s=0.01
    )


# --- the alerts resource ---------------------------------------------------------------------


def test_webhook_gets_slack_json_and_the_log_keeps_every_alert(receiver, alerts, tmp_path):
    assert alerts.send("disk full", "volume /data at 99%", "critical") == ["log", "webhook"]
    [body] = receiver.bodies
    assert body["text"] == "[CRITICAL] disk full"
    assert (
        body["attachments"][0]["title"] == "disk full"
        and body["attachments"][0]["text"] == "volume /data at 99%"
    )
    [line] = (tmp_path / "logs" / "alerts.log").read_text().splitlines()
    assert json.loads(line)["title"] == "disk full"


def test_webhook_retries_5xx_then_succeeds(receiver, alerts):
    receiver.failures = 2
    alerts.send("t", "x")
    assert receiver.requests == 3 and len(receiver.bodies) == 1


def test_webhook_4xx_is_not_retried_and_raises(receiver, alerts):
    receiver.failures, receiver.fail_with = 5, 404
    with pytest.raises(AlertDeliveryError, match="HTTP 404"):
        alerts.send("t", "x")
    assert receiver.requests == 1


def test_alert_email_goes_through_smtp(tmp_path):
    with smtp_server() as (url, handler):
        Alerts(
            email_to="ops@example.com, oncall@example.com",
            smtp_url=url,
            log_file=str(tmp_path / "alerts.log"),
        ).send("job failed", "details", "error")
    [message] = handler.messages
    assert message["Subject"] == "[ERROR] job failed" and "oncall@example.com" in message["To"]


def test_with_no_channel_alerts_go_to_the_log_file(tmp_path):
    alerts = Alerts(log_file=str(tmp_path / "alerts.log"))
    assert alerts.channels == ["log"] and alerts.send("t", "x", "warning") == ["log"]
    assert json.loads((tmp_path / "alerts.log").read_text())["severity"] == "warning"


# --- failed runs ----------------------------------------------------------------------------------


class ProbeConfig(dg.Config):
    fail: bool = True
    rows_changed: int = 0
    dry_run: bool = False


@dg.op
def probe(config: ProbeConfig) -> dg.Output[int]:
    if config.fail:
        raise RuntimeError("database said no")
    return dg.Output(
        config.rows_changed,
        metadata={"rows_changed": config.rows_changed, "dry_run": config.dry_run},
    )


def probe_job(name):
    @dg.job(name=name)
    def _job():
        probe()

    return _job


def execute(instance, job, **config):
    return job.execute_in_process(
        instance=instance, run_config={"ops": {"probe": {"config": config}}}, raise_on_error=False
    )


def alert_on_failure(instance, result, alerts):
    run = instance.get_run_by_id(result.run_id)
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources={"alerts": alerts},
    ).for_run_failure()
    run_failure_alert_sensor(context)


def test_every_failed_run_alerts_and_three_in_a_row_is_critical_once(receiver, alerts):
    job = probe_job("flaky_job")
    with dg.instance_for_test() as instance:
        for _ in range(2):
            alert_on_failure(instance, execute(instance, job), alerts)
        assert receiver.texts == ["[ERROR] flaky_job failed"] * 2
        third = execute(instance, job)
        alert_on_failure(instance, third, alerts)
        assert receiver.texts[2:] == [
            "[ERROR] flaky_job failed",
            "[CRITICAL] flaky_job failed 3 times in a row",
        ]
        details = receiver.bodies[3]["attachments"][0]["text"]
        assert (
            third.run_id in details
            and "database said no" in details
            and "job: flaky_job" in details
        )
        alert_on_failure(instance, execute(instance, job), alerts)  # a 4th: no second critical
        assert receiver.texts[4:] == ["[ERROR] flaky_job failed"]


def test_a_success_breaks_the_streak(receiver, alerts):
    job = probe_job("flaky_job")
    with dg.DagsterInstance.ephemeral() as instance:
        for fail in (True, True, False, True, True):
            result = execute(instance, job, fail=fail)
            if not result.success:
                alert_on_failure(instance, result, alerts)
    assert receiver.texts == ["[ERROR] flaky_job failed"] * 4


# --- email backlog ----------------------------------------------------------------------------------


def evaluate(sensor, instance, cursor=None, **resources):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context).cursor


def set_due_batches(engine, count):
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(schema.notification_email_queue.delete())
        connection.execute(
            insert(schema.notification_email_queue),
            [
                {
                    "id": i,
                    "user_id": i,
                    "notification_ids": [i],
                    "status": "pending",
                    "scheduled_for": now - timedelta(minutes=5),
                    "attempts": 0,
                }
                for i in range(1, count + 1)
            ],
        )


def test_backlog_alerts_once_per_crossing(database, receiver, alerts):
    with dg.DagsterInstance.ephemeral() as instance:
        set_due_batches(database.engine, BACKLOG_THRESHOLD)
        cursor = evaluate(email_backlog_sensor, instance, None, database=database, alerts=alerts)
        assert receiver.texts == []
        set_due_batches(database.engine, BACKLOG_THRESHOLD + 1)
        cursor = evaluate(email_backlog_sensor, instance, cursor, database=database, alerts=alerts)
        cursor = evaluate(email_backlog_sensor, instance, cursor, database=database, alerts=alerts)
        assert receiver.texts == ["[ERROR] Email backlog"]
        assert (
            "1,001 notification email batches are due"
            in receiver.bodies[0]["attachments"][0]["text"]
        )
        with database.engine.begin() as connection:
            connection.execute(
                update(schema.notification_email_queue)
                .where(schema.notification_email_queue.c.id <= 10)
                .values(status="sent")
            )
        cursor = evaluate(email_backlog_sensor, instance, cursor, database=database, alerts=alerts)
        assert receiver.texts[1:] == ["[INFO] Email backlog cleared"]
        set_due_batches(database.engine, BACKLOG_THRESHOLD + 5)
        evaluate(email_backlog_sensor, instance, cursor, database=database, alerts=alerts)
        assert receiver.texts[2:] == ["[ERROR] Email backlog"]


# --- stalled cleanups ------------------------------------------------------------------------------


def run_on_day(instance, job, day, **config):
    with freeze_time(datetime(2026, 3, day, 3, 0, tzinfo=UTC)):
        result = execute(instance, job, fail=False, **config)
    assert result.success
    return result


def test_a_cleanup_that_changed_nothing_for_7_days_alerts_once(receiver, alerts):
    job = probe_job("token_cleanup")  # a cleanup job of the schedule table
    with dg.DagsterInstance.ephemeral() as instance:  # in memory: quicker for 13 runs
        run_on_day(instance, job, 1, rows_changed=12)
        for day in range(2, 8):  # six days of nothing
            run_on_day(instance, job, day)
        run_on_day(instance, job, 8, rows_changed=999, dry_run=True)  # a dry run tells nothing
        cursor = evaluate(stalled_cleanup_sensor, instance, None, alerts=alerts)
        assert receiver.texts == []
        run_on_day(instance, job, 8)  # the seventh day
        run_on_day(instance, job, 8)  # two runs on one day count once
        cursor = evaluate(stalled_cleanup_sensor, instance, cursor, alerts=alerts)
        assert receiver.texts == ["[WARNING] token_cleanup changed nothing for 7 days"]
        run_on_day(instance, job, 9)
        cursor = evaluate(stalled_cleanup_sensor, instance, cursor, alerts=alerts)
        assert len(receiver.texts) == 1  # still the same stall: no repeat
        assert json.loads(cursor) == {"alerted": ["token_cleanup"]}
        run_on_day(instance, job, 10, rows_changed=3)
        cursor = evaluate(stalled_cleanup_sensor, instance, cursor, alerts=alerts)
        assert json.loads(cursor) == {"alerted": []}
