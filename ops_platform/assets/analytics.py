"""Learning analytics and platform reports (seeds 002 and 000).

The database aggregates; pandas joins, derives rates and trends on the aggregated frames;
matplotlib (Agg, no display) draws the charts. Every asset replaces its partition's rows in
one transaction, so a re-run gives the same table.

- `daily_course_analytics` (UTC day): one row per course with activity that day —
  distinct active students, lessons completed, new enrollments, completions, completion
  rate (completed / enrolled among the course's enrollments as of the end of the day) and
  average quiz score.
- `daily_student_analytics` (UTC day): one row per student with learning events that day —
  courses touched, lessons completed, quizzes taken, average quiz score.
- `weekly_trend_report` (weeks Sunday 00:00 → Sunday 00:00 UTC, key = the starting
  Sunday; the Sunday 01:00 tick asks for the week that just ended): week-over-week trends
  from the daily tables for the week and the one before it. A day whose rows are missing
  (daily partition not materialized) is computed from the source tables instead.
- `monthly_executive_summary` (calendar month, UTC): KPIs of users, revenue, engagement,
  learning and games, month over month.
- `hourly_platform_metrics` (UTC hour): signups, active sessions, payments, queue depths
  and failed Dagster runs of the hour.

Reports are Markdown with PNG charts: the charts and the Markdown go to the object store
under `reports/<asset>/<partition>`, the Markdown (linking the stored charts) and the
metrics to `analytics_reports`, and the UI gets the Markdown with the charts embedded as
data URIs.

Learning event kinds: `lesson_completed` (or `lesson_complete`) is a finished lesson; any
kind starting with `quiz` that carries a score is a quiz result.
"""

import base64
import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sqlalchemy import Connection, Engine, delete, insert, select, text

from ops_platform.db import schema
from ops_platform.db.engine import is_postgres, utcnow
from ops_platform.jobs._common import transient_retries
from ops_platform.resources.database import Database
from ops_platform.resources.object_store import ObjectStore
from ops_platform.schedules.catalog import asset_pool

ANALYTICS_START = "2025-01-01"
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=ANALYTICS_START)
# Weeks start on Sunday 00:00 UTC (day_offset=0); 2025-01-05 is the first Sunday of 2025.
WEEKLY_PARTITIONS = dg.WeeklyPartitionsDefinition(start_date="2025-01-05", day_offset=0)
MONTHLY_PARTITIONS = dg.MonthlyPartitionsDefinition(start_date=ANALYTICS_START)
HOURLY_PARTITIONS = dg.HourlyPartitionsDefinition(start_date=f"{ANALYTICS_START}-00:00")

LESSON_KINDS = ("lesson_completed", "lesson_complete")
_IS_LESSON = "kind IN ('lesson_completed', 'lesson_complete')"
_IS_QUIZ = "(kind LIKE 'quiz%' AND score IS NOT NULL)"

OWNERS = ["team:analytics"]
REPORTS_PREFIX = "reports"


# --- small shared helpers -------------------------------------------------------------


def utc_day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def parse_day(key: str, what: str = "partition") -> date:
    try:
        return date.fromisoformat(key)
    except ValueError:
        raise ValueError(f"{what} {key!r} is not a YYYY-MM-DD day") from None


def day_sql(bind, column: str) -> str:
    """SQL giving the UTC day (YYYY-MM-DD text) of a timestamp column."""
    if is_postgres(bind):
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"substr({column}, 1, 10)"


