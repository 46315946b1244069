"""`webhook_security_monitor` (every 15 min).

From the `webhook_events` received in the last window (`window_minutes`, 15 by default):

- `invalid_signatures`: a source IP sending at least `invalid_signature_threshold` (5)
  events whose signature did not verify;
- `request_burst`: a source IP sending at least `burst_threshold` (100) events;
- `replayed_event`: one provider event id received more than once.

Each finding is one `security_alerts` row (kind, severity, details JSON) with its
`fingerprint` (kind + source IP or provider + event id) and `last_seen_at` in the project's
`security_alert_fingerprints`, and one alert through the alerts resource. A finding whose fingerprint was already seen within the last
`ongoing_windows` windows is ongoing: its row gets the new `last_seen_at` and details, and
no new row or alert is made. The rows and the alerts are written in one transaction: if
an alert cannot be delivered nothing is recorded, and the next run raises it again.
Detection is set-based (GROUP BY … HAVING over the window, served by the received_at index).

Malformed rows are in no finding and never changed; they are counted by kind in `bad_rows`:
in the window, no source IP, no signature verdict, or a source "IP" longer than any address;
anywhere, no `received_at` or one more than a day ahead of now (never in a window until then).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, Engine, and_, bindparam, case, func, insert, or_, select

from ops_platform.db import schema
from ops_platform.db.bad_rows import report_bad_rows
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.jobs._common import job_op, one_op_job
from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database

# How a finding's severity maps to the alert channel's severities.
ALERT_SEVERITY = {"medium": "warning", "high": "error", "critical": "critical"}
ESCALATION_FACTOR = 5  # this many times the threshold makes a finding critical / high
MAX_ADDRESS_CHARS = 45  # the longest text form of an IP address (IPv4-mapped IPv6)
FUTURE_SLACK = timedelta(days=1)
MAX_SINGLE_ALERTS = 10  # beyond this, one summary alert for the rest


class SecurityMonitorConfig(dg.Config):
    window_minutes: int = Field(default=15, gt=0, le=7 * 24 * 60, description="Look-back window.")
    invalid_signature_threshold: int = Field(
        default=5, gt=0, description="Invalid signatures per source IP in the window."
    )
    burst_threshold: int = Field(
        default=100, gt=0, description="Requests per source IP in the window."
    )
    ongoing_windows: int = Field(
        default=2, gt=0, description="A finding seen within this many windows is ongoing, not new."
    )


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    fingerprint: str
    details: dict

    @property
    def title(self) -> str:
        d = self.details
        if self.kind == "invalid_signatures":
            return f"{d['invalid_signatures']} webhook events with invalid signatures from {d['source_ip']}"
        if self.kind == "request_burst":
            return f"Burst of {d['requests']} webhook requests from {d['source_ip']}"
        return (
            f"Webhook event {d['event_id']} ({d['provider']}) received {d['times_received']} times"
        )


@dataclass
class MonitorReport:
    new: list[Finding]
    ongoing: list[Finding]
    alerts_sent: int = 0
    bad_rows: dict[str, int] = field(default_factory=dict)  # {webhook_events.<kind>: rows}

    @property
    def findings(self) -> list[Finding]:
        return self.new + self.ongoing


def _iso(value) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


def _escalated(count: int, threshold: int, base: str, higher: str) -> str:
    return higher if count >= threshold * ESCALATION_FACTOR else base


def _malformed(w) -> dict:
    """Kind → condition of a row in the window that no finding may count."""
    return {
        "null_source_ip": w.source_ip.is_(None),
        "null_signature_valid": w.signature_valid.is_(None),
        "source_ip_not_an_address": func.length(w.source_ip) > MAX_ADDRESS_CHARS,
    }


def count_malformed(connection: Connection, now: datetime, since: datetime) -> dict[str, int]:
    """Malformed rows by kind: those of the window, and those with no usable time."""
    w = schema.webhook_events.c
    in_window = and_(w.received_at > since, w.received_at <= now)
    kinds = {name: and_(in_window, condition) for name, condition in _malformed(w).items()}
    kinds["null_received_at"] = w.received_at.is_(None)
    kinds["received_in_future"] = w.received_at > now + FUTURE_SLACK
    row = connection.execute(
        select(
            *(
                func.coalesce(func.sum(case((cond, 1), else_=0)), 0).label(k)
                for k, cond in kinds.items()
            )
        ).where(or_(w.received_at.is_(None), w.received_at > since))
    ).one()
    return {f"webhook_events.{kind}": int(n) for kind, n in row._mapping.items() if n}


def _grouped(connection: Connection, keys: dict, where: list, having, *columns) -> list:
    """Rows of webhook_events grouped by `keys` (name → expression), each with its count `n`,
    first and last `received_at` and `columns`, in key order."""
    w = schema.webhook_events.c
    return connection.execute(
        select(
            *(key.label(name) for name, key in keys.items()),
            func.count().label("n"),
            *columns,
            func.min(w.received_at).label("first"),
            func.max(w.received_at).label("last"),
        )
        .where(*where)
        .group_by(*keys.values())
        .having(having)
        .order_by(*keys.values())
    ).all()


def _seen(row, window: dict) -> dict:
    return {"first_seen": _iso(row.first), "last_seen": _iso(row.last), **window}


def detect_findings(
    connection: Connection, now: datetime, config: SecurityMonitorConfig
) -> list[Finding]:
    """Every finding in the window ending at `now`, in a stable order; malformed rows are
    in none."""
    w = schema.webhook_events.c
    since = now - timedelta(minutes=config.window_minutes)
    well_formed = ~or_(*(func.coalesce(c, True) for c in _malformed(w).values()))
    in_window = [w.received_at > since, w.received_at <= now, well_formed]
    window = {
        "window_minutes": config.window_minutes,
        "window_start": since.isoformat(),
        "window_end": now.isoformat(),
    }
    findings: list[Finding] = []

    invalid_threshold = config.invalid_signature_threshold
    for row in _grouped(
        connection,
        {"source_ip": w.source_ip},
        [*in_window, w.signature_valid.is_(False)],
        func.count() >= invalid_threshold,
        func.count(func.distinct(w.provider)).label("providers"),
    ):
        details = {
            "source_ip": row.source_ip,
            "invalid_signatures": row.n,
            "threshold": invalid_threshold,
            "providers": row.providers,
        }
        findings.append(
            Finding(
                "invalid_signatures",
                _escalated(row.n, invalid_threshold, "high", "critical"),
                f"invalid_signatures:{row.source_ip}",
                details | _seen(row, window),
            )
        )

    for row in _grouped(
        connection,
        {"source_ip": w.source_ip},
        in_window,
        func.count() >= config.burst_threshold,
        func.sum(case((w.signature_valid.is_(False), 1), else_=0)).label("invalid"),
    ):
        details = {
            "source_ip": row.source_ip,
            "requests": row.n,
            "invalid_signatures": int(row.invalid or 0),
            "threshold": config.burst_threshold,
        }
        findings.append(
            Finding(
                "request_burst",
                _escalated(row.n, config.burst_threshold, "medium", "high"),
                f"request_burst:{row.source_ip}",
                details | _seen(row, window),
            )
        )

    for row in _grouped(
        connection,
        {"provider": func.coalesce(w.provider, ""), "event_id": w.event_id},
        [*in_window, w.event_id.is_not(None)],
        func.count() > 1,
        func.count(func.distinct(w.source_ip)).label("sources"),
        func.min(w.source_ip).label("a_source"),
    ):
        details = {
            "provider": row.provider or None,
            "event_id": row.event_id,
            "times_received": row.n,
            "source_ips": row.sources,
            "example_source_ip": row.a_source,
        }
        findings.append(
            Finding(
                "replayed_event",
                "high",
                f"replayed_event:{row.provider}:{row.event_id}",
                details | _seen(row, window),
            )
        )
    return findings


def _ongoing_fingerprints(
    connection: Connection, fingerprints: list[str], since: datetime
) -> set[str]:
    a = schema.security_alert_fingerprints.c
    found: set[str] = set()
    for start in range(0, len(fingerprints), 500):
        chunk = fingerprints[start : start + 500]
        found.update(
            connection.execute(
                select(a.fingerprint).where(a.fingerprint.in_(chunk), a.last_seen_at >= since)
            ).scalars()
        )
    return found


def record_findings(
    connection: Connection, findings: list[Finding], now: datetime, ongoing_since: datetime
) -> MonitorReport:
    """Insert the new findings, refresh the ongoing ones; returns which were which."""
    ongoing_prints = _ongoing_fingerprints(
        connection, [f.fingerprint for f in findings], ongoing_since
    )
    report = MonitorReport(
        new=[f for f in findings if f.fingerprint not in ongoing_prints],
        ongoing=[f for f in findings if f.fingerprint in ongoing_prints],
    )
    alerts, prints = schema.security_alerts, schema.security_alert_fingerprints
    if report.ongoing:
        current = and_(
            prints.c.fingerprint == bindparam("fp"), prints.c.last_seen_at >= bindparam("since")
        )
        params = [
            {"fp": f.fingerprint, "since": ongoing_since, "seen": now, "new_details": f.details}
            for f in report.ongoing
        ]
        connection.execute(
            alerts.update()
            .where(alerts.c.id.in_(select(prints.c.alert_id).where(current)))
            .values(details=bindparam("new_details", type_=alerts.c.details.type)),
            params,
        )
        connection.execute(
            prints.update().where(current).values(last_seen_at=bindparam("seen")), params
        )
    if report.new:
        ids = connection.execute(
            insert(alerts).returning(alerts.c.id, sort_by_parameter_order=True),
            [
                {"kind": f.kind, "severity": f.severity, "details": f.details, "created_at": now}
                for f in report.new
            ],
        ).scalars()
        connection.execute(
            insert(prints),
            [
                {"alert_id": id_, "fingerprint": f.fingerprint, "last_seen_at": now}
                for id_, f in zip(ids, report.new, strict=True)
            ],
        )
    return report


def alert_text(finding: Finding) -> str:
    return "\n".join(
        f"{key}: {value}" for key, value in finding.details.items() if value is not None
    )


def send_alerts(alerts: Alerts, new: list[Finding]) -> int:
    """One alert per new finding (the first few), then one summary for the rest."""
    for finding in new[:MAX_SINGLE_ALERTS]:
        alerts.send(
            f"Webhook security: {finding.title}",
            alert_text(finding),
            ALERT_SEVERITY[finding.severity],
        )
    rest = new[MAX_SINGLE_ALERTS:]
    if rest:
        worst = max(rest, key=lambda f: list(ALERT_SEVERITY).index(f.severity))
        lines = "\n".join(f"- [{f.severity}] {f.title}" for f in rest)
        alerts.send(
            f"Webhook security: {len(rest)} more findings", lines, ALERT_SEVERITY[worst.severity]
        )
    return min(len(new), MAX_SINGLE_ALERTS) + bool(rest)


def monitor_webhooks(
    engine: Engine, alerts: Alerts, now: datetime, config: SecurityMonitorConfig
) -> MonitorReport:
    """Detect, record and alert, in one transaction (an undelivered alert records nothing)."""
    with engine.begin() as connection:
        findings = detect_findings(connection, now, config)
        malformed = count_malformed(connection, now, now - timedelta(minutes=config.window_minutes))
        ongoing_since = now - timedelta(minutes=config.window_minutes * config.ongoing_windows)
        report = record_findings(connection, findings, now, ongoing_since)
        report.bad_rows = malformed
        report.alerts_sent = send_alerts(alerts, report.new)
    return report


@job_op(
    "webhook_security_monitor",
    "Find invalid-signature floods, request bursts and replayed events in recent webhooks; "
    "record and alert.",
    when_lock_held={"findings": 0},
)
def monitor_webhook_security(
    context: dg.OpExecutionContext,
    config: SecurityMonitorConfig,
    database: Database,
    alerts: Alerts,
) -> dg.Output[int]:
    report = monitor_webhooks(database.engine, alerts, utcnow(), config)
    for finding in report.new:
        context.log.warning(f"new {finding.kind} ({finding.severity}): {finding.title}")
    context.log.info(
        f"webhook_security_monitor: {len(report.new)} new findings, {len(report.ongoing)} ongoing "
        f"in the last {config.window_minutes} min; {report.alerts_sent} alerts sent"
    )
    kinds = Counter(finding.kind for finding in report.findings)
    metadata = {
        "findings": len(report.new),
        "ongoing_findings": len(report.ongoing),
        "alerts_sent": report.alerts_sent,
        "rows_changed": len(report.findings),
        **{f"{kind}_findings": count for kind, count in kinds.items()},
        **report_bad_rows(report.bad_rows, context.log.warning),
    }
    if report.new:
        metadata["new_findings"] = dg.MetadataValue.md(
            "\n".join(f"- [{f.severity}] {f.title}" for f in report.new)
        )
    return dg.Output(len(report.new), metadata=metadata)


webhook_security_monitor = one_op_job(
    "webhook_security_monitor",
    monitor_webhook_security,
    "Webhook attack patterns → security_alerts and an alert.",
)


defs = dg.Definitions(jobs=[webhook_security_monitor])
