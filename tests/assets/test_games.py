"""leaderboards and the prize pools: exact standings and winners (ties to the earliest
score), no_winner, finalized pools never change, failures isolated, backfills over a month
(one ranged run, as the CLI and single-run backfills do) and the schedule ticks."""

import os
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from sqlalchemy import insert, select, text

from ops_platform.assets import games
from ops_platform.assets.games import (
    compute_standings,
    daily_prize_pools,
    every_board_readable,
    leaderboard_ranks_dense,
    leaderboards,
    pool_assets,
    weekly_prize_pools,
)
from ops_platform.db import schema
from ops_platform.db.engine import as_utc, state_table, utcnow
from ops_platform.db.schema import GAME_TYPES
from tests.assets.check_helpers import check_results, run_checks_only
from tests.platform_env import run_dagster

UTC = UTC
H = timedelta(hours=1)
D = timedelta(days=1)
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday; the week began Monday 2026-03-02


def _entries(engine, rows):
    """rows: (game_type, player, score, created_at)"""
    with engine.begin() as connection:
        connection.execute(
            insert(schema.leaderboard_entries),
            [
                {
                    "session_id": None,
                    "game_type": g,
                    "player_address": p,
                    "score": s,
                    "created_at": t,
                }
                for g, p, s, t in rows
            ],
        )


def _leaderboard_fixture(engine, now):
    _entries(
        engine,
        [
            ("snake", "alice", 100, now - H),  # today, after bob's equal score
            ("snake", "alice", 120, now - 3 * D),  # Sunday: before this week
            ("snake", "bob", 100, now - 2 * H),  # today, first to reach 100
            ("snake", "carol", 90, now - D),  # yesterday, this week
            ("snake", "carol", 20, now - 2 * H),  # today, worse than her best
            ("snake", "dave", 200, now - 30 * D),  # all time only
            ("snake", "eve", 500, now + H),  # in the future: not yet
            ("tetris", "frank", 10, now - H),
            ("chess", "gus", 999, now - H),  # not an arcade game type: ignored
        ],
    )


EXPECTED_BOARDS = {
    ("snake", "daily"): [("bob", 100), ("alice", 100), ("carol", 20)],
    ("snake", "weekly"): [("bob", 100), ("alice", 100), ("carol", 90)],
    ("snake", "alltime"): [("dave", 200), ("alice", 120), ("bob", 100), ("carol", 90)],
    ("tetris", "daily"): [("frank", 10)],
    ("tetris", "weekly"): [("frank", 10)],
    ("tetris", "alltime"): [("frank", 10)],
}


def _boards(engine):
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT game_type, period, rank, player_address, score, period_start "
                f"FROM {state_table(engine, 'leaderboard_standings')} ORDER BY game_type, period, rank"
            )
        ).all()
    boards: dict = {}
    for game, period, rank, player, score, _ in rows:
        boards.setdefault((game, period), []).append((player, score))
        assert rank == len(boards[(game, period)])
    return boards, rows


def test_compute_standings_exact(engine):
    _leaderboard_fixture(engine, NOW)
    with engine.begin() as connection:
        result = compute_standings(connection, NOW, top_n=100)
    boards, rows = _boards(engine)
    assert boards == EXPECTED_BOARDS
    assert result.rows == result.inserted == sum(len(v) for v in EXPECTED_BOARDS.values())
    starts = {(g, p): str(start) if start is not None else None for g, p, _, _, _, start in rows}
    assert starts[("snake", "daily")] == "2026-03-04"
    assert starts[("snake", "weekly")] == "2026-03-02"
    assert starts[("snake", "alltime")] is None


def test_compute_standings_keeps_top_n_and_replaces_old_rows(engine):
    _leaderboard_fixture(engine, NOW)
    with engine.begin() as connection:
        compute_standings(connection, NOW, top_n=100)
        compute_standings(connection, NOW, top_n=2)
    boards, _ = _boards(engine)
    assert boards[("snake", "alltime")] == [("dave", 200), ("alice", 120)]
    assert all(len(board) <= 2 for board in boards.values())


def _full_standings(engine, now, top_n=100):
    """The boards recomputed from an empty table, in a transaction rolled back."""
    with engine.connect() as connection, connection.begin() as transaction:
        standings = state_table(engine, "leaderboard_standings")
        connection.execute(text(f"DELETE FROM {standings}"))
        compute_standings(connection, now, top_n=top_n)
        rows = connection.execute(
            text(
                "SELECT game_type, period, rank, player_address, score, period_start "
                f"FROM {standings} ORDER BY game_type, period, rank"
            )
        ).all()
        transaction.rollback()
    return rows


def test_compute_standings_writes_only_changed_places_and_equals_a_full_recompute(engine):
    _leaderboard_fixture(engine, NOW)
    with engine.begin() as connection:
        compute_standings(connection, NOW, top_n=100)
        again = compute_standings(connection, NOW + H / 2, top_n=100)
    assert (again.rows, again.written) == (13, 0)  # nothing new: nothing written
    # eve's 500 (at NOW + H) now counts, and carol scores 300: every snake place moves
    _entries(engine, [("snake", "carol", 300, NOW + H), ("tetris", "zoe", 5, NOW + H)])
    with engine.begin() as connection:
        third = compute_standings(connection, NOW + 2 * H, top_n=100)
    boards, rows = _boards(engine)
    assert boards[("snake", "daily")] == [
        ("eve", 500),
        ("carol", 300),
        ("bob", 100),
        ("alice", 100),
    ]
    assert boards[("snake", "alltime")][:3] == [("eve", 500), ("carol", 300), ("dave", 200)]
    assert boards[("tetris", "daily")] == [("frank", 10), ("zoe", 5)]
    # snake: daily and weekly 3 places changed + 1 new, alltime 4 + 1; tetris: 3 new places
    assert (third.updated, third.inserted, third.deleted) == (10, 6, 0)
    assert rows == _full_standings(engine, NOW + 2 * H)
    # a smaller top N removes the places beyond it
    with engine.begin() as connection:
        smaller = compute_standings(connection, NOW + 2 * H, top_n=1)
    assert (smaller.updated, smaller.inserted, smaller.deleted) == (0, 0, 13)
    assert _boards(engine)[1] == _full_standings(engine, NOW + 2 * H, top_n=1)


def test_leaderboards_asset_metadata_and_checks(engine, database):
    _leaderboard_fixture(engine, utcnow())
    result = dg.materialize(
        [leaderboards, every_board_readable, leaderboard_ranks_dense],
        resources={"database": database},
    )
    assert result.success
    # The asset's clock is the real one: which boards hold today's and this week's scores
    # depends on the weekday and hour, the all-time boards do not.
    boards, rows = _boards(engine)
    assert boards[("snake", "alltime")] == EXPECTED_BOARDS[("snake", "alltime")]
    assert boards[("tetris", "alltime")] == EXPECTED_BOARDS[("tetris", "alltime")]
    [materialization] = result.asset_materializations_for_node("leaderboards")
    assert materialization.metadata["row_count"].value == len(rows)
    assert materialization.metadata["boards"].value == 15
    assert "| snake | alltime | 1 | dave | 200 |" in materialization.metadata["preview"].value
    checks = check_results(result)
    assert checks["every_board_readable"].passed
    assert checks["every_board_readable"].metadata["boards_with_a_leader"].value == len(boards)
    assert checks["leaderboard_ranks_dense"].passed


def test_leaderboard_dense_check_catches_a_gap(engine, database):
    _leaderboard_fixture(engine, utcnow())
    dg.materialize([leaderboards], resources={"database": database})
    with engine.begin() as connection:
        connection.execute(
            text(
                f"DELETE FROM {state_table(engine, 'leaderboard_standings')} WHERE game_type = 'snake' AND period = 'alltime' AND rank = 2"
            )
        )
    checks = run_checks_only(database, leaderboards, every_board_readable, leaderboard_ranks_dense)
    assert not checks["leaderboard_ranks_dense"].passed
    assert checks["leaderboard_ranks_dense"].metadata["boards_not_dense"].value == "snake/alltime"
    assert checks["every_board_readable"].passed


# --- prize pools ------------------------------------------------------------------------
JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


