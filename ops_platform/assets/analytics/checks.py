"""Checks of the daily analytics tables, run with each day's materialization.

- Counts never negative, rates within 0–1, scores never negative: blocking (a report is
  never built from a day that fails them; the run fails and is alerted).
- The day's row count within a factor of the trailing median of the previous days that have
  rows: a warning (a quiet holiday or a launch is possible, a silent data loss is not).
"""

from __future__ import annotations

import statistics
from datetime import date, timedelta

import dagster as dg
from sqlalchemy import Engine, func, select

from ops_platform.assets.analytics.sources import read_frame
from ops_platform.db import schema

ROW_COUNT_FACTOR = 3.0  # the day's rows within [median / 3, median × 3]
TRAILING_DAYS = 28
MIN_HISTORY_DAYS = 7  # fewer earlier days with rows: not enough to judge, the check passes

COURSE_COUNTS = ["active_students", "lessons_completed", "enrollments", "completions"]
STUDENT_COUNTS = ["courses_active", "lessons_completed", "quizzes_taken"]

IN_RANGE = "rates_and_counts_in_range"
NEAR_MEDIAN = "row_count_near_trailing_median"


def check_specs(asset: str, ranges: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(IN_RANGE, asset=asset, description=ranges, blocking=True),
        dg.AssetCheckSpec(
            NEAR_MEDIAN,
            asset=asset,
            description=f"Warns when the day's row count is not within a factor "
            f"{ROW_COUNT_FACTOR:g} of the median of the previous {TRAILING_DAYS} days with rows.",
        ),
    ]


def _day_rows(engine: Engine, table, day: date):
    with engine.connect() as connection:
        return read_frame(connection, select(table).where(table.c.day == day))


def _negative_rows(frame, columns: list[str]) -> int:
    return int((frame[columns] < 0).any(axis=1).sum())


def check_course_rows(engine: Engine, day: date) -> dg.AssetCheckResult:
    frame = _day_rows(engine, schema.daily_course_analytics, day)
    bad_rate = int(((frame.completion_rate < 0) | (frame.completion_rate > 1)).sum())
    negative = _negative_rows(frame, COURSE_COUNTS)
    bad_score = int((frame.avg_quiz_score < 0).sum())
    return dg.AssetCheckResult(
        check_name=IN_RANGE,
        passed=bad_rate == 0 and negative == 0 and bad_score == 0,
        metadata={
            "rows": len(frame),
            "rates_out_of_range": bad_rate,
            "negative_counts": negative,
            "negative_scores": bad_score,
        },
    )


def check_student_rows(engine: Engine, day: date) -> dg.AssetCheckResult:
    frame = _day_rows(engine, schema.daily_student_analytics, day)
    negative = _negative_rows(frame, STUDENT_COUNTS)
    bad_score = int((frame.avg_quiz_score < 0).sum())
    return dg.AssetCheckResult(
        check_name=IN_RANGE,
        passed=negative == 0 and bad_score == 0,
        metadata={"rows": len(frame), "negative_counts": negative, "negative_scores": bad_score},
    )


def check_row_count_near_median(engine: Engine, table, day: date) -> dg.AssetCheckResult:
    """The day's row count against the median of the previous `TRAILING_DAYS` days that have
    rows (one GROUP BY over the trailing window)."""
    first = day - timedelta(days=TRAILING_DAYS)
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                select(table.c.day, func.count())
                .where(table.c.day >= first, table.c.day <= day)
                .group_by(table.c.day)
            ).all()
        )
    rows = int(counts.pop(day, 0))
    history = [int(n) for n in counts.values()]
    metadata = {"rows": rows, "history_days": len(history)}
    if len(history) < MIN_HISTORY_DAYS:
        return dg.AssetCheckResult(
            check_name=NEAR_MEDIAN,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=f"fewer than {MIN_HISTORY_DAYS} earlier days with rows: not judged",
        )
    median = statistics.median(history)
    low, high = median / ROW_COUNT_FACTOR, median * ROW_COUNT_FACTOR
    metadata.update(trailing_median=float(median), lower_bound=low, upper_bound=high)
    return dg.AssetCheckResult(
        check_name=NEAR_MEDIAN,
        passed=low <= rows <= high,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )
