"""`weekly_trend_report` (weeks Sunday 00:00 → Sunday 00:00 UTC, key = the starting Sunday;
the Sunday 01:00 tick asks for the week that just ended): week-over-week learning trends
from the daily tables for the week and the one before it, as Markdown with a chart. A day
whose rows are missing (daily partition not materialized) is computed from the source
tables instead."""

from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, select

from ops_platform.assets.analytics.inputs import (
    DAILY_INPUTS,
    ReportInputs,
    days_between,
)
from ops_platform.assets.analytics.partitions import WEEKLY_PARTITIONS
from ops_platform.assets.analytics.rendering import (
    Report,
    comparison_row,
    percent_change,
    weekly_chart,
)
from ops_platform.assets.analytics.reports import ReportKind, report_asset
from ops_platform.assets.analytics.sources import (
    course_day_frame,
    quiz_average,
    read_frame,
    stored_or_computed,
    student_day_frame,
)
from ops_platform.db import schema
from ops_platform.markdown import frame_table

if TYPE_CHECKING:
    import pandas as pd


def daily_rows_for(
    connection: Connection, days: list[date]
) -> "tuple[pd.DataFrame, pd.DataFrame, list[date]]":
    """Course and student rows of `days`: the stored ones, and for a day with no stored
    rows the same figures computed from the source tables. Returns the days recomputed."""
    courses, course_days = stored_or_computed(
        connection, schema.daily_course_analytics, course_day_frame, days
    )
    students, student_days = stored_or_computed(
        connection, schema.daily_student_analytics, student_day_frame, days
    )
    return courses, students, sorted(course_days | student_days)


def weekly_input_days(week_start: date) -> list[date]:
    """The days a week's report reads: its week and the week before."""
    return days_between(week_start - timedelta(days=7), week_start + timedelta(days=7))


def week_metrics(courses: "pd.DataFrame", students: "pd.DataFrame") -> dict:
    return {
        "active_students": int(students.user_id.nunique()),
        "student_days": len(students),
        "lessons_completed": int(courses.lessons_completed.sum()),
        "quizzes_taken": int(students.quizzes_taken.sum()),
        "avg_quiz_score": quiz_average(students),
        "new_enrollments": int(courses.enrollments.sum()),
        "completions": int(courses.completions.sum()),
        "active_courses": int(courses.course_id.nunique()),
    }


def _daily_series(
    courses: "pd.DataFrame", students: "pd.DataFrame", days: list[date]
) -> "pd.DataFrame":
    import pandas as pd

    index = pd.Index(days, name="day")
    active = students.groupby("day").user_id.nunique().reindex(index, fill_value=0)
    lessons = courses.groupby("day").lessons_completed.sum().reindex(index, fill_value=0)
    return pd.DataFrame({"active_students": active, "lessons_completed": lessons}).astype("int64")


def _top_courses(courses: "pd.DataFrame", titles: "pd.DataFrame") -> "pd.DataFrame":
    top = (
        courses.groupby("course_id")
        .agg(
            lessons_completed=("lessons_completed", "sum"),
            student_days=("active_students", "sum"),
            completions=("completions", "sum"),
        )
        .reset_index()
        .merge(titles.rename(columns={"id": "course_id"}), on="course_id", how="left")
        .sort_values(["lessons_completed", "course_id"], ascending=[False, True])
        .head(10)
    )
    return top[["course_id", "title", "lessons_completed", "student_days", "completions"]]


def build_weekly_report(
    engine: Engine, week_start: date, inputs: ReportInputs | None = None
) -> Report:
    """Week-over-week learning trends of the week starting Sunday `week_start`; `inputs`
    (the daily partitions it read, from the instance) adds what it used to the report."""
    import pandas as pd

    days = [week_start + timedelta(days=offset) for offset in range(-7, 7)]
    with engine.connect() as connection:
        courses, students, recomputed = daily_rows_for(connection, days)
        titles = read_frame(connection, select(schema.courses.c.id, schema.courses.c.title))
    this_days, last_days = days[7:], days[:7]
    in_week = lambda frame, span: frame[frame.day.isin(span)]  # noqa: E731
    current = week_metrics(in_week(courses, this_days), in_week(students, this_days))
    previous = week_metrics(in_week(courses, last_days), in_week(students, last_days))
    trends = pd.DataFrame(
        [comparison_row(name, current[name], previous[name]) for name in current],
        columns=["metric", "this week", "previous week", "change"],
    )
    top = _top_courses(in_week(courses, this_days), titles)
    chart = weekly_chart(
        _daily_series(courses, students, this_days), _daily_series(courses, students, last_days)
    )
    week_end = week_start + timedelta(days=6)
    note = (
        (
            f"_Computed from the source tables (daily partitions not materialized): "
            f"{', '.join(d.isoformat() for d in recomputed)}._"
        )
        if recomputed
        else ""
    )
    template = "\n\n".join(
        filter(
            None,
            [
                f"# Weekly learning trends: {week_start:%a %Y-%m-%d} – {week_end:%a %Y-%m-%d} (UTC)",
                inputs.summary() if inputs else "",
                frame_table(trends, "_no rows_"),
                "![Daily active students and lessons completed, this week vs previous]({chart:daily_activity})",
                "## Top courses this week",
                frame_table(top, "_no rows_"),
                note,
            ],
        )
    )
    metrics = {
        "week_start": week_start.isoformat(),
        "this_week": current,
        "previous_week": previous,
        "change_percent": {k: percent_change(current[k], previous[k]) for k in current},
        "days_recomputed": [d.isoformat() for d in recomputed],
    }
    if inputs:
        metrics.update(inputs_complete=inputs.complete, inputs=inputs.as_json())
    return Report(
        "weekly_trend_report", week_start.isoformat(), template, {"daily_activity": chart}, metrics
    )


def _weekly_headline(metrics: dict) -> dict:
    this_week = metrics["this_week"]
    return {
        "active_students": this_week["active_students"],
        "lessons_completed": this_week["lessons_completed"],
    }


WEEKLY_REPORT = ReportKind(DAILY_INPUTS, weekly_input_days, build_weekly_report, _weekly_headline)


weekly_trend_report = report_asset(
    "weekly_trend_report",
    WEEKLY_PARTITIONS,
    "learning",
    WEEKLY_REPORT,
    reads=("learning_events", "enrollments", "courses"),
    description="Week-over-week learning trends (weeks Sunday→Sunday UTC) as Markdown with a "
    "chart; stored in analytics_reports and the object store under reports/. Materialized once "
    "every daily analytics partition of the week and the week before is.",
)
