"""webhook_security_monitor: exact findings on a fixture, one row per finding, not repeated
while ongoing, and an alert per new finding.

Alerts go through the real `Alerts` resource to a local HTTP receiver (a Slack-compatible
webhook played by a ThreadingHTTPServer on a free port) and are read back from it.
"""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import insert, select

from ops_platform.db import schema
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.jobs.security import (
    SecurityMonitorConfig,
    monitor_webhooks,
    webhook_security_monitor,
)
from ops_platform.resources.alerts import AlertDeliveryError, Alerts
from tests.jobs.cleanup_helpers import output_metadata

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
ATTACKER = "203.0.113.5"
NOISY = "192.0.2.9"


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        code = self.server.status
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.status = [], 200
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def alerts(receiver, tmp_path):
    return Alerts(
        webhook_url=f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        log_file=str(tmp_path / "alerts.log"),
        attempts=1,
        timeout_s=2,
    )


def _event(ip, event_id, received_at, *, valid=True, provider="stripe"):
    return {
        "provider": provider,
        "source_ip": ip,
        "event_id": event_id,
        "signature_valid": valid,
        "received_at": received_at,
    }


def _events(now, ip, count, *, valid=True, provider="stripe", event_prefix=None, minutes_ago=1):
    prefix = event_prefix or f"{ip}-{'v' if valid else 'x'}-{minutes_ago}"
    return [
        _event(
            ip,
            f"{prefix}-{i}",
            now - timedelta(minutes=minutes_ago, seconds=i % 50),
            valid=valid,
            provider=provider,
        )
        for i in range(count)
    ]


def _insert(engine, rows):
    with engine.begin() as connection:
        connection.execute(insert(schema.webhook_events), rows)


@pytest.fixture
def attack(engine):
    rows = (
        _events(NOW, ATTACKER, 6, valid=False)  # invalid signatures over threshold
        + _events(NOW, ATTACKER, 3)  # and a few valid ones
        + _events(NOW, "198.51.100.7", 4, valid=False)  # under the threshold
        + _events(NOW, NOISY, 120)  # a burst
        + _events(NOW, "198.51.100.99", 10, valid=False, minutes_ago=20)  # outside the window
        + [  # a replayed event id, from two sources, and one replayed long ago
            _event("198.51.100.20", "evt_replayed", NOW - timedelta(minutes=9)),
            _event("198.51.100.21", "evt_replayed", NOW - timedelta(minutes=2)),
            _event("198.51.100.20", "evt_replayed", NOW - timedelta(minutes=3), provider="paypal"),
            _event("198.51.100.22", "evt_old", NOW - timedelta(minutes=40)),
            _event("198.51.100.22", "evt_old", NOW - timedelta(minutes=35)),
            _event(None, None, NOW - timedelta(minutes=1), valid=False),
        ]
    )
    _insert(engine, rows)
    return engine


def _alert_rows(engine):
    with engine.connect() as connection:
        prints = schema.security_alert_fingerprints
        rows = connection.execute(
            select(schema.security_alerts, prints.c.fingerprint, prints.c.last_seen_at)
            .outerjoin(prints, prints.c.alert_id == schema.security_alerts.c.id)
            .order_by(schema.security_alerts.c.id)
        ).all()
    return [
        r._asdict() | {"last_seen_at": as_utc(r.last_seen_at), "created_at": as_utc(r.created_at)}
        for r in rows
    ]


def test_exact_findings_one_row_each_and_an_alert_each(attack, alerts, receiver):
    report = monitor_webhooks(attack, alerts, NOW, SecurityMonitorConfig())
    rows = _alert_rows(attack)
    assert [(r["kind"], r["severity"], r["fingerprint"]) for r in rows] == [
        ("invalid_signatures", "high", f"invalid_signatures:{ATTACKER}"),
        ("request_burst", "medium", f"request_burst:{NOISY}"),
        ("replayed_event", "high", "replayed_event:stripe:evt_replayed"),
    ]
    details = {r["kind"]: r["details"] for r in rows}
    assert details["invalid_signatures"]["invalid_signatures"] == 6
    assert details["invalid_signatures"]["source_ip"] == ATTACKER
    assert details["request_burst"]["requests"] == 120
    replay = details["replayed_event"]
    assert (
        replay["event_id"],
        replay["provider"],
        replay["times_received"],
        replay["source_ips"],
    ) == ("evt_replayed", "stripe", 2, 2)
    assert all(r["last_seen_at"] == NOW and r["created_at"] == NOW for r in rows)

    assert report.alerts_sent == 3 and len(receiver.received) == 3
    texts = [message["text"] for message in receiver.received]
    assert (
        texts[0]
        == f"[ERROR] Webhook security: 6 webhook events with invalid signatures from {ATTACKER}"
    )
    assert texts[1] == f"[WARNING] Webhook security: Burst of 120 webhook requests from {NOISY}"
    assert "evt_replayed" in texts[2]