def _pool_fixture(engine):
    _entries(
        engine,
        [
            ("snake", "p1", 500, JAN1 + 10 * H),
            ("snake", "p2", 500, JAN1 + 9 * H),  # same score, earlier: wins
            ("snake", "p3", 400, JAN1 + 8 * H),
            ("snake", "late", 900, JAN1 + D),  # 2026-01-02 00:00: next day
            ("snake", "early", 999, JAN1 - timedelta(seconds=1)),  # 2025-12-31
            ("pong", "p4", 70, JAN1 + 23 * H),
            ("breakout", "p5", 9_999, JAN1 + H),
            ("space_invaders", "p6", 1, JAN1 + timedelta(hours=23, minutes=59, seconds=59)),
            # tetris: no games that day
        ],
    )
    with engine.begin() as connection:
        connection.execute(
            insert(schema.prize_pools),
            [
                {
                    "game_type": "pong",
                    "period": "daily",
                    "period_start": date(2026, 1, 1),
                    "total_amount": 12.5,
                    "status": "open",
                    "winner_address": None,
                    "winning_score": None,
                    "finalized_at": None,
                },
                {
                    "game_type": "breakout",
                    "period": "daily",
                    "period_start": date(2026, 1, 1),
                    "total_amount": 3,
                    "status": "finalized",
                    "winner_address": "earlier-winner",
                    "winning_score": 1,
                    "finalized_at": JAN1 + D + 5 * timedelta(minutes=1),
                },
            ],
        )


def _pools(engine, period="daily"):
    with engine.connect() as connection:
        rows = connection.execute(
            select(schema.prize_pools).where(schema.prize_pools.c.period == period)
        ).all()
    return {(row.game_type, str(row.period_start)): row for row in rows}


EXPECTED_JAN1 = {
    "snake": ("finalized", "p2", 500),
    "tetris": ("no_winner", None, None),
    "pong": ("finalized", "p4", 70),
    "breakout": ("finalized", "earlier-winner", 1),  # was final already: untouched
    "space_invaders": ("finalized", "p6", 1),
}


def _materialize_pool(database, partition_key, instance=None, asset=daily_prize_pools):
    return dg.materialize(
        [asset], resources={"database": database}, partition_key=partition_key, instance=instance
    )


def _materialize_pool_with_checks(database, partition_key, **options):
    """daily_prize_pools and its asset checks only (the other assets' checks stay out)."""
    return dg.materialize(
        [daily_prize_pools, *games.defs.asset_checks],
        resources={"database": database},
        partition_key=partition_key,
        selection=dg.AssetSelection.assets(daily_prize_pools)
        | dg.AssetSelection.checks_for_assets(daily_prize_pools),
        **options,
    )


def test_daily_pools_exact_winners_ties_and_no_winner(engine, database):
    _pool_fixture(engine)
    for game in GAME_TYPES:
        result = _materialize_pool(database, f"2026-01-01|{game}")
        assert result.success
    pools = _pools(engine)
    assert {
        g: (p.status, p.winner_address, p.winning_score) for (g, _), p in pools.items()
    } == EXPECTED_JAN1
    assert float(pools[("pong", "2026-01-01")].total_amount) == 12.5  # the app's funding is kept
    assert (
        float(pools[("tetris", "2026-01-01")].total_amount) == 0
    )  # created: the app never opened it
    assert as_utc(pools[("breakout", "2026-01-01")].finalized_at) == JAN1 + D + timedelta(minutes=5)
    assert all(p.finalized_at is not None for p in pools.values())


def test_materialization_metadata_per_partition(engine, database):
    _pool_fixture(engine)
    result = _materialize_pool(database, "2026-01-01|snake")
    [materialization] = result.asset_materializations_for_node("daily_prize_pools")
    assert materialization.partition == "2026-01-01|snake"
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["status"] == "finalized"
    assert metadata["winner_address"] == "p2"
    assert metadata["winning_score"] == 500
    assert metadata["finalized_now"] is True
    assert metadata["entries_in_period"] == 3