def _read(connection: Connection, sql: str, params: dict) -> pd.DataFrame:
    return pd.read_sql(text(sql), connection, params=params)


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows of an aggregated frame as plain Python values (NaN → None) for an INSERT."""
    rows = []
    for row in frame.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and value != value:
                value = None
            clean[key] = value
        rows.append(clean)
    return rows


def markdown_table(frame: pd.DataFrame, float_digits: int = 2) -> str:
    if frame.empty:
        return "_no rows_"
    columns = list(frame.columns)
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if value is None or (isinstance(value, float) and value != value):
                cells.append("–")
            elif isinstance(value, (bool, np.bool_)):
                cells.append(str(value))
            elif isinstance(value, (int, np.integer)):
                cells.append(f"{int(value):,}")
            elif isinstance(value, (float, np.floating)):
                cells.append(f"{float(value):,.{float_digits}f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class Report:
    """A Markdown report whose charts are referenced as `{chart:<name>}` placeholders."""

    kind: str
    period_key: str
    template: str
    charts: dict[str, bytes]
    metrics: dict
    extra_metadata: dict = field(default_factory=dict)

    def render(self, sources: dict[str, str]) -> str:
        markdown = self.template
        for name, source in sources.items():
            markdown = markdown.replace(f"{{chart:{name}}}", source)
        return markdown

    def object_key(self, suffix: str) -> str:
        return f"{REPORTS_PREFIX}/{self.kind}/{self.period_key}{suffix}"


def store_report(engine: Engine, object_store: ObjectStore, report: Report, now: datetime) -> dict:
    """Charts and Markdown to the object store, the report row to `analytics_reports`
    (replacing the period's row); returns what the UI metadata shows."""
    chart_keys, chart_uris = {}, {}
    for name, png in report.charts.items():
        key = report.object_key(f"-{name}.png")
        chart_keys[name] = key
        chart_uris[name] = object_store.put_bytes(key, png, "image/png")
    stored_markdown = report.render(chart_uris)
    report_uri = object_store.put_bytes(
        report.object_key(".md"), stored_markdown.encode(), "text/markdown"
    )
    metrics = dict(
        report.metrics, chart_keys=list(chart_keys.values()), report_key=report.object_key(".md")
    )
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


# --- daily course and student analytics ----------------------------------------------


def course_day_frame(connection: Connection, day: date) -> pd.DataFrame:
    """One row per course with activity on `day` (UTC), in the table's columns."""
    start, end = utc_day_window(day)
    params = {"start": start, "end": end}
    events = _read(
        connection,
        f"""
        SELECT course_id,
               COUNT(DISTINCT user_id) AS active_students,
               SUM(CASE WHEN {_IS_LESSON} THEN 1 ELSE 0 END) AS lessons_completed,
               AVG(CASE WHEN {_IS_QUIZ} THEN score END) AS avg_quiz_score
        FROM learning_events
        WHERE created_at >= :start AND created_at < :end AND course_id IS NOT NULL
        GROUP BY course_id""",
        params,
    )
    enrolled = _read(
        connection,
        """
        SELECT course_id,
               SUM(CASE WHEN enrolled_at >= :start AND enrolled_at < :end THEN 1 ELSE 0 END) AS enrollments,
               SUM(CASE WHEN completed_at >= :start AND completed_at < :end THEN 1 ELSE 0 END) AS completions,
               SUM(CASE WHEN enrolled_at IS NULL OR enrolled_at < :end THEN 1 ELSE 0 END) AS enrolled_total,
               SUM(CASE WHEN completed_at < :end THEN 1 ELSE 0 END) AS completed_total
        FROM enrollments
        GROUP BY course_id""",
        params,
    )
    frame = events.merge(enrolled, on="course_id", how="outer")
    counts = [
        "active_students",
        "lessons_completed",
        "enrollments",
        "completions",
        "enrolled_total",
        "completed_total",
    ]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    frame = frame[
        (frame.active_students > 0) | (frame.enrollments > 0) | (frame.completions > 0)
    ].copy()
    rate = frame.completed_total / frame.enrolled_total.where(frame.enrolled_total > 0)
    frame["completion_rate"] = rate.clip(upper=1.0)
    frame["avg_quiz_score"] = frame["avg_quiz_score"].astype("float64")
    frame["day"] = day
    frame["course_id"] = frame["course_id"].astype("int64")
    columns = [
        "day",
        "course_id",
        "active_students",
        "lessons_completed",
        "enrollments",
        "completions",
        "completion_rate",
        "avg_quiz_score",
    ]
    return frame[columns].sort_values("course_id").reset_index(drop=True)


def student_day_frame(connection: Connection, day: date) -> pd.DataFrame:
    """One row per student with learning events on `day` (UTC), in the table's columns."""
    start, end = utc_day_window(day)
    frame = _read(
        connection,
        f"""
        SELECT user_id,
               COUNT(DISTINCT course_id) AS courses_active,
               SUM(CASE WHEN {_IS_LESSON} THEN 1 ELSE 0 END) AS lessons_completed,
               SUM(CASE WHEN {_IS_QUIZ} THEN 1 ELSE 0 END) AS quizzes_taken,
               AVG(CASE WHEN {_IS_QUIZ} THEN score END) AS avg_quiz_score
        FROM learning_events
        WHERE created_at >= :start AND created_at < :end
        GROUP BY user_id
        ORDER BY user_id""",
        {"start": start, "end": end},
    )
    frame["day"] = day
    for column in ("user_id", "courses_active", "lessons_completed", "quizzes_taken"):
        frame[column] = frame[column].fillna(0).astype("int64")
    frame["avg_quiz_score"] = frame["avg_quiz_score"].astype("float64")
    return frame[
        ["day", "user_id", "courses_active", "lessons_completed", "quizzes_taken", "avg_quiz_score"]
    ]


def replace_day_rows(engine: Engine, table, day: date, frame: pd.DataFrame, now: datetime) -> int:
    """Replace the day's rows of `table` with `frame`, in one transaction."""
    rows = records(frame.assign(computed_at=now))
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.day == day))
        if rows:
            connection.execute(insert(table), rows)
    return len(rows)


