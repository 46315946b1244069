"""Malformed app rows under the analytics assets, the prize pools and the leaderboards: every
run succeeds, skips them (the figures are those of the good rows alone), leaves them as they
were, reports them by kind in `bad_rows`, and the WARN check fails without failing the run.
SQLite and Postgres."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import insert, select, text

from ops_platform.assets import analytics, games
from ops_platform.assets.analytics.daily import daily_course_analytics, daily_student_analytics
from ops_platform.assets.analytics.hourly import hourly_platform_metrics
from ops_platform.assets.analytics.monthly import monthly_executive_summary
from ops_platform.assets.analytics.weekly import weekly_trend_report
from ops_platform.assets.games import daily_prize_pools, leaderboards, weekly_prize_pools
from ops_platform.db import schema
from ops_platform.db.bad_rows import count_bad_rows
from ops_platform.db.engine import is_postgres, state_table, utcnow
from ops_platform.resources.object_store import LocalObjectStore

DAY = date(2026, 11, 18)  # a Wednesday: its analytics week starts Sunday 2026-11-15
HOUR = datetime(2026, 11, 18, 10, tzinfo=UTC)
RECENT = utcnow().replace(microsecond=0) - timedelta(minutes=5)  # on today's boards


def at(minute: int = 0, hour: int = 10) -> datetime:
    return HOUR.replace(hour=hour, minute=minute)


def _good_and_bad_rows(engine) -> list[tuple[str, list[dict]]]:
    """(table, rows): good rows whose figures the tests know, and one malformed row of each
    kind the assets skip, all inside the day, hour, week and month they materialize."""
    return [
        ("courses", [{"id": 1, "title": "Python"}]),
        (
            "enrollments",
            [
                dict(id=1, course_id=1, user_id=1, enrolled_at=at(0), completed_at=at(30)),
                # completed before it began: malformed
                dict(id=2, course_id=1, user_id=2, enrolled_at=at(30), completed_at=at(10)),
            ],
        ),
        (
            "learning_events",
            [
                dict(
                    id=1,
                    user_id=1,
                    course_id=1,
                    kind="quiz_completed",
                    score=80.0,
                    created_at=at(1),
                ),
                dict(id=2, user_id=1, course_id=1, kind="lesson_completed", created_at=at(2)),
                dict(
                    id=3,
                    user_id=2,
                    course_id=1,
                    kind="quiz_completed",
                    score=-40.0,
                    created_at=at(3),
                ),
                dict(
                    id=4, user_id=3, course_id=1, kind="quiz_completed", score=1e9, created_at=at(4)
                ),
            ],
        ),
        (
            "payments",
            [
                dict(
                    id=id,
                    provider_ref=provider_ref,
                    amount_cents=amount_cents,
                    status="succeeded",
                    created_at=at(0),
                    settled_at=at(settled_day),
                )
                for id, provider_ref, amount_cents, settled_day in (
                    (1, "ok", 1000, 5),
                    (2, "neg", -500, 6),
                    (3, "huge", 10**13, 7),
                )
            ],
        ),
        (
            "notification_email_queue",
            [
                dict(id=1, user_id=1, status="pending", scheduled_for=at(0, 9), attempts=0),
                dict(id=2, user_id=1, status="pending", scheduled_for=at(0, 9), attempts=-3),
            ],
        ),
        (
            "realtime_events",
            [
                dict(id=1, channel="c", event="e", created_at=at(0)),
                dict(id=2, channel="c", event="e", created_at=at(1)),
            ],
        ),
        (
            "stream_events",
            [
                dict(id=1, stream_id=1, user_id=1, kind="gift", value=5, created_at=at(1)),
                dict(id=2, stream_id=1, user_id=2, kind="gift", value=-7, created_at=at(2)),
                dict(id=3, stream_id=1, user_id=3, kind="gift", value=10**10, created_at=at(3)),
            ],
        ),
        (
            "leaderboard_entries",
            [
                dict(id=1, game_type="snake", player_address="good", score=50, created_at=at(1)),
                dict(id=2, game_type="snake", player_address="neg", score=-1, created_at=at(2)),
                dict(
                    id=3, game_type="snake", player_address="huge", score=10**16, created_at=at(3)
                ),
                dict(id=4, game_type="pong", player_address="good", score=7, created_at=RECENT),
                dict(id=5, game_type="pong", player_address="neg", score=-9, created_at=RECENT),
                dict(
                    id=6, game_type="pong", player_address="huge", score=10**17, created_at=RECENT
                ),
            ],
        ),
    ]


BAD_ROWS = {
    "enrollments.completed_before_enrolled": 1,
    "learning_events.negative_score": 1,
    "learning_events.absurd_score": 1,
    "payments.negative_amount_cents": 1,
    "payments.absurd_amount_cents": 1,
    "notification_email_queue.negative_attempts": 1,
    "stream_events.negative_value": 1,
    "stream_events.absurd_value": 1,
    "leaderboard_entries.negative_score": 2,
    "leaderboard_entries.absurd_score": 2,
}


@pytest.fixture
def malformed(engine):
    with engine.begin() as connection:
        for table, rows in _good_and_bad_rows(engine):
            for row in rows:  # rows with different columns: one INSERT each
                connection.execute(insert(schema.metadata.tables[table]).values(**row))
        # Written as the app would: text straight into the JSON column. A Postgres json
        # column cannot hold text that is not JSON.
        if not is_postgres(engine):
            connection.execute(text("UPDATE realtime_events SET payload = '{broken' WHERE id = 2"))
    return engine


def _expected(engine) -> dict:
    if is_postgres(engine):
        return BAD_ROWS
    return BAD_ROWS | {"realtime_events.payload_not_json": 1}


def _snapshot(engine) -> dict:
    with engine.connect() as connection:
        return {
            # Raw rows: a broken JSON value must not be parsed by the snapshot itself.
            table: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {table}"))))
            for table, _ in _good_and_bad_rows(engine)
        }


def _run(asset, checks, database, partition, **resources):
    """Materialize `asset` (a partition) with its checks; the materialization's metadata and
    the evaluation of its `no_malformed_app_rows` check."""
    mine = [check for check in checks if asset.key in {k.asset_key for k in check.check_keys}]
    result = dg.materialize(
        [asset, *mine],
        partition_key=partition,
        resources={"database": database, **resources},
        raise_on_error=False,
    )
    assert result.success, "malformed rows must never fail a run"
    [materialization] = result.asset_materializations_for_node(asset.key.path[-1])
    [warning] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_malformed_app_rows"
    ]
    return {key: value.value for key, value in materialization.metadata.items()}, warning


def _kinds(engine, tables) -> dict:
    return {k: n for k, n in _expected(engine).items() if k.split(".")[0] in tables}


ANALYTICS = [
    (daily_course_analytics, DAY.isoformat(), ("learning_events", "enrollments")),
    (daily_student_analytics, DAY.isoformat(), ("learning_events",)),
    (
        hourly_platform_metrics,
        "2026-11-18-10:00",
        ("payments", "notification_email_queue", "realtime_events"),
    ),
    (weekly_trend_report, "2026-11-15", ("learning_events", "enrollments")),
    (
        monthly_executive_summary,
        "2026-11-01",
        ("payments", "stream_events", "learning_events", "enrollments", "leaderboard_entries"),
    ),
]


@pytest.mark.parametrize(
    ("asset", "partition", "tables"), ANALYTICS, ids=[a.key.path[-1] for a, _, _ in ANALYTICS]
)
def test_analytics_skip_count_and_leave_malformed_rows(
    malformed, database, tmp_path, asset, partition, tables
):
    before = _snapshot(malformed)
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    metadata, warning = _run(
        asset, analytics.defs.asset_checks, database, partition, object_store=store
    )
    expected = _kinds(malformed, tables)
    assert metadata["bad_rows"] == expected
    assert metadata["bad_rows_total"] == sum(expected.values())
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["bad_rows_total"].value == sum(expected.values())
    assert _snapshot(malformed) == before


def _day_row(engine, table):
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(table)).mappings()]


def test_daily_figures_are_those_of_the_good_rows(malformed, database):
    _run(daily_course_analytics, analytics.defs.asset_checks, database, DAY.isoformat())
    _run(daily_student_analytics, analytics.defs.asset_checks, database, DAY.isoformat())
    [course] = _day_row(malformed, schema.daily_course_analytics)
    # Only user 1's events count: the negative and the absurd quiz score are skipped.
    assert (course["active_students"], course["avg_quiz_score"]) == (1, 80.0)
    # The enrollment completed before it began is skipped: one enrollment, one completion.
    assert (course["enrollments"], course["completions"], course["completion_rate"]) == (1, 1, 1.0)
    students = _day_row(malformed, schema.daily_student_analytics)
    assert [(s["user_id"], s["quizzes_taken"], s["avg_quiz_score"]) for s in students] == [
        (1, 1, 80.0)
    ]


def test_hourly_figures_are_those_of_the_good_rows(malformed, database):
    metadata, _ = _run(
        hourly_platform_metrics, analytics.defs.asset_checks, database, "2026-11-18-10:00"
    )
    assert (metadata["payments_succeeded"], metadata["revenue_cents"]) == (1, 1000)
    assert metadata["email_queue_depth"] == 1
    assert metadata["realtime_outbox_depth"] == (2 if is_postgres(malformed) else 1)


def test_monthly_figures_are_those_of_the_good_rows(malformed, database, tmp_path):
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    _run(
        monthly_executive_summary,
        analytics.defs.asset_checks,
        database,
        "2026-11-01",
        object_store=store,
    )
    with malformed.connect() as connection:
        metrics = connection.execute(
            select(schema.analytics_reports.c.metrics).where(
                schema.analytics_reports.c.kind == "monthly_executive_summary"
            )
        ).scalar_one()
    month = metrics["this_month"]
    assert month["revenue"]["revenue_cents"] == 1000
    assert (month["engagement"]["gifts"], month["engagement"]["gift_value"]) == (1, 5.0)
    assert (month["games"]["games_played"], month["games"]["top_score"]) == (1, 50)
    assert month["learning"]["avg_quiz_score"] == 80.0


def test_a_malformed_score_never_wins_a_prize_pool(malformed, database):
    before = _snapshot(malformed)
    metadata, warning = _run(
        daily_prize_pools, games.defs.asset_checks, database, f"{DAY.isoformat()}|snake"
    )
    assert (metadata["status"], metadata["winner_address"], metadata["winning_score"]) == (
        "finalized",
        "good",
        50,
    )
    assert metadata["entries_in_period"] == 1
    expected = _kinds(malformed, ("leaderboard_entries",))
    assert metadata["bad_rows"] == expected
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert _snapshot(malformed) == before


def test_weekly_pools_report_malformed_entries(malformed, database):
    metadata, warning = _run(
        weekly_prize_pools, games.defs.asset_checks, database, "2026-11-16|snake"
    )
    assert metadata["winner_address"] == "good"
    assert metadata["bad_rows_total"] == 4 and not warning.passed


def test_leaderboards_rank_no_malformed_score(malformed, database):
    before = _snapshot(malformed)
    result = dg.materialize([leaderboards], resources={"database": database})
    assert result.success
    [materialization] = result.asset_materializations_for_node("leaderboards")
    assert materialization.metadata["bad_rows"].value == _kinds(malformed, ("leaderboard_entries",))
    with malformed.connect() as connection:
        standings = connection.execute(
            text(
                "SELECT game_type, period, player_address, score FROM "
                f"{state_table(connection, 'leaderboard_standings')} ORDER BY game_type, period"
            )
        ).all()
    assert {(g, p, player, score) for g, p, player, score in standings} == {
        ("pong", "daily", "good", 7),
        ("pong", "weekly", "good", 7),
        ("pong", "alltime", "good", 7),
        ("snake", "alltime", "good", 50),
    }
    assert _snapshot(malformed) == before


def test_the_counts_are_those_of_the_shared_rules(malformed):
    assert count_bad_rows(malformed, {t for t, _ in _good_and_bad_rows(malformed)}) == _expected(
        malformed
    )


def test_a_pool_with_a_malformed_amount_stays_open_and_is_counted(malformed, database):
    pools = schema.metadata.tables["prize_pools"]
    with malformed.begin() as connection:
        connection.execute(
            insert(pools).values(
                game_type="pong", period="daily", period_start=DAY, total_amount=-5, status="open"
            )
        )
    before = _snapshot(malformed)
    metadata, warning = _run(
        daily_prize_pools, games.defs.asset_checks, database, f"{DAY.isoformat()}|pong"
    )
    assert metadata["status"] == "open"
    assert metadata["bad_rows"]["prize_pools.negative_total_amount"] == 1
    assert not warning.passed
    with malformed.connect() as connection:
        row = connection.execute(
            select(pools.c.status, pools.c.winner_address, pools.c.finalized_at)
        ).one()
    assert tuple(row) == ("open", None, None)
    assert _snapshot(malformed) == before