def test_rematerializing_never_changes_the_winner(engine, database):
    _pool_fixture(engine)
    _materialize_pool(database, "2026-01-01|snake")
    _materialize_pool(database, "2026-01-01|tetris")
    before = _pools(engine)
    # Late scores arrive for the finalized day, and for the no-winner day.
    _entries(
        engine, [("snake", "cheater", 10_000, JAN1 + 12 * H), ("tetris", "late", 5, JAN1 + 12 * H)]
    )
    result = _materialize_pool(database, "2026-01-01|snake")
    _materialize_pool(database, "2026-01-01|tetris")
    after = _pools(engine)
    for key in (("snake", "2026-01-01"), ("tetris", "2026-01-01")):
        assert (
            after[key].status,
            after[key].winner_address,
            after[key].winning_score,
            after[key].finalized_at,
        ) == (
            before[key].status,
            before[key].winner_address,
            before[key].winning_score,
            before[key].finalized_at,
        )
    [materialization] = result.asset_materializations_for_node("daily_prize_pools")
    assert materialization.metadata["finalized_now"].value is False


def test_old_periods_also_read_the_archive(engine, database):
    """game_cleanup moved the day's best score to the archive before this (late) backfill."""
    _pool_fixture(engine)
    with engine.begin() as connection:
        first_id = connection.execute(text("SELECT MIN(id) FROM leaderboard_entries")).scalar()
        archived = [
            # id, player_address, score, created_at
            (9_001, "archived-champion", 600, JAN1 + 11 * H),
            # Copied but not yet deleted from the live table (an archive batch in flight): counted once.
            (first_id, "p1", 500, JAN1 + 10 * H),
        ]
        connection.execute(
            insert(schema.leaderboard_entries_archive),
            [
                {
                    "id": id,
                    "session_id": None,
                    "game_type": "snake",
                    "player_address": player,
                    "score": score,
                    "created_at": created_at,
                    "archived_at": JAN1 + 91 * D,
                }
                for id, player, score, created_at in archived
            ],
        )
    result = _materialize_pool(database, "2026-01-01|snake")
    pool = _pools(engine)[("snake", "2026-01-01")]
    assert (pool.winner_address, pool.winning_score) == ("archived-champion", 600)
    [materialization] = result.asset_materializations_for_node("daily_prize_pools")
    assert materialization.metadata["entries_in_period"].value == 4


def test_yesterdays_pool_as_the_schedule_runs_it(engine, database):
    yesterday = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - D
    _entries(
        engine,
        [
            ("pong", "steady", 11, yesterday + H),
            ("pong", "quick", 11, yesterday + timedelta(minutes=30)),
            ("pong", "today", 99, yesterday + D + timedelta(seconds=1)),
        ],
    )
    assert _materialize_pool(database, f"{yesterday:%Y-%m-%d}|pong").success
    pool = _pools(engine)[("pong", f"{yesterday:%Y-%m-%d}")]
    assert (pool.status, pool.winner_address, pool.winning_score) == ("finalized", "quick", 11)


def test_weekly_pool_covers_monday_to_monday(engine, database):
    monday = datetime(2026, 1, 5, tzinfo=UTC)
    _entries(
        engine,
        [
            ("tetris", "first-minute", 50, monday),
            ("tetris", "sunday-night", 80, monday + 7 * D - timedelta(microseconds=1)),
            ("tetris", "next-week", 900, monday + 7 * D),
            ("tetris", "last-week", 900, monday - timedelta(microseconds=1)),
        ],
    )
    result = _materialize_pool(database, "2026-01-05|tetris", asset=weekly_prize_pools)
    assert result.success
    pool = _pools(engine, "weekly")[("tetris", "2026-01-05")]
    assert (pool.status, pool.winner_address, pool.winning_score) == (
        "finalized",
        "sunday-night",
        80,
    )
    assert _pools(engine, "daily") == {}


