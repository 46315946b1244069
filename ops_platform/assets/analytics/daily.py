"""The daily analytics tables, one row per course (`daily_course_analytics`) or per student
(`daily_student_analytics`) with activity on a UTC day. Each run replaces its day's rows in
one transaction, so a re-run gives the same table."""

import time
from datetime import date, datetime
from typing import TYPE_CHECKING

import dagster as dg
from sqlalchemy import Engine, delete, insert

from ops_platform.assets._ranges import RANGE_IN_ONE_RUN, PartitionOutcome, materialize_partitions
from ops_platform.assets.analytics.checks import (
    check_course_rows,
    check_row_count_near_median,
    check_specs,
    check_student_rows,
)
from ops_platform.assets.analytics.partitions import DAILY_PARTITIONS, OWNERS, parse_day
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
from ops_platform.schedules.catalog import asset_pool, op_tags

if TYPE_CHECKING:
    import pandas as pd


def replace_day_rows(engine: Engine, table, day: date, frame: "pd.DataFrame", now: datetime) -> int:
    """Replace the day's rows of `table` with `frame`, in one transaction."""
    rows = records(frame.assign(computed_at=now))
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.day == day))
        if rows:
            connection.execute(insert(table), rows)
    return len(rows)


def build_course_analytics(engine: Engine, day: date, now: datetime) -> "pd.DataFrame":
    with engine.connect() as connection:
        frame = course_day_frame(connection, day)
    replace_day_rows(engine, schema.daily_course_analytics, day, frame, now)
    return frame


def build_student_analytics(engine: Engine, day: date, now: datetime) -> "pd.DataFrame":
    with engine.connect() as connection:
        frame = student_day_frame(connection, day)
    replace_day_rows(engine, schema.daily_student_analytics, day, frame, now)
    return frame


def _daily_metadata(frame: "pd.DataFrame", started: float, day: date, sort_by: str) -> dict:
    preview = frame.sort_values(sort_by, ascending=False).head(10).drop(columns=["day"])
    return {
        "day": day.isoformat(),
        "rows_written": len(frame),
        "lessons_completed": int(frame.lessons_completed.sum()) if len(frame) else 0,
        "duration_s": round(time.perf_counter() - started, 3),
        "preview": dg.MetadataValue.md(frame_table(preview, "_no rows_")),
    }


@dg.asset(
    pool=asset_pool("daily_course_analytics"),
    op_tags=op_tags("daily_course_analytics"),
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=RANGE_IN_ONE_RUN,
    output_required=False,
    group_name="analytics",
    deps=[dg.AssetKey("learning_events"), dg.AssetKey("enrollments"), dg.AssetKey("courses")],
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags={"domain": "learning"},
    description="Per course and UTC day: active students, lessons completed, enrollments, "
    "completions, completion rate, average quiz score (table daily_course_analytics).",
    check_specs=check_specs(
        "daily_course_analytics",
        "Blocking: completion rate in [0, 1]; no negative counts or scores.",
    ),
)
def daily_course_analytics(context: dg.AssetExecutionContext, database: Database):
    def one(key: str) -> PartitionOutcome:
        started, day = time.perf_counter(), parse_day(key)
        with transient_retries(context):
            frame = build_course_analytics(database.engine, day, utcnow())
        return PartitionOutcome(
            metadata=_daily_metadata(frame, started, day, "active_students"),
            checks=[
                check_course_rows(database.engine, day),
                check_row_count_near_median(database.engine, schema.daily_course_analytics, day),
            ],
        )

    yield from materialize_partitions(context, one)


@dg.asset(
    pool=asset_pool("daily_student_analytics"),
    op_tags=op_tags("daily_student_analytics"),
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=RANGE_IN_ONE_RUN,
    output_required=False,
    group_name="analytics",
    deps=[dg.AssetKey("learning_events")],
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags={"domain": "learning"},
    description="Per student and UTC day: courses touched, lessons completed, quizzes taken, "
    "average quiz score (table daily_student_analytics).",
    check_specs=check_specs("daily_student_analytics", "Blocking: no negative counts or scores."),
)
def daily_student_analytics(context: dg.AssetExecutionContext, database: Database):
    def one(key: str) -> PartitionOutcome:
        started, day = time.perf_counter(), parse_day(key)
        with transient_retries(context):
            frame = build_student_analytics(database.engine, day, utcnow())
        return PartitionOutcome(
            metadata=_daily_metadata(frame, started, day, "lessons_completed"),
            checks=[
                check_student_rows(database.engine, day),
                check_row_count_near_median(database.engine, schema.daily_student_analytics, day),
            ],
        )

    yield from materialize_partitions(context, one)
