"""The report assets: each partition of a run gets its input partitions looked up in the
instance, its report built from the database, stored, and shown. A report is materialized
by its automation condition once every input partition of its period and the one before is."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import dagster as dg
from sqlalchemy import Engine

from ops_platform.assets._malformed import asset_bad_rows
from ops_platform.assets._ranges import PartitionOutcome, materialize_partitions
from ops_platform.assets.analytics.inputs import ReportInputs, input_deps, report_inputs
from ops_platform.assets.analytics.partitions import analytics_asset, parse_day
from ops_platform.assets.analytics.rendering import Report
from ops_platform.assets.analytics.storage import report_metadata
from ops_platform.resources.database import Database
from ops_platform.resources.object_store import ObjectStore
from ops_platform.retries import transient_retries
from ops_platform.schedules.automation import when_inputs_complete


@dataclass(frozen=True)
class ReportKind:
    """A periodic report: what it reads and how it is built."""

    inputs: tuple[str, ...]  # the daily analytics assets it reads
    input_days: Callable[[date], list[date]]  # the days it reads, from its period's start
    build: Callable[[Engine, date, ReportInputs], Report]
    headline: Callable[[dict], dict]  # figures of the report's metrics shown as metadata


def materialize_reports(
    context: dg.AssetExecutionContext,
    database: Database,
    object_store: ObjectStore,
    kind: ReportKind,
):
    """Every period of the run: its report built, stored, and shown in the metadata."""
    bad_rows = asset_bad_rows(context, database)  # once for the run: a count of the tables

    def one(key: str) -> PartitionOutcome:
        started, period_start = time.perf_counter(), parse_day(key)
        inputs = report_inputs(context.instance, kind.inputs, kind.input_days(period_start))
        with transient_retries(context):
            report = kind.build(database.engine, period_start, inputs)
            metadata = report_metadata(
                database.engine,
                object_store,
                report,
                inputs,
                started,
                **kind.headline(report.metrics),
                days_recomputed=len(report.metrics["days_recomputed"]),
                **bad_rows,
            )
        return PartitionOutcome(metadata=metadata)

    yield from materialize_partitions(context, one)


def report_asset(
    name: str,
    partitions_def: dg.PartitionsDefinition,
    domain: str,
    kind: ReportKind,
    reads: tuple[str, ...],
    description: str,
) -> dg.AssetsDefinition:
    """The asset of a report that reads its `kind.inputs` and the app tables `reads`."""

    @analytics_asset(
        name,
        partitions_def,
        domain,
        deps=[*input_deps(*kind.inputs), *(dg.AssetKey(table) for table in reads)],
        kinds={"pandas", "matplotlib"},
        description=description,
        automation_condition=when_inputs_complete(kind.inputs),
    )
    def _report(context: dg.AssetExecutionContext, database: Database, object_store: ObjectStore):
        yield from materialize_reports(context, database, object_store, kind)

    return _report