def test_one_game_failing_does_not_stop_the_others(engine, database, monkeypatch):
    _pool_fixture(engine)
    real = games.finalize_prize_pool

    def pong_breaks(connection, game_type, *args, **kwargs):
        if game_type == "pong":
            raise RuntimeError("pong scores table is corrupt")
        return real(connection, game_type, *args, **kwargs)

    monkeypatch.setattr(pool_assets, "finalize_prize_pool", pong_breaks)
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [daily_prize_pools],
            resources={"database": database},
            instance=instance,
            raise_on_error=False,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: "2026-01-01|snake",
                ASSET_PARTITION_RANGE_END_TAG: "2026-01-01|space_invaders",
            },
        )
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.message
        assert "1 of 5 daily prize pools failed" in message and "2026-01-01|pong" in message
        assert "pong scores table is corrupt" in message
        materialized = instance.get_materialized_partitions(daily_prize_pools.key)
        assert materialized == {f"2026-01-01|{g}" for g in GAME_TYPES if g != "pong"}
    pools = _pools(engine)
    assert pools[("snake", "2026-01-01")].winner_address == "p2"
    assert pools[("pong", "2026-01-01")].status == "open"


def test_unfinished_period_is_a_clear_error(engine):
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as connection:
        with pytest.raises(ValueError, match="is not over until"):
            games.finalize_prize_pool(connection, "snake", "daily", today, today + D, utcnow())
        with pytest.raises(ValueError, match="unknown game type 'chess'"):
            games.finalize_prize_pool(connection, "chess", "daily", JAN1, JAN1 + D, utcnow())


def test_backfill_of_a_month_in_one_ranged_run(engine, database):
    """What `dagster asset materialize --partition-range` and a single-run backfill launch."""
    _pool_fixture(engine)
    _entries(engine, [("tetris", "mid-month", 42, datetime(2026, 1, 15, 12, tzinfo=UTC))])
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [daily_prize_pools],
            resources={"database": database},
            instance=instance,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: "2026-01-01|snake",
                ASSET_PARTITION_RANGE_END_TAG: "2026-01-31|space_invaders",
            },
        )
        assert result.success
        materialized = instance.get_materialized_partitions(daily_prize_pools.key)
    assert len(materialized) == 31 * 5
    pools = _pools(engine)
    assert len(pools) == 31 * 5
    assert {
        g: (p.status, p.winner_address, p.winning_score)
        for (g, d), p in pools.items()
        if d == "2026-01-01"
    } == EXPECTED_JAN1
    assert pools[("tetris", "2026-01-15")].winner_address == "mid-month"
    # Finalized: four on Jan 1, snake on Jan 2 ("late"), tetris on Jan 15; the rest had no games.
    assert sum(p.status == "no_winner" for p in pools.values()) == 31 * 5 - 6


def test_backfill_partition_by_partition(engine, database):
    """What a multi-run backfill or the catch-up sensor launches: one run per partition."""
    _pool_fixture(engine)
    keys = ["2026-01-01|snake", "2026-01-02|snake", "2026-01-03|pong"]
    with dg.DagsterInstance.ephemeral() as instance:
        for key in keys:
            assert _materialize_pool(database, key, instance=instance).success
        assert instance.get_materialized_partitions(daily_prize_pools.key) == set(keys)
    pools = _pools(engine)
    assert pools[("snake", "2026-01-01")].winner_address == "p2"
    assert pools[("snake", "2026-01-02")].winner_address == "late"
    assert pools[("pong", "2026-01-03")].status == "no_winner"


def test_one_winner_check(engine, database):
    _pool_fixture(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.prize_pools),
            [
                {
                    "game_type": "snake",
                    "period": "daily",
                    "period_start": date(2025, 12, 20),
                    "total_amount": 1,
                    "status": "finalized",
                    "winner_address": None,
                    "winning_score": None,
                    "finalized_at": JAN1,
                },
            ],
        )
    result = _materialize_pool_with_checks(database, "2026-01-01|snake", raise_on_error=False)
    check = check_results(result)["one_winner_per_finalized_pool"]
    assert not check.passed
    assert check.metadata["finalized_without_winner"].value == 1
    assert not result.success  # blocking: the failed check fails the run


# --- schedules ------------------------------------------------------------------------
def _tick(schedule_name, at):
    from ops_platform.definitions import defs

    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def(schedule_name)
    context = dg.build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    return list(schedule.evaluate_tick(context).run_requests)


