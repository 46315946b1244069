"""Analytics assets: exact figures on a hand-built fixture, reports with a stored chart,
idempotent re-runs, and the schedule ticks asking for the right partitions."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import insert, select, text

from ops_platform.assets.analytics.daily import (
    build_course_analytics,
    build_student_analytics,
    daily_course_analytics,
    daily_student_analytics,
)
from ops_platform.assets.analytics.hourly import count_failed_runs, hourly_platform_metrics
from ops_platform.assets.analytics.monthly import build_monthly_report, monthly_executive_summary
from ops_platform.assets.analytics.weekly import build_weekly_report, weekly_trend_report
from ops_platform.db import schema
from ops_platform.db.engine import state_table
from ops_platform.resources.database import Database
from ops_platform.resources.object_store import LocalObjectStore
from ops_platform.schedules.build import build_schedules
from ops_platform.settings import load_settings

UTC = UTC
D = date(2026, 11, 18)  # a Wednesday; its week starts Sunday 2026-11-15
WEEK = "2026-11-15"


def insert_each(connection, table, rows):
    """Rows with different columns: one INSERT each (defaults apply to what is left out)."""
    for row in rows:
        connection.execute(insert(table).values(**row))


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def learning(engine):
    def ev(user, course, kind, when, score=None):
        return {
            "user_id": user,
            "course_id": course,
            "kind": kind,
            "score": score,
            "created_at": when,
        }

    with engine.begin() as connection:
        connection.execute(
            insert(schema.courses),
            [{"id": 1, "title": "Python"}, {"id": 2, "title": "SQL"}, {"id": 3, "title": "Unused"}],
        )
        connection.execute(
            insert(schema.enrollments),
            [
                {
                    "id": 1,
                    "course_id": 1,
                    "user_id": 1,
                    "enrolled_at": at(1),
                    "completed_at": at(18, 10),
                },
                {
                    "id": 2,
                    "course_id": 1,
                    "user_id": 2,
                    "enrolled_at": at(18, 9),
                    "completed_at": None,
                },
                {
                    "id": 3,
                    "course_id": 1,
                    "user_id": 3,
                    "enrolled_at": at(10),
                    "completed_at": at(12),
                },
                {
                    "id": 4,
                    "course_id": 2,
                    "user_id": 1,
                    "enrolled_at": at(19),
                    "completed_at": None,
                },
                {
                    "id": 5,
                    "course_id": 2,
                    "user_id": 4,
                    "enrolled_at": at(1, month=10),
                    "completed_at": None,
                },
            ],
        )
        connection.execute(
            insert(schema.learning_events),
            [
                # the day D
                ev(1, 1, "lesson_completed", at(18, 10)),
                ev(1, 1, "lesson_completed", at(18, 11)),
                ev(1, 1, "quiz_completed", at(18, 12), 80.0),
                ev(2, 1, "lesson_completed", at(18, 23, 59, 59)),
                ev(2, 1, "quiz_completed", at(18, 13), 90.0),
                ev(4, 2, "quiz_completed", at(18, 14), 70.0),
                ev(4, 2, "video_watched", at(18, 15)),
                ev(5, None, "lesson_completed", at(18, 16)),
                # the rest of the week (2026-11-15 .. 21)
                ev(1, 1, "lesson_completed", at(19, 0)),  # midnight: the next day
                ev(3, 1, "lesson_completed", at(17, 23, 59, 59)),  # the day before D
                ev(1, 2, "lesson_completed", at(16)),
                # the previous week (2026-11-08 .. 14)
                ev(3, 1, "lesson_completed", at(10)),
                ev(1, 1, "lesson_completed", at(10, 13)),
            ],
        )
    return engine


@pytest.fixture
def object_store(tmp_path):
    return LocalObjectStore(root=str(tmp_path / "objects"))


def materialize(asset, database, partition, object_store=None):
    resources = {"database": database}
    if object_store is not None:
        resources["object_store"] = object_store
    result = dg.materialize([asset], partition_key=partition, resources=resources)
    assert result.success
    return result.asset_materializations_for_node(asset.key.path[-1])[0].metadata


def rows(engine, table, order_by):
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(table).order_by(*order_by)).mappings()]


def test_daily_course_analytics_exact(learning, database):
    metadata = materialize(daily_course_analytics, database, D.isoformat())
    assert metadata["rows_written"].value == 2
    got = [
        {k: v for k, v in r.items() if k != "computed_at"}
        for r in rows(learning, schema.daily_course_analytics, ["course_id"])
    ]
    assert got == [
        {
            "day": D,
            "course_id": 1,
            "active_students": 2,
            "lessons_completed": 3,
            "enrollments": 1,
            "completions": 1,
            "completion_rate": pytest.approx(2 / 3),
            "avg_quiz_score": pytest.approx(85.0),
        },
        {
            "day": D,
            "course_id": 2,
            "active_students": 1,
            "lessons_completed": 0,
            "enrollments": 0,
            "completions": 0,
            "completion_rate": 0.0,
            "avg_quiz_score": pytest.approx(70.0),
        },
    ]


def test_daily_student_analytics_exact(learning, database):
    materialize(daily_student_analytics, database, D.isoformat())
    got = [
        (
            r["user_id"],
            r["courses_active"],
            r["lessons_completed"],
            r["quizzes_taken"],
            r["avg_quiz_score"],
        )
        for r in rows(learning, schema.daily_student_analytics, ["user_id"])
    ]
    assert got == [(1, 1, 2, 1, 80.0), (2, 1, 1, 1, 90.0), (4, 1, 0, 1, 70.0), (5, 0, 1, 0, None)]


def test_daily_rerun_replaces_the_day(learning, database):
    materialize(daily_course_analytics, database, D.isoformat())
    materialize(daily_student_analytics, database, D.isoformat())
    with learning.begin() as connection:
        connection.execute(
            insert(schema.learning_events).values(
                user_id=2, course_id=1, kind="lesson_completed", created_at=at(18, 20)
            )
        )
    materialize(daily_course_analytics, database, D.isoformat())
    materialize(daily_student_analytics, database, D.isoformat())
    courses = rows(learning, schema.daily_course_analytics, ["course_id"])
    students = rows(learning, schema.daily_student_analytics, ["user_id"])
    assert [(r["course_id"], r["lessons_completed"]) for r in courses] == [(1, 4), (2, 0)]
    assert [(r["user_id"], r["lessons_completed"]) for r in students] == [
        (1, 2),
        (2, 2),
        (4, 0),
        (5, 1),
    ]


EXPECTED_THIS_WEEK = {
    "active_students": 5,
    "student_days": 7,
    "lessons_completed": 6,
    "quizzes_taken": 3,
    "avg_quiz_score": 80.0,
    "new_enrollments": 2,
    "completions": 1,
    "active_courses": 2,
}
EXPECTED_LAST_WEEK = {
    "active_students": 2,
    "student_days": 2,
    "lessons_completed": 2,
    "quizzes_taken": 0,
    "avg_quiz_score": None,
    "new_enrollments": 1,
    "completions": 1,
    "active_courses": 1,
}


def test_weekly_report_exact_from_source_when_no_daily_rows(learning):
    report = build_weekly_report(learning, date(2026, 11, 15))
    assert report.metrics["this_week"] == EXPECTED_THIS_WEEK
    assert report.metrics["previous_week"] == EXPECTED_LAST_WEEK
    assert report.metrics["change_percent"]["lessons_completed"] == 200.0
    assert report.metrics["change_percent"]["active_students"] == 150.0
    assert len(report.metrics["days_recomputed"]) == 14


def test_weekly_report_reads_the_daily_tables(learning):
    now = datetime.now(UTC)
    for day in [date(2026, 11, 8) + timedelta(days=i) for i in range(14)]:
        build_course_analytics(learning, day, now)  # what the daily assets run
        build_student_analytics(learning, day, now)
    full = build_weekly_report(learning, date(2026, 11, 15))
    assert full.metrics["this_week"] == EXPECTED_THIS_WEEK
    assert full.metrics["previous_week"] == EXPECTED_LAST_WEEK
    # Days without activity have no rows, so they are (cheaply) recomputed; active days are read.
    assert "2026-11-18" not in full.metrics["days_recomputed"]
    with learning.begin() as connection:
        connection.execute(
            text(
                f"UPDATE {state_table(learning, 'daily_course_analytics')} SET lessons_completed = 100 WHERE course_id = 1"
                " AND day = :d"
            ),
            {"d": D},
        )
    assert (
        build_weekly_report(learning, date(2026, 11, 15)).metrics["this_week"]["lessons_completed"]
        == 103
    )


def test_weekly_report_stored_with_chart_and_idempotent(learning, database, object_store):
    materialize(
        daily_course_analytics, database, D.isoformat()
    )  # one day stored, the rest from SQL
    metadata = materialize(weekly_trend_report, database, WEEK, object_store)
    markdown = metadata["report"].value
    assert "![" in markdown and "data:image/png;base64," in markdown
    assert "| lessons_completed | 6 | 2 | ▲ +200.0% |" in markdown
    png = object_store.get_bytes(f"reports/weekly_trend_report/{WEEK}-daily_activity.png")
    assert png.startswith(b"\x89PNG")
    assert object_store.exists(f"reports/weekly_trend_report/{WEEK}.md")
    [stored] = rows(learning, schema.analytics_reports, ["kind"])
    assert stored["kind"] == "weekly_trend_report" and stored["period_key"] == WEEK
    assert stored["chart_key"] == f"reports/weekly_trend_report/{WEEK}-daily_activity.png"
    assert object_store.uri(stored["chart_key"]) in stored["markdown"]
    assert stored["metrics"]["this_week"]["lessons_completed"] == 6

    materialize(weekly_trend_report, database, WEEK, object_store)
    assert len(rows(learning, schema.analytics_reports, ["kind"])) == 1


@pytest.fixture
def platform_month(learning):
    """November 2026 (and a little of October) across users, payments, streams, games."""
    with learning.begin() as connection:
        insert_each(
            connection,
            schema.users,
            [
                {"id": 1, "email": "a@x", "created_at": at(5, month=10)},
                {"id": 2, "email": "b@x", "created_at": at(3), "email_verified_at": at(3, 13)},
                {"id": 3, "email": "c@x", "created_at": at(18)},
                {
                    "id": 4,
                    "email": "d@x",
                    "created_at": at(30, 23, 59, 59),
                    "og_level": 1,
                    "og_expires_at": at(5, month=12),
                },
                {"id": 5, "email": "e@x", "created_at": at(1, 0, month=12)},
            ],
        )
        insert_each(
            connection,
            schema.payments,
            [
                {
                    "provider_ref": "p1",
                    "user_id": 2,
                    "amount_cents": 1000,
                    "status": "succeeded",
                    "created_at": at(3),
                    "settled_at": at(3, 13),
                },
                {
                    "provider_ref": "p2",
                    "user_id": 3,
                    "amount_cents": 2500,
                    "status": "succeeded",
                    "created_at": at(30, 23),
                    "settled_at": at(1, 0, 0, 1, month=12),
                },  # settles in December
                {
                    "provider_ref": "p3",
                    "user_id": 3,
                    "amount_cents": 700,
                    "status": "failed",
                    "created_at": at(20),
                    "settled_at": at(20, 12, 5),
                },
                {
                    "provider_ref": "p4",
                    "user_id": 1,
                    "amount_cents": 400,
                    "status": "succeeded",
                    "created_at": at(20, month=10),
                    "settled_at": at(20, month=10),
                },
                {
                    "provider_ref": "p5",
                    "user_id": 1,
                    "amount_cents": 999,
                    "status": "pending",
                    "created_at": at(21),
                },
            ],
        )
        insert_each(
            connection,
            schema.stream_events,
            [
                {"stream_id": 1, "user_id": 1, "kind": "view", "value": 1, "created_at": at(2)},
                {"stream_id": 1, "user_id": 2, "kind": "gift", "value": 50, "created_at": at(2)},
                {"stream_id": 2, "user_id": 2, "kind": "chat", "value": 1, "created_at": at(9)},
                {
                    "stream_id": 2,
                    "user_id": 3,
                    "kind": "view",
                    "value": 1,
                    "created_at": at(31, month=10),
                },
            ],
        )
        insert_each(
            connection,
            schema.leaderboard_entries,
            [
                {"game_type": "snake", "player_address": "0xa", "score": 120, "created_at": at(4)},
                {"game_type": "snake", "player_address": "0xb", "score": 300, "created_at": at(5)},
                {"game_type": "tetris", "player_address": "0xa", "score": 900, "created_at": at(6)},
                {
                    "game_type": "tetris",
                    "player_address": "0xc",
                    "score": 5000,
                    "created_at": at(6, month=10),
                },
            ],
        )
    return learning


def test_monthly_kpis_exact(platform_month):
    report = build_monthly_report(platform_month, date(2026, 11, 1))
    kpis = report.metrics["this_month"]
    assert kpis["users"] == {"signups": 3, "total_users": 4, "verified": 1, "og_active_at_end": 1}
    assert kpis["revenue"] == {
        "payments_succeeded": 1,
        "payments_failed": 1,
        "revenue_cents": 1000,
        "paying_users": 1,
    }
    assert kpis["engagement"] == {
        "stream_events": 3,
        "engaged_users": 2,
        "views": 1,
        "chats": 1,
        "gifts": 1,
        "gift_value": 50.0,
        "streams_with_activity": 2,
    }
    assert kpis["learning"] == {
        "learning_events": 13,
        "learners": 5,
        "lessons_completed": 9,
        "quizzes_taken": 3,
        "avg_quiz_score": 80.0,
        "new_enrollments": 4,
        "completions": 2,
    }
    assert kpis["games"] == {"games_played": 3, "players": 2, "top_score": 900}
    previous = report.metrics["previous_month"]
    assert previous["revenue"]["revenue_cents"] == 400 and previous["games"]["top_score"] == 5000
    assert set(report.charts) == {"revenue_signups", "activity"}
    assert "| revenue | revenue_cents | 1,000 | 400 | ▲ +150.0% |" in report.template


def test_monthly_summary_stored_with_charts_and_idempotent(platform_month, database, object_store):
    # October 2026: the latest complete month (its KPIs compare with September).
    metadata = materialize(monthly_executive_summary, database, "2026-10-01", object_store)
    assert metadata["revenue_cents"].value == 400 and metadata["signups"].value == 1
    markdown = metadata["report"].value
    assert markdown.count("data:image/png;base64,") == 2
    for chart in ("revenue_signups", "activity"):
        assert object_store.get_bytes(
            f"reports/monthly_executive_summary/2026-10-01-{chart}.png"
        ).startswith(b"\x89PNG")
    assert object_store.exists("reports/monthly_executive_summary/2026-10-01.md")
    materialize(monthly_executive_summary, database, "2026-10-01", object_store)
    [stored] = rows(platform_month, schema.analytics_reports, ["kind"])
    assert (stored["kind"], stored["period_key"]) == ("monthly_executive_summary", "2026-10-01")
    assert stored["metrics"]["this_month"]["games"]["top_score"] == 5000
    assert object_store.uri(stored["chart_key"]) in stored["markdown"]


HOUR = datetime(2026, 11, 18, 10, tzinfo=UTC)


@pytest.fixture
def platform_hour(engine):
    h = lambda minute, hour=10: HOUR.replace(hour=hour, minute=minute)  # noqa: E731
    with engine.begin() as connection:
        insert_each(
            connection,
            schema.users,
            [
                {"email": "in1", "created_at": h(0)},
                {"email": "in2", "created_at": h(59).replace(second=59)},
                {"email": "out1", "created_at": h(0, 11)},
                {"email": "out2", "created_at": h(59, 9)},
            ],
        )
        insert_each(
            connection,
            schema.sessions,
            [
                {"user_id": 1, "created_at": h(0, 9), "expires_at": h(0, 12)},  # active
                {"user_id": 1, "kind": "player", "created_at": h(30), "expires_at": None},  # active
                {"user_id": 1, "created_at": h(0, 9), "expires_at": h(30)},  # expired in the hour
                {"user_id": 1, "created_at": h(0, 9), "expires_at": h(0, 12), "revoked_at": h(15)},
                {"user_id": 1, "created_at": h(30, 11), "expires_at": h(0, 13)},  # after the hour
                {
                    "user_id": 1,
                    "created_at": h(0, 8),
                    "expires_at": h(0, 11),
                },  # until the end: active
            ],
        )
        insert_each(
            connection,
            schema.payments,
            [
                {
                    "provider_ref": "a",
                    "amount_cents": 1000,
                    "status": "succeeded",
                    "created_at": h(0),
                    "settled_at": h(5),
                },
                {
                    "provider_ref": "b",
                    "amount_cents": 2500,
                    "status": "succeeded",
                    "created_at": h(0),
                    "settled_at": h(55),
                },
                {
                    "provider_ref": "c",
                    "amount_cents": 4000,
                    "status": "succeeded",
                    "created_at": h(0),
                    "settled_at": h(5, 11),
                },
                {
                    "provider_ref": "d",
                    "amount_cents": 100,
                    "status": "failed",
                    "created_at": h(0, 9),
                    "last_checked_at": h(20),
                },
                {
                    "provider_ref": "e",
                    "amount_cents": 100,
                    "status": "pending",
                    "created_at": h(10),
                },
                {
                    "provider_ref": "f",
                    "amount_cents": 100,
                    "status": "failed",
                    "created_at": h(0, 9),
                    "settled_at": h(0, 9),
                },
            ],
        )
        insert_each(
            connection,
            schema.notification_email_queue,
            [
                {"status": "pending", "scheduled_for": h(0, 9)},
                {"status": "sent", "scheduled_for": h(0, 9), "sent_at": h(30, 11)},
                {"status": "sent", "scheduled_for": h(0, 9), "sent_at": h(30)},
                {"status": "pending", "scheduled_for": h(0, 12)},
                {"status": "dead", "scheduled_for": h(0, 9)},
                {"status": "failed", "scheduled_for": h(0)},
            ],
        )
        insert_each(
            connection,
            schema.realtime_events,
            [
                {"channel": "c", "event": "e", "created_at": h(0)},
                {"channel": "c", "event": "e", "created_at": h(0, 9), "published_at": h(10, 11)},
                {"channel": "c", "event": "e", "created_at": h(0, 9), "published_at": h(10)},
                {"channel": "c", "event": "e", "created_at": h(10, 11)},
            ],
        )
    return engine


def test_hourly_metrics_exact_and_idempotent(platform_hour, database):
    metadata = materialize(hourly_platform_metrics, database, "2026-11-18-10:00")
    assert metadata["signups"].value == 2
    for _ in range(2):
        [row] = rows(platform_hour, schema.hourly_platform_metrics, ["hour"])
        assert {k: v for k, v in row.items() if k not in ("hour", "computed_at")} == {
            "signups": 2,
            "active_sessions": 3,
            "payments_succeeded": 2,
            "payments_failed": 1,
            "revenue_cents": 3500,
            "email_queue_depth": 3,
            "realtime_outbox_depth": 2,
            "job_failures": 0,
        }
        materialize(hourly_platform_metrics, database, "2026-11-18-10:00")


def test_failed_runs_are_counted_in_their_hour():
    @dg.op
    def boom():
        raise RuntimeError("fails on purpose")

    @dg.job
    def failing():
        boom()

    with dg.instance_for_test() as instance:
        assert not failing.execute_in_process(instance=instance, raise_on_error=False).success
        now = datetime.now(UTC)
        assert (
            count_failed_runs(instance, now - timedelta(hours=1), now + timedelta(minutes=1)) == 1
        )
        assert count_failed_runs(instance, now - timedelta(hours=3), now - timedelta(hours=2)) == 0


@pytest.mark.parametrize(
    "asset_name, tick, expected",
    [
        ("daily_course_analytics", datetime(2026, 11, 23, 0, 0, tzinfo=UTC), "2026-11-22"),
        ("daily_student_analytics", datetime(2026, 3, 29, 0, 0, tzinfo=UTC), "2026-03-28"),
        ("hourly_platform_metrics", datetime(2026, 11, 23, 5, 0, tzinfo=UTC), "2026-11-23-04:00"),
    ],
)
def test_schedule_ticks_ask_for_the_period_just_ended(asset_name, tick, expected):
    assets = [
        daily_course_analytics,
        daily_student_analytics,
        weekly_trend_report,
        monthly_executive_summary,
        hourly_platform_metrics,
    ]
    by_name = {a.key.path[-1]: a for a in assets}
    jobs, schedules = build_schedules({}, by_name, load_settings({}))
    defs = dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        resources={
            "database": Database(url="sqlite://"),
            "object_store": LocalObjectStore(root="/tmp/unused"),
        },
    )
    repository = defs.get_repository_def()
    [schedule] = [s for s in repository.schedule_defs if s.job_name == f"{asset_name}_job"]
    context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=repository)
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == expected
