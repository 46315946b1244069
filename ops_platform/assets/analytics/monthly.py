"""`monthly_executive_summary` (calendar month, UTC): KPIs of users, revenue, engagement,
learning and games, month over month, as Markdown with charts."""

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from ops_platform.assets.analytics.inputs import (
    ReportInputs,
    days_between,
)
from ops_platform.assets.analytics.partitions import (
    MONTHLY_PARTITIONS,
    month_window,
)
from ops_platform.assets.analytics.rendering import Report, comparison_row, monthly_charts
from ops_platform.assets.analytics.reports import ReportKind, report_asset
from ops_platform.assets.analytics.sources import (
    IS_LESSON,
    IS_QUIZ,
    day_sql,
    quiz_average,
    read_frame,
    stored_or_computed,
    student_day_frame,
)
from ops_platform.db import schema
from ops_platform.db.bad_rows import well_formed
from ops_platform.markdown import markdown_table

# The learning figures of the summary come from the daily student analytics.
MONTHLY_INPUTS = ("daily_student_analytics",)

if TYPE_CHECKING:
    import pandas as pd


def in_window(bind, table: str, time: str = "created_at") -> str:
    """`<table> WHERE ...`: its well-formed rows (malformed ones are skipped and counted
    apart) whose `time` falls in [:start, :end)."""
    return f"{table} WHERE {well_formed(bind, table)} AND {time} >= :start AND {time} < :end"


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
        FROM {in_window(connection, "payments", settled)}""")
    engagement = one(f"""
        SELECT COUNT(*) AS stream_events,
               COUNT(DISTINCT user_id) AS engaged_users,
               SUM(CASE WHEN kind = 'view' THEN 1 ELSE 0 END) AS views,
               SUM(CASE WHEN kind = 'chat' THEN 1 ELSE 0 END) AS chats,
               SUM(CASE WHEN kind = 'gift' THEN 1 ELSE 0 END) AS gifts,
               COALESCE(SUM(CASE WHEN kind = 'gift' THEN value ELSE 0 END), 0) AS gift_value,
               COUNT(DISTINCT stream_id) AS streams_with_activity
        FROM {in_window(connection, "stream_events")}""")
    learning = one(f"""
        SELECT COUNT(*) AS learning_events,
               COUNT(DISTINCT user_id) AS learners,
               SUM(CASE WHEN {IS_LESSON} THEN 1 ELSE 0 END) AS lessons_completed,
               SUM(CASE WHEN {IS_QUIZ} THEN 1 ELSE 0 END) AS quizzes_taken,
               AVG(CASE WHEN {IS_QUIZ} THEN score END) AS avg_quiz_score
        FROM {in_window(connection, "learning_events")}""")
    learning.update(
        one(f"""
        SELECT SUM(CASE WHEN enrolled_at >= :start AND enrolled_at < :end THEN 1 ELSE 0 END) AS new_enrollments,
               SUM(CASE WHEN completed_at >= :start AND completed_at < :end THEN 1 ELSE 0 END) AS completions
        FROM enrollments WHERE {well_formed(connection, "enrollments")}""")
    )
    games = one(f"""
        SELECT COUNT(*) AS games_played, COUNT(DISTINCT player_address) AS players,
               COALESCE(MAX(score), 0) AS top_score
        FROM {in_window(connection, "leaderboard_entries")}""")
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


def month_daily_series(connection: Connection, start: datetime, end: datetime) -> "pd.DataFrame":
    """Per UTC day of the month: signups, revenue, stream events, learning events, games."""
    import pandas as pd

    bind = connection
    p = {"start": start, "end": end}
    settled = "COALESCE(settled_at, created_at)"
    sources = {
        "signups": f"SELECT {day_sql(bind, 'created_at')} AS day, COUNT(*) AS n FROM users "
        "WHERE created_at >= :start AND created_at < :end GROUP BY 1",
        "revenue_cents": f"SELECT {day_sql(bind, settled)} AS day, SUM(amount_cents) AS n "
        f"FROM {in_window(bind, 'payments', settled)} AND status = 'succeeded' GROUP BY 1",
        **{
            series: f"SELECT {day_sql(bind, 'created_at')} AS day, COUNT(*) AS n "
            f"FROM {in_window(bind, table)} GROUP BY 1"
            for series, table in (
                ("stream_events", "stream_events"),
                ("learning_events", "learning_events"),
                ("games_played", "leaderboard_entries"),
            )
        },
    }
    days = pd.date_range(start.date(), end.date() - timedelta(days=1), freq="D").strftime(
        "%Y-%m-%d"
    )
    series = {}
    for name, sql in sources.items():
        frame = read_frame(connection, sql, p)
        series[name] = (
            frame.set_index("day")["n"].reindex(days, fill_value=0).fillna(0).astype("int64")
        )
    return pd.DataFrame(series, index=pd.Index(days, name="day"))


def games_by_type(connection: Connection, start: datetime, end: datetime) -> list:
    return connection.execute(
        text(f"""
        SELECT game_type, COUNT(*) AS games_played, COUNT(DISTINCT player_address) AS players,
               MAX(score) AS top_score
        FROM {in_window(connection, "leaderboard_entries")}
        GROUP BY game_type ORDER BY games_played DESC, game_type"""),
        {"start": start, "end": end},
    ).all()


def previous_month_start(month_start: date) -> date:
    return date(month_start.year - (month_start.month == 1), (month_start.month - 2) % 12 + 1, 1)


def monthly_input_days(month_start: date) -> list[date]:
    """The days a month's summary reads from the daily analytics: its month and the one before."""
    return days_between(previous_month_start(month_start), month_window(month_start)[1].date())