def test_daily_schedule_finalizes_yesterday_for_every_game():
    requests = _tick("daily_prize_pools_daily", datetime(2026, 1, 2, tzinfo=UTC))
    assert sorted(str(r.partition_key) for r in requests) == sorted(
        f"2026-01-01|{g}" for g in GAME_TYPES
    )
    assert len({r.run_key for r in requests}) == 5


def test_weekly_schedule_on_monday_finalizes_last_week():
    requests = _tick("weekly_prize_pools_weekly", datetime(2026, 1, 12, tzinfo=UTC))
    assert sorted(str(r.partition_key) for r in requests) == sorted(
        f"2026-01-05|{g}" for g in GAME_TYPES
    )


def test_asset_jobs_carry_their_checks():
    from ops_platform.definitions import defs

    repo = defs.get_repository_def()
    check_names = {
        key.name
        for key in repo.get_job("daily_prize_pools_job").asset_layer.asset_graph.asset_check_keys
    }
    assert "one_winner_per_finalized_pool" in check_names
    check_names = {
        key.name
        for key in repo.get_job("leaderboards_job").asset_layer.asset_graph.asset_check_keys
    }
    assert {"every_board_readable", "leaderboard_ranks_dense"} <= check_names


# --- the CLI ----------------------------------------------------------------------------
@pytest.mark.e2e
def test_cli_partition_range_backfills(tmp_path):
    """`dagster asset materialize --partition-range` (SQLite: the CLI path does not depend on
    the database, which the other tests cover on both)."""
    from ops_platform.db.engine import make_engine
    from ops_platform.db.migrate import upgrade

    db_url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    _pool_fixture(engine)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "OPS_DATABASE_URL": db_url,
        "OPS_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
    }
    completed = run_dagster(
        "asset materialize",
        "--select",
        "daily_prize_pools",
        "--partition-range",
        "2026-01-01|snake...2026-01-03|space_invaders",
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    pools = _pools(engine)
    assert len(pools) == 15
    assert pools[("snake", "2026-01-01")].winner_address == "p2"
    engine.dispose()


def test_a_winner_without_a_score_fails_the_blocking_check_stops_downstream_and_alerts(
    engine, database, tmp_path
):
    from ops_platform.resources.alerts import Alerts
    from tests.sensors.test_alerting import alert_on_failure

    _pool_fixture(engine)
    with engine.begin() as connection:  # finalized just now for a player who never scored
        connection.execute(
            insert(schema.prize_pools),
            [
                {
                    "game_type": "tetris",
                    "period": "daily",
                    "period_start": date(2026, 1, 2),
                    "total_amount": 1,
                    "status": "finalized",
                    "winner_address": "ghost",
                    "winning_score": 999,
                    "finalized_at": utcnow(),
                }
            ],
        )
    paid = []

    @dg.asset(deps=[daily_prize_pools], partitions_def=daily_prize_pools.partitions_def)
    def prize_payouts():
        paid.append(True)

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [daily_prize_pools, prize_payouts, *games.defs.asset_checks],
            resources={"database": database},
            partition_key="2026-01-01|snake",
            selection=dg.AssetSelection.assets(daily_prize_pools, prize_payouts)
            | dg.AssetSelection.checks_for_assets(daily_prize_pools),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        check = check_results(result)["one_winner_per_finalized_pool"]
        assert not check.passed and check.metadata["winner_without_a_score"].value == 1
        assert check.metadata["unscored_pools"].value == "tetris:2026-01-02"
        assert paid == [] and not instance.get_materialized_partitions(prize_payouts.key)
        alerts = Alerts(log_file=str(tmp_path / "alerts.log"))
        alert_on_failure(instance, result, alerts)
    alert = (tmp_path / "alerts.log").read_text()
    assert "one_winner_per_finalized_pool" in alert and "blocking asset check failed" in alert


def test_a_winner_with_a_score_in_the_period_passes(engine, database):
    _pool_fixture(engine)
    result = _materialize_pool_with_checks(database, "2026-01-01|snake")
    check = check_results(result)["one_winner_per_finalized_pool"]
    assert check.passed and check.metadata["winner_without_a_score"].value == 0