def test_an_ongoing_finding_is_not_repeated(attack, alerts, receiver):
    monitor_webhooks(attack, alerts, NOW, SecurityMonitorConfig())
    # 15 minutes later the attacker is still at it; nobody else is.
    later = NOW + timedelta(minutes=15)
    _insert(attack, _events(later, ATTACKER, 8, valid=False))
    report = monitor_webhooks(attack, alerts, later, SecurityMonitorConfig())
    assert report.new == [] and [f.kind for f in report.ongoing] == ["invalid_signatures"]
    rows = _alert_rows(attack)
    assert len(rows) == 3 and len(receiver.received) == 3
    [row] = [r for r in rows if r["kind"] == "invalid_signatures"]
    assert row["last_seen_at"] == later and row["created_at"] == NOW
    assert row["details"]["invalid_signatures"] == 8

    # Quiet for more than two windows, then again: a new finding, a new alert.
    much_later = later + timedelta(minutes=45)
    _insert(attack, _events(much_later, ATTACKER, 5, valid=False))
    report = monitor_webhooks(attack, alerts, much_later, SecurityMonitorConfig())
    assert [f.fingerprint for f in report.new] == [f"invalid_signatures:{ATTACKER}"]
    assert len(_alert_rows(attack)) == 4 and len(receiver.received) == 4


def test_thresholds_are_config_and_escalate(engine, alerts, receiver):
    _insert(engine, _events(NOW, ATTACKER, 25, valid=False))
    monitor_webhooks(
        engine,
        alerts,
        NOW,
        SecurityMonitorConfig(invalid_signature_threshold=5, burst_threshold=1000),
    )
    [row] = _alert_rows(engine)
    assert row["severity"] == "critical"
    assert receiver.received[0]["text"].startswith("[CRITICAL]")


def test_an_undelivered_alert_records_nothing_and_comes_back(attack, alerts, receiver):
    receiver.status = 400
    with pytest.raises(AlertDeliveryError):
        monitor_webhooks(attack, alerts, NOW, SecurityMonitorConfig())
    assert _alert_rows(attack) == []
    receiver.status = 200
    assert len(monitor_webhooks(attack, alerts, NOW, SecurityMonitorConfig()).new) == 3


def test_job_runs_with_default_config(engine, database, alerts, receiver):
    now = utcnow()
    _insert(engine, _events(now, ATTACKER, 7, valid=False))
    result = webhook_security_monitor.execute_in_process(
        resources={"database": database, "alerts": alerts}
    )
    assert result.success
    assert result.output_for_node("monitor_webhook_security") == 1
    again = webhook_security_monitor.execute_in_process(
        resources={"database": database, "alerts": alerts}
    )
    assert again.output_for_node("monitor_webhook_security") == 0
    assert len(_alert_rows(engine)) == 1 and len(receiver.received) == 1


def test_no_events_no_findings(engine, database, alerts, receiver):
    report = monitor_webhooks(engine, alerts, NOW, SecurityMonitorConfig())
    assert report.findings == [] and receiver.received == []


def test_malformed_events_are_in_no_finding_and_counted_by_kind(engine, alerts, receiver):
    rows = (
        _events(NOW, ATTACKER, 6, valid=False)  # a finding
        + _events(NOW, None, 7, valid=False)  # no source IP
        + _events(NOW, "x" * 60, 8, valid=False)  # no address is that long
        + _events(NOW + timedelta(days=3), "198.51.100.1", 2, minutes_ago=0)  # from the future
    )
    _insert(engine, rows)
    with engine.connect() as connection:
        before = sorted(map(tuple, connection.execute(select(schema.webhook_events)).all()))
    report = monitor_webhooks(engine, alerts, NOW, SecurityMonitorConfig())
    assert [(f.kind, f.details.get("source_ip")) for f in report.findings] == [
        ("invalid_signatures", ATTACKER)
    ]
    assert report.bad_rows == {
        "webhook_events.null_source_ip": 7,
        "webhook_events.source_ip_not_an_address": 8,
        "webhook_events.received_in_future": 2,
    }
    with engine.connect() as connection:
        after = sorted(map(tuple, connection.execute(select(schema.webhook_events)).all()))
    assert after == before


def test_the_job_reports_malformed_events_in_its_metadata(engine, database, alerts):
    _insert(engine, _events(utcnow(), None, 3, valid=False))
    result = webhook_security_monitor.execute_in_process(
        resources={"database": database, "alerts": alerts}
    )
    assert result.success
    metadata = output_metadata(result)
    assert metadata["bad_rows"] == {"webhook_events.null_source_ip": 3}
    assert metadata["bad_rows_total"] == 3 and metadata["findings"] == 0