def build_course_analytics(engine: Engine, day: date, now: datetime) -> pd.DataFrame:
    with engine.connect() as connection:
        frame = course_day_frame(connection, day)
    replace_day_rows(engine, schema.daily_course_analytics, day, frame, now)
    return frame


def build_student_analytics(engine: Engine, day: date, now: datetime) -> pd.DataFrame:
    with engine.connect() as connection:
        frame = student_day_frame(connection, day)
    replace_day_rows(engine, schema.daily_student_analytics, day, frame, now)
    return frame


def _daily_metadata(frame: pd.DataFrame, started: float, day: date, sort_by: str) -> dict:
    preview = frame.sort_values(sort_by, ascending=False).head(10).drop(columns=["day"])
    return {
        "day": day.isoformat(),
        "rows_written": len(frame),
        "lessons_completed": int(frame.lessons_completed.sum()) if len(frame) else 0,
        "duration_s": round(time.perf_counter() - started, 3),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


def check_daily_course_rows(engine: Engine, day: date) -> dg.AssetCheckResult:
    table = schema.daily_course_analytics
    with engine.connect() as connection:
        frame = pd.read_sql(select(table).where(table.c.day == day), connection)
    bad_rate = int(((frame.completion_rate < 0) | (frame.completion_rate > 1)).sum())
    negative = int(
        (frame[["active_students", "lessons_completed", "enrollments", "completions"]] < 0)
        .any(axis=1)
        .sum()
    )
    bad_score = int((frame.avg_quiz_score < 0).sum())
    return dg.AssetCheckResult(
        check_name="rates_and_counts_in_range",
        passed=bad_rate == 0 and negative == 0 and bad_score == 0,
        metadata={
            "rows": len(frame),
            "rates_out_of_range": bad_rate,
            "negative_counts": negative,
            "negative_scores": bad_score,
        },
    )


@dg.asset(
    pool=asset_pool("daily_course_analytics"),
    partitions_def=DAILY_PARTITIONS,
    group_name="analytics",
    deps=[dg.AssetKey("learning_events"), dg.AssetKey("enrollments"), dg.AssetKey("courses")],
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags={"domain": "learning"},
    description="Per course and UTC day: active students, lessons completed, enrollments, "
    "completions, completion rate, average quiz score (table daily_course_analytics).",
    check_specs=[
        dg.AssetCheckSpec(
            "rates_and_counts_in_range",
            asset="daily_course_analytics",
            description="Completion rate in [0, 1]; no negative counts or scores.",
        )
    ],
)
def daily_course_analytics(context: dg.AssetExecutionContext, database: Database):
    started, day = time.perf_counter(), parse_day(context.partition_key)
    with transient_retries(context):
        frame = build_course_analytics(database.engine, day, utcnow())
    return dg.MaterializeResult(
        metadata=_daily_metadata(frame, started, day, "active_students"),
        check_results=[check_daily_course_rows(database.engine, day)],
    )


@dg.asset(
    pool=asset_pool("daily_student_analytics"),
    partitions_def=DAILY_PARTITIONS,
    group_name="analytics",
    deps=[dg.AssetKey("learning_events")],
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags={"domain": "learning"},
    description="Per student and UTC day: courses touched, lessons completed, quizzes taken, "
    "average quiz score (table daily_student_analytics).",
)
def daily_student_analytics(context: dg.AssetExecutionContext, database: Database):
    started, day = time.perf_counter(), parse_day(context.partition_key)
    with transient_retries(context):
        frame = build_student_analytics(database.engine, day, utcnow())
    return dg.MaterializeResult(metadata=_daily_metadata(frame, started, day, "lessons_completed"))


# --- weekly trend report --------------------------------------------------------------


def _stored_days(connection: Connection, table, first: date, last: date) -> pd.DataFrame:
    return pd.read_sql(select(table).where(table.c.day >= first, table.c.day <= last), connection)


def daily_rows_for(
    connection: Connection, days: list[date]
) -> tuple[pd.DataFrame, pd.DataFrame, list[date]]:
    """Course and student rows of `days`: the stored ones, and for a day with no stored
    rows the same figures computed from the source tables. Returns the days recomputed."""
    stored_courses = _stored_days(connection, schema.daily_course_analytics, days[0], days[-1])
    stored_students = _stored_days(connection, schema.daily_student_analytics, days[0], days[-1])
    course_parts, student_parts, recomputed = [stored_courses], [stored_students], set()
    for day in days:
        if not (stored_courses.day == day).any():
            course_parts.append(course_day_frame(connection, day))
            recomputed.add(day)
        if not (stored_students.day == day).any():
            student_parts.append(student_day_frame(connection, day))
            recomputed.add(day)
    courses = pd.concat(
        [p for p in course_parts if not p.empty] or [stored_courses], ignore_index=True
    )
    students = pd.concat(
        [p for p in student_parts if not p.empty] or [stored_students], ignore_index=True
    )
    return courses, students, sorted(recomputed)


def week_metrics(courses: pd.DataFrame, students: pd.DataFrame) -> dict:
    quizzes = int(students.quizzes_taken.sum())
    weighted = (students.avg_quiz_score.fillna(0) * students.quizzes_taken).sum()
    return {
        "active_students": int(students.user_id.nunique()),
        "student_days": len(students),
        "lessons_completed": int(courses.lessons_completed.sum()),
        "quizzes_taken": quizzes,
        "avg_quiz_score": round(float(weighted / quizzes), 2) if quizzes else None,
        "new_enrollments": int(courses.enrollments.sum()),
        "completions": int(courses.completions.sum()),
        "active_courses": int(courses.course_id.nunique()),
    }


def percent_change(current, previous) -> float | None:
    if current is None or previous in (None, 0):
        return None
    return round((current - previous) / previous * 100.0, 1)


def _daily_series(courses: pd.DataFrame, students: pd.DataFrame, days: list[date]) -> pd.DataFrame:
    index = pd.Index(days, name="day")
    active = students.groupby("day").user_id.nunique().reindex(index, fill_value=0)
    lessons = courses.groupby("day").lessons_completed.sum().reindex(index, fill_value=0)
    return pd.DataFrame({"active_students": active, "lessons_completed": lessons}).astype("int64")


def weekly_chart(this_week: pd.DataFrame, last_week: pd.DataFrame) -> bytes:
    figure = Figure(figsize=(9, 3.4), dpi=90)
    axes = figure.subplots(1, 2)
    labels = [d.strftime("%a") for d in this_week.index]
    for ax, column, title in zip(
        axes,
        ("active_students", "lessons_completed"),
        ("Active students per day", "Lessons completed per day"),
    ):
        ax.plot(
            labels,
            last_week[column].to_numpy(),
            marker="o",
            linestyle="--",
            color="#9aa5b1",
            label="previous week",
        )
        ax.plot(
            labels, this_week[column].to_numpy(), marker="o", color="#2b6cb0", label="this week"
        )
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return png_bytes(figure)


def fmt(value) -> str:
    """A KPI for a Markdown cell: thousands separators, two decimals, '–' for none."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def _arrow(change: float | None) -> str:
    if change is None:
        return "–"
    return f"{'▲' if change > 0 else '▼' if change < 0 else '='} {change:+.1f}%"


def build_weekly_report(engine: Engine, week_start: date) -> Report:
    """Week-over-week learning trends of the week starting Sunday `week_start`."""
    days = [week_start + timedelta(days=offset) for offset in range(-7, 7)]
    with engine.connect() as connection:
        courses, students, recomputed = daily_rows_for(connection, days)
        titles = pd.read_sql(select(schema.courses.c.id, schema.courses.c.title), connection)
    this_days, last_days = days[7:], days[:7]
    in_week = lambda frame, span: frame[frame.day.isin(span)]  # noqa: E731
    current = week_metrics(in_week(courses, this_days), in_week(students, this_days))
    previous = week_metrics(in_week(courses, last_days), in_week(students, last_days))
    trends = pd.DataFrame(
        [
            (
                name,
                fmt(current[name]),
                fmt(previous[name]),
                _arrow(percent_change(current[name], previous[name])),
            )
            for name in current
        ],
        columns=["metric", "this week", "previous week", "change"],
    )
    top = (
        in_week(courses, this_days)
        .groupby("course_id")
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
    top = top[["course_id", "title", "lessons_completed", "student_days", "completions"]]
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
                markdown_table(trends),
                "![Daily active students and lessons completed, this week vs previous]({chart:daily_activity})",
                "## Top courses this week",
                markdown_table(top),
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
    return Report(
        "weekly_trend_report", week_start.isoformat(), template, {"daily_activity": chart}, metrics
    )


@dg.asset(
    pool=asset_pool("weekly_trend_report"),
    partitions_def=WEEKLY_PARTITIONS,
    group_name="analytics",
    deps=[
        dg.AssetKey("daily_course_analytics"),
        dg.AssetKey("daily_student_analytics"),
        dg.AssetKey("learning_events"),
        dg.AssetKey("enrollments"),
        dg.AssetKey("courses"),
    ],
    kinds={"pandas", "matplotlib"},
    owners=OWNERS,
    tags={"domain": "learning"},
    description="Week-over-week learning trends (weeks Sunday→Sunday UTC) as Markdown with a chart; "
    "stored in analytics_reports and the object store under reports/.",
)
def weekly_trend_report(
    context: dg.AssetExecutionContext, database: Database, object_store: ObjectStore
):
    started, week_start = time.perf_counter(), parse_day(context.partition_key)
    with transient_retries(context):
        report = build_weekly_report(database.engine, week_start)
        metadata = store_report(database.engine, object_store, report, utcnow())
    this_week = report.metrics["this_week"]
    metadata.update(
        active_students=this_week["active_students"],
        lessons_completed=this_week["lessons_completed"],
        days_recomputed=len(report.metrics["days_recomputed"]),
        duration_s=round(time.perf_counter() - started, 3),
    )
    return dg.MaterializeResult(metadata=metadata)


# --- monthly executive summary --------------------------------------------------------


def month_window(month_start: date) -> tuple[datetime, datetime]:
    start = datetime(month_start.year, month_start.month, 1, tzinfo=UTC)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_kpis(connection: Connection, start: datetime, end: datetime) -> dict:
    """KPIs of [start, end): users, revenue, engagement, learning, games."""
    p = {"start": start, "end": end}
    one = lambda sql: dict(connection.execute(text(sql), p).mappings().one())  # noqa: E731
    settled = "COALESCE(settled_at, created_at)"
    users = one("""
        SELECT SUM(CASE WHEN created_at >= :start AND created_at < :end THEN 1 ELSE 0 END) AS signups,
               SUM(CASE WHEN created_at < :end THEN 1 ELSE 0 END) AS total_users,
               SUM(CASE WHEN email_verified_at >= :start AND email_verified_at < :end THEN 1 ELSE 0 END) AS verified,
               SUM(CASE WHEN og_level > 0 AND og_expires_at >= :end THEN 1 ELSE 0 END) AS og_active_at_end
        FROM users""")
    revenue = one(f"""
        SELECT SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS payments_succeeded,
               SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS payments_failed,
               COALESCE(SUM(CASE WHEN status = 'succeeded' THEN amount_cents ELSE 0 END), 0) AS revenue_cents,
               COUNT(DISTINCT CASE WHEN status = 'succeeded' THEN user_id END) AS paying_users
        FROM payments WHERE {settled} >= :start AND {settled} < :end""")
    engagement = one("""
        SELECT COUNT(*) AS stream_events,
               COUNT(DISTINCT user_id) AS engaged_users,
               SUM(CASE WHEN kind = 'view' THEN 1 ELSE 0 END) AS views,
               SUM(CASE WHEN kind = 'chat' THEN 1 ELSE 0 END) AS chats,
               SUM(CASE WHEN kind = 'gift' THEN 1 ELSE 0 END) AS gifts,
               COALESCE(SUM(CASE WHEN kind = 'gift' THEN value ELSE 0 END), 0) AS gift_value,
               COUNT(DISTINCT stream_id) AS streams_with_activity
        FROM stream_events WHERE created_at >= :start AND created_at < :end""")
    learning = one(f"""
        SELECT COUNT(*) AS learning_events,
               COUNT(DISTINCT user_id) AS learners,
               SUM(CASE WHEN {_IS_LESSON} THEN 1 ELSE 0 END) AS lessons_completed,
               SUM(CASE WHEN {_IS_QUIZ} THEN 1 ELSE 0 END) AS quizzes_taken,
               AVG(CASE WHEN {_IS_QUIZ} THEN score END) AS avg_quiz_score
        FROM learning_events WHERE created_at >= :start AND created_at < :end""")
    learning.update(
        one("""
        SELECT SUM(CASE WHEN enrolled_at >= :start AND enrolled_at < :end THEN 1 ELSE 0 END) AS new_enrollments,
               SUM(CASE WHEN completed_at >= :start AND completed_at < :end THEN 1 ELSE 0 END) AS completions
        FROM enrollments""")
    )
    games = one("""
        SELECT COUNT(*) AS games_played, COUNT(DISTINCT player_address) AS players,
               COALESCE(MAX(score), 0) AS top_score
        FROM leaderboard_entries WHERE created_at >= :start AND created_at < :end""")
    kpis = {
        "users": users,
        "revenue": revenue,
        "engagement": engagement,
        "learning": learning,
        "games": games,
    }
    for section in kpis.values():
        for key, value in section.items():
            if value is None:
                section[key] = None if key == "avg_quiz_score" else 0
            elif key in ("avg_quiz_score", "gift_value"):
                section[key] = round(float(value), 2)
            else:
                section[key] = int(value)
    return kpis


def month_daily_series(connection: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Per UTC day of the month: signups, revenue, stream events, learning events, games."""
    bind = connection
    p = {"start": start, "end": end}
    settled = "COALESCE(settled_at, created_at)"
    sources = {
        "signups": f"SELECT {day_sql(bind, 'created_at')} AS day, COUNT(*) AS n FROM users "
        "WHERE created_at >= :start AND created_at < :end GROUP BY 1",
        "revenue_cents": f"SELECT {day_sql(bind, settled)} AS day, SUM(amount_cents) AS n FROM payments "
        f"WHERE status = 'succeeded' AND {settled} >= :start AND {settled} < :end GROUP BY 1",
        "stream_events": f"SELECT {day_sql(bind, 'created_at')} AS day, COUNT(*) AS n FROM stream_events "
        "WHERE created_at >= :start AND created_at < :end GROUP BY 1",
        "learning_events": f"SELECT {day_sql(bind, 'created_at')} AS day, COUNT(*) AS n FROM learning_events "
        "WHERE created_at >= :start AND created_at < :end GROUP BY 1",
        "games_played": f"SELECT {day_sql(bind, 'created_at')} AS day, COUNT(*) AS n FROM leaderboard_entries "
        "WHERE created_at >= :start AND created_at < :end GROUP BY 1",
    }
    days = pd.date_range(start.date(), end.date() - timedelta(days=1), freq="D").strftime(
        "%Y-%m-%d"
    )
    series = {}
    for name, sql in sources.items():
        frame = _read(connection, sql, p)
        series[name] = (
            frame.set_index("day")["n"].reindex(days, fill_value=0).fillna(0).astype("int64")
        )
    return pd.DataFrame(series, index=pd.Index(days, name="day"))


def games_by_type(connection: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    return _read(
        connection,
        """
        SELECT game_type, COUNT(*) AS games_played, COUNT(DISTINCT player_address) AS players,
               MAX(score) AS top_score
        FROM leaderboard_entries WHERE created_at >= :start AND created_at < :end
        GROUP BY game_type ORDER BY games_played DESC, game_type""",
        {"start": start, "end": end},
    )


def monthly_charts(series: pd.DataFrame) -> dict[str, bytes]:
    labels = [day[-2:] for day in series.index]
    money = Figure(figsize=(9, 3.2), dpi=90)
    ax = money.subplots()
    ax.bar(labels, series.revenue_cents.to_numpy() / 100.0, color="#2f855a", label="revenue")
    ax.set_ylabel("revenue")
    ax.set_title("Revenue and signups per day", fontsize=10)
    twin = ax.twinx()
    twin.plot(labels, series.signups.to_numpy(), color="#2b6cb0", marker=".", label="signups")
    twin.set_ylabel("signups")
    twin.set_ylim(bottom=0)
    ax.tick_params(axis="x", labelsize=7)

    activity = Figure(figsize=(9, 3.2), dpi=90)
    ax = activity.subplots()
    for column, color in (
        ("stream_events", "#c05621"),
        ("learning_events", "#2b6cb0"),
        ("games_played", "#6b46c1"),
    ):
        ax.plot(
            labels,
            series[column].to_numpy(),
            marker=".",
            color=color,
            label=column.replace("_", " "),
        )
    ax.set_title("Activity per day", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    return {"revenue_signups": png_bytes(money), "activity": png_bytes(activity)}


def build_monthly_report(engine: Engine, month_start: date) -> Report:
    start, end = month_window(month_start)
    previous_start = month_window(
        date(start.year - (start.month == 1), (start.month - 2) % 12 + 1, 1)
    )[0]
    with engine.connect() as connection:
        current = month_kpis(connection, start, end)
        previous = month_kpis(connection, previous_start, start)
        series = month_daily_series(connection, start, end)
        by_game = games_by_type(connection, start, end)
    rows = []
    for section, values in current.items():
        for name, value in values.items():
            before = previous[section][name]
            rows.append(
                (section, name, fmt(value), fmt(before), _arrow(percent_change(value, before)))
            )
    kpi_table = pd.DataFrame(
        rows, columns=["area", "kpi", "this month", "previous month", "change"]
    )
    revenue = current["revenue"]["revenue_cents"] / 100.0
    headline = (
        f"**{current['users']['signups']:,}** signups · **{revenue:,.2f}** revenue from "
        f"**{current['revenue']['payments_succeeded']:,}** payments · "
        f"**{current['engagement']['stream_events']:,}** stream interactions · "
        f"**{current['learning']['lessons_completed']:,}** lessons completed · "
        f"**{current['games']['games_played']:,}** games played"
    )
    template = "\n\n".join(
        [
            f"# Executive summary: {start:%B %Y} (UTC)",
            headline,
            markdown_table(kpi_table),
            "![Revenue and signups per day]({chart:revenue_signups})",
            "![Activity per day]({chart:activity})",
            "## Games by type",
            markdown_table(by_game),
        ]
    )
    metrics = {"month": start.strftime("%Y-%m"), "this_month": current, "previous_month": previous}
    return Report(
        "monthly_executive_summary",
        month_start.isoformat(),
        template,
        monthly_charts(series),
        metrics,
    )


@dg.asset(
    pool=asset_pool("monthly_executive_summary"),
    partitions_def=MONTHLY_PARTITIONS,
    group_name="analytics",
    deps=[
        dg.AssetKey(name)
        for name in (
            "users",
            "payments",
            "stream_events",
            "learning_events",
            "enrollments",
            "leaderboard_entries",
        )
    ],
    kinds={"pandas", "matplotlib"},
    owners=OWNERS,
    tags={"domain": "executive"},
    description="KPIs of the month (users, revenue, engagement, learning, games), month over month, as "
    "Markdown with charts; stored in analytics_reports and the object store under reports/.",
)
def monthly_executive_summary(
    context: dg.AssetExecutionContext, database: Database, object_store: ObjectStore
):
    started, month_start = time.perf_counter(), parse_day(context.partition_key)
    with transient_retries(context):
        report = build_monthly_report(database.engine, month_start)
        metadata = store_report(database.engine, object_store, report, utcnow())
    this_month = report.metrics["this_month"]
    metadata.update(
        signups=this_month["users"]["signups"],
        revenue_cents=this_month["revenue"]["revenue_cents"],
        duration_s=round(time.perf_counter() - started, 3),
    )
    return dg.MaterializeResult(metadata=metadata)


# --- hourly platform metrics ------------------------------------------------------------


def hour_metrics(connection: Connection, start: datetime, end: datetime) -> dict:
    """Platform figures of the hour [start, end). Depths are as at the end of the hour."""
    p = {"start": start, "end": end}
    settled = "COALESCE(settled_at, last_checked_at, created_at)"
    row = (
        connection.execute(
            text(f"""
        SELECT
          (SELECT COUNT(*) FROM users WHERE created_at >= :start AND created_at < :end) AS signups,
          (SELECT COUNT(*) FROM sessions
            WHERE created_at < :end
              AND (expires_at IS NULL OR expires_at >= :end)
              AND (revoked_at IS NULL OR revoked_at >= :end)) AS active_sessions,
          (SELECT COUNT(*) FROM payments WHERE status = 'succeeded'
              AND {settled} >= :start AND {settled} < :end) AS payments_succeeded,
          (SELECT COUNT(*) FROM payments WHERE status = 'failed'
              AND {settled} >= :start AND {settled} < :end) AS payments_failed,
          (SELECT COALESCE(SUM(amount_cents), 0) FROM payments WHERE status = 'succeeded'
              AND {settled} >= :start AND {settled} < :end) AS revenue_cents,
          (SELECT COUNT(*) FROM notification_email_queue
            WHERE COALESCE(scheduled_for, claimed_at) < :end
              AND (status IN ('pending', 'processing', 'failed')
                   OR (status = 'sent' AND sent_at >= :end))) AS email_queue_depth,
          (SELECT COUNT(*) FROM realtime_events
            WHERE created_at < :end AND (published_at IS NULL OR published_at >= :end)) AS realtime_outbox_depth
    """),
            p,
        )
        .mappings()
        .one()
    )
    return {key: int(value or 0) for key, value in row.items()}


def failed_runs_in(instance: dg.DagsterInstance | None, start: datetime, end: datetime) -> int:
    """Dagster runs that failed during [start, end) (their last update in the hour)."""
    if instance is None:
        return 0
    return instance.get_runs_count(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE], updated_after=start, updated_before=end
        )
    )


def build_hourly_metrics(engine: Engine, start: datetime, job_failures: int, now: datetime) -> dict:
    end = start + timedelta(hours=1)
    with engine.connect() as connection:
        metrics = hour_metrics(connection, start, end)
    row = {"hour": start, **metrics, "job_failures": job_failures, "computed_at": now}
    table = schema.hourly_platform_metrics
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.hour == start))
        connection.execute(insert(table).values(**row))
    return row


