"""Report storage: charts and Markdown to the object store under `reports/<asset>/<period>`,
the report row (the Markdown linking the stored charts, and the metrics) to
`analytics_reports`, and what the UI shows: the Markdown with the charts embedded as data URIs."""

from __future__ import annotations

import json
import time
from datetime import datetime

import dagster as dg
from sqlalchemy import Engine, delete, insert

from ops_platform.assets.analytics.inputs import ReportInputs
from ops_platform.assets.analytics.rendering import Report, data_uri
from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.resources.object_store import ObjectStore

REPORTS_PREFIX = "reports"


def report_object_key(report: Report, suffix: str) -> str:
    return f"{REPORTS_PREFIX}/{report.kind}/{report.period_key}{suffix}"


def store_report(engine: Engine, object_store: ObjectStore, report: Report, now: datetime) -> dict:
    """Charts and Markdown to the object store, the report row to `analytics_reports`
    (replacing the period's row); returns what the UI metadata shows."""
    chart_keys, chart_uris = {}, {}
    for name, png in report.charts.items():
        key = report_object_key(report, f"-{name}.png")
        chart_keys[name] = key
        chart_uris[name] = object_store.put_bytes(key, png, "image/png")
    stored_markdown = report.render(chart_uris)
    report_key = report_object_key(report, ".md")
    report_uri = object_store.put_bytes(report_key, stored_markdown.encode(), "text/markdown")
    metrics = dict(report.metrics, chart_keys=list(chart_keys.values()), report_key=report_key)
    table = schema.analytics_reports
    with engine.begin() as connection:
        connection.execute(
            delete(table).where(
                table.c.kind == report.kind, table.c.period_key == report.period_key
            )
        )
        connection.execute(
            insert(table).values(
                kind=report.kind,
                period_key=report.period_key,
                markdown=stored_markdown,
                chart_key=next(iter(chart_keys.values()), None),
                metrics=json.loads(json.dumps(metrics, default=str)),
                created_at=now,
            )
        )
    ui_markdown = report.render({name: data_uri(png) for name, png in report.charts.items()})
    return {
        "report": dg.MetadataValue.md(ui_markdown),
        "report_uri": dg.MetadataValue.url(report_uri),
        "chart_uris": ", ".join(chart_uris.values()),
        "rows_written": 1,
    }


def report_metadata(
    engine: Engine,
    object_store: ObjectStore,
    report: Report,
    inputs: ReportInputs,
    started: float,
    **figures,
) -> dict:
    """Store the report; returns what its materialization shows: the report, the input
    partitions it read (with their materialization times), headline figures, the duration."""
    metadata = store_report(engine, object_store, report, utcnow())
    metadata.update(inputs.metadata())
    metadata.update(figures, duration_s=round(time.perf_counter() - started, 3))
    return metadata