def learning_from_daily(connection: Connection, first: date, end: date) -> tuple[dict, set[date]]:
    """Learners, lessons, quizzes and quiz average of [first, end) from the daily student
    analytics (a day not stored is computed from the source); and the days computed."""
    days = [first + timedelta(days=n) for n in range((end - first).days)]
    students, computed = stored_or_computed(
        connection, schema.daily_student_analytics, student_day_frame, days
    )
    figures = {
        "learners": int(students.user_id.nunique()),
        "lessons_completed": int(students.lessons_completed.sum()),
        "quizzes_taken": int(students.quizzes_taken.sum()),
        "avg_quiz_score": quiz_average(students),
    }
    return figures, computed


def build_monthly_report(
    engine: Engine, month_start: date, inputs: ReportInputs | None = None
) -> Report:
    """KPIs of the month starting `month_start`, month over month; the learning figures come
    from the daily student analytics. `inputs` adds the partitions it read to the report."""
    start, end = month_window(month_start)
    previous_start = month_window(previous_month_start(month_start))[0]
    with engine.connect() as connection:
        current = month_kpis(connection, start, end)
        previous = month_kpis(connection, previous_start, start)
        learning, computed = learning_from_daily(connection, start.date(), end.date())
        previous_learning, previous_computed = learning_from_daily(
            connection, previous_start.date(), start.date()
        )
        series = month_daily_series(connection, start, end)
        by_game = games_by_type(connection, start, end)
    current["learning"].update(learning)
    previous["learning"].update(previous_learning)
    kpi_rows = [
        (section, *comparison_row(name, value, previous[section][name]))
        for section, values in current.items()
        for name, value in values.items()
    ]
    revenue = current["revenue"]["revenue_cents"] / 100.0
    headline = (
        f"**{current['users']['signups']:,}** signups · **{revenue:,.2f}** revenue from "
        f"**{current['revenue']['payments_succeeded']:,}** payments · "
        f"**{current['engagement']['stream_events']:,}** stream interactions · "
        f"**{current['learning']['lessons_completed']:,}** lessons completed · "
        f"**{current['games']['games_played']:,}** games played"
    )
    template = "\n\n".join(
        part
        for part in (
            f"# Executive summary: {start:%B %Y} (UTC)",
            inputs.summary() if inputs else "",
            headline,
            markdown_table(
                ("area", "kpi", "this month", "previous month", "change"), kpi_rows, "_no rows_"
            ),
            "![Revenue and signups per day]({chart:revenue_signups})",
            "![Activity per day]({chart:activity})",
            "## Games by type",
            markdown_table(
                ("game_type", "games_played", "players", "top_score"), by_game, "_no rows_"
            ),
        )
        if part
    )
    metrics = {
        "month": start.strftime("%Y-%m"),
        "this_month": current,
        "previous_month": previous,
        "days_recomputed": sorted(d.isoformat() for d in computed | previous_computed),
    }
    if inputs:
        metrics.update(inputs_complete=inputs.complete, inputs=inputs.as_json())
    return Report(
        "monthly_executive_summary",
        month_start.isoformat(),
        template,
        monthly_charts(series),
        metrics,
    )


def _monthly_headline(metrics: dict) -> dict:
    this_month = metrics["this_month"]
    return {
        "signups": this_month["users"]["signups"],
        "revenue_cents": this_month["revenue"]["revenue_cents"],
    }


MONTHLY_REPORT = ReportKind(
    MONTHLY_INPUTS, monthly_input_days, build_monthly_report, _monthly_headline
)


monthly_executive_summary = report_asset(
    "monthly_executive_summary",
    MONTHLY_PARTITIONS,
    "executive",
    MONTHLY_REPORT,
    reads=(
        "users",
        "payments",
        "stream_events",
        "learning_events",
        "enrollments",
        "leaderboard_entries",
    ),
    description="KPIs of the month (users, revenue, engagement, learning, games), month over "
    "month, as Markdown with charts; stored in analytics_reports and the object store under "
    "reports/. Materialized once every daily student analytics partition of the month and the "
    "month before is.",
)
