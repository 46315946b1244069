"""The daily analytics tables, one row per course (`daily_course_analytics`) or per student
(`daily_student_analytics`) with activity on a UTC day. Each run replaces its day's rows in
one transaction, so a re-run gives the same table."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import dagster as dg
from sqlalchemy import Connection, Engine, Table, delete, insert

from ops_platform.assets._malformed import asset_bad_rows
from ops_platform.assets._ranges import PartitionOutcome, materialize_partitions
from ops_platform.assets.analytics.checks import (
    check_course_rows,
    check_row_count_near_median,
    check_specs,
    check_student_rows,
)
from ops_platform.assets.analytics.partitions import DAILY_PARTITIONS, analytics_asset, parse_day
from ops_platform.assets.analytics.sources import (
    course_day_frame,
    records,
    student_day_frame,
)
from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.markdown import frame_table
from ops_platform.resources.database import Database
from ops_platform.retries import transient_retries

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DailyTable:
    """A daily analytics table: how a day's rows are computed and checked."""

    table: Table
    frame_of: Callable[[Connection, date], "pd.DataFrame"]
    preview_by: str  # the preview shows the day's top rows by this column
    check_rows: Callable[[Engine, date], dg.AssetCheckResult]


COURSES = DailyTable(
    schema.daily_course_analytics, course_day_frame, "active_students", check_course_rows
)
STUDENTS = DailyTable(
    schema.daily_student_analytics, student_day_frame, "lessons_completed", check_student_rows
)


def replace_day_rows(engine: Engine, table, day: date, frame: "pd.DataFrame", now: datetime) -> int:
    """Replace the day's rows of `table` with `frame`, in one transaction."""
    rows = records(frame.assign(computed_at=now))
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.day == day))
        if rows:
            connection.execute(insert(table), rows)
    return len(rows)


def build_day(engine: Engine, daily: DailyTable, day: date, now: datetime) -> "pd.DataFrame":
    """Compute the day's rows of `daily` from the app tables and store them."""
    with engine.connect() as connection:
        frame = daily.frame_of(connection, day)
    replace_day_rows(engine, daily.table, day, frame, now)
    return frame


def build_course_analytics(engine: Engine, day: date, now: datetime) -> "pd.DataFrame":
    return build_day(engine, COURSES, day, now)


def build_student_analytics(engine: Engine, day: date, now: datetime) -> "pd.DataFrame":
    return build_day(engine, STUDENTS, day, now)


def _daily_metadata(
    frame: "pd.DataFrame", started: float, day: date, sort_by: str, bad_rows: dict
) -> dict:
    preview = frame.sort_values(sort_by, ascending=False).head(10).drop(columns=["day"])
    return {
        "day": day.isoformat(),
        "rows_written": len(frame),
        "lessons_completed": int(frame.lessons_completed.sum()) if len(frame) else 0,
        **bad_rows,
        "duration_s": round(time.perf_counter() - started, 3),
        "preview": dg.MetadataValue.md(frame_table(preview, "_no rows_")),
    }


def materialize_days(context: dg.AssetExecutionContext, database: Database, daily: DailyTable):
    """Every day of the run: its rows of `daily` rebuilt, then checked. Malformed rows are
    counted once for the run (the count is of the tables, not of a day)."""
    engine = database.engine
    bad_rows = asset_bad_rows(context, database)

    def one(key: str) -> PartitionOutcome:
        started, day = time.perf_counter(), parse_day(key)
        with transient_retries(context):
            frame = build_day(engine, daily, day, utcnow())
        return PartitionOutcome(
            metadata=_daily_metadata(frame, started, day, daily.preview_by, bad_rows),
            checks=[
                daily.check_rows(engine, day),
                check_row_count_near_median(engine, daily.table, day),
            ],
        )

    yield from materialize_partitions(context, one)


@analytics_asset(
    "daily_course_analytics",
    DAILY_PARTITIONS,
    "learning",
    deps=[dg.AssetKey("learning_events"), dg.AssetKey("enrollments"), dg.AssetKey("courses")],
    kinds={"pandas", "sql", "postgres"},
    description="Per course and UTC day: active students, lessons completed, enrollments, "
    "completions, completion rate, average quiz score (table daily_course_analytics).",
    check_specs=check_specs(
        "daily_course_analytics",
        "Blocking: completion rate in [0, 1]; no negative counts or scores.",
    ),
)
def daily_course_analytics(context: dg.AssetExecutionContext, database: Database):
    yield from materialize_days(context, database, COURSES)


@analytics_asset(
    "daily_student_analytics",
    DAILY_PARTITIONS,
    "learning",
    deps=[dg.AssetKey("learning_events")],
    kinds={"pandas", "sql", "postgres"},
    description="Per student and UTC day: courses touched, lessons completed, quizzes taken, "
    "average quiz score (table daily_student_analytics).",
    check_specs=check_specs("daily_student_analytics", "Blocking: no negative counts or scores."),
)
def daily_student_analytics(context: dg.AssetExecutionContext, database: Database):
    yield from materialize_days(context, database, STUDENTS)