@dg.asset(
    pool=asset_pool("hourly_platform_metrics"),
    partitions_def=HOURLY_PARTITIONS,
    group_name="analytics",
    deps=[
        dg.AssetKey(name)
        for name in ("users", "sessions", "payments", "notification_email_queue", "realtime_events")
    ],
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags={"domain": "platform"},
    description="Per UTC hour: signups, active sessions, payments succeeded/failed and revenue, email "
    "queue and real-time outbox depth, failed Dagster runs (table hourly_platform_metrics).",
)
def hourly_platform_metrics(context: dg.AssetExecutionContext, database: Database):
    started = time.perf_counter()
    window = context.partition_time_window
    start = window.start.astimezone(UTC)
    failures = failed_runs_in(context.instance, start, window.end.astimezone(UTC))
    with transient_retries(context):
        row = build_hourly_metrics(database.engine, start, failures, utcnow())
    shown = {k: v for k, v in row.items() if k not in ("hour", "computed_at")}
    metadata = {k: v for k, v in shown.items()}
    metadata.update(
        hour=start.isoformat(),
        rows_written=1,
        duration_s=round(time.perf_counter() - started, 3),
        preview=dg.MetadataValue.md(markdown_table(pd.DataFrame([shown]))),
    )
    return dg.MaterializeResult(metadata=metadata)


defs = dg.Definitions(
    assets=[
        daily_course_analytics,
        daily_student_analytics,
        weekly_trend_report,
        monthly_executive_summary,
        hourly_platform_metrics,
    ]
)
