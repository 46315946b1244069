"""stream_rankings and user_trust_scores: exact scores and ranks on a hand-built fixture,
clamping, every user updated, metadata and asset checks, on SQLite and Postgres."""

import math
from datetime import UTC, datetime, timedelta
from unittest import mock

import dagster as dg
import pytest
from sqlalchemy import insert, select, text, update

from ops_platform.assets import _sql_assets
from ops_platform.assets.engagement import (
    TrustScoreUpdate,
    one_ranking_row_per_stream,
    rank_streams,
    stream_rankings,
    stream_ranks_dense_and_unique,
    trust_scores_updated_for_every_user,
    trust_scores_within_range,
    update_trust_scores,
    user_trust_scores,
)
from ops_platform.db import schema
from ops_platform.db.engine import as_utc, utcnow
from tests.assets.check_helpers import check_results, run_checks_only

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def _stream_fixture(engine, now):
    """Six streams; half-life 6 h, window 24 h. Expected scores in EXPECTED_SCORES."""
    streams = [
        {"id": 1, "title": "one", "is_live": True, "started_at": now - 3 * H},
        {"id": 2, "title": "two", "is_live": True, "started_at": now - 20 * H},
        {
            "id": 3,
            "title": "three",
            "is_live": False,
            "started_at": now - 9 * H,
            "ended_at": now - 2 * H,
        },
        {
            "id": 4,
            "title": "ended days ago",
            "is_live": False,
            "started_at": now - 4 * D,
            "ended_at": now - 3 * D,
        },
        {"id": 5, "title": "quiet", "is_live": True, "started_at": now - H},
        {"id": 6, "title": "six", "is_live": True, "started_at": now - 8 * H},
    ]
    streams = [{"ended_at": None, **stream} for stream in streams]  # executemany needs every key

    def event(stream, kind, age, value=1.0):
        return {
            "stream_id": stream,
            "user_id": 1,
            "kind": kind,
            "value": value,
            "created_at": now - age,
        }

    events = [
        # stream 1: three fresh views (3) + a chat one half-life old (2 × ½) = 4
        event(1, "view", timedelta(0)),
        event(1, "view", timedelta(0)),
        event(1, "view", timedelta(0)),
        event(1, "chat", 6 * H),
        # stream 2: a 10-coin gift two half-lives old (10 × ¼) + a fresh follow (5) = 7.5
        event(2, "gift", 12 * H, value=10),
        event(2, "follow", timedelta(0)),
        # stream 3: a share one half-life old (3 × ½) = 1.5; outside the window, unknown kind and
        # negative value count for nothing
        event(3, "share", 6 * H),
        event(3, "view", 30 * H, value=100),
        event(3, "like", H, value=50),
        event(3, "view", H, value=-5),
        # stream 4 ended outside the window: not ranked
        event(4, "view", 3 * D + H),
        # stream 6 ties stream 3 at 1.5: the lower id ranks first
        event(6, "share", 6 * H),
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.streams), streams)
        connection.execute(insert(schema.stream_events), events)


EXPECTED_SCORES = {2: 7.5, 1: 4.0, 3: 1.5, 6: 1.5, 5: 0.0}
EXPECTED_RANKS = {2: 1, 1: 2, 3: 3, 6: 4, 5: 5}


def _rankings(engine):
    with engine.connect() as connection:
        rows = connection.execute(select(schema.stream_rankings)).all()
    return {row.stream_id: row for row in rows}


def test_rank_streams_exact_scores_and_ranks(engine):
    _stream_fixture(engine, NOW)
    with engine.begin() as connection:
        result = rank_streams(connection, NOW, window=24 * H, half_life=6 * H)
    assert result.streams_ranked == 5
    rows = _rankings(engine)
    assert {sid: row.rank for sid, row in rows.items()} == EXPECTED_RANKS
    for sid, score in EXPECTED_SCORES.items():
        assert rows[sid].score == pytest.approx(score, rel=1e-6), sid
    assert {as_utc(row.computed_at) for row in rows.values()} == {NOW}


def test_rank_streams_replaces_the_previous_ranking(engine):
    _stream_fixture(engine, NOW)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.stream_rankings),
            [
                {"stream_id": 4, "score": 99.0, "rank": 1, "computed_at": NOW - D},
                {"stream_id": 77, "score": 1.0, "rank": 2, "computed_at": NOW - D},
            ],
        )
        rank_streams(connection, NOW, window=24 * H, half_life=6 * H)
    assert set(_rankings(engine)) == set(EXPECTED_RANKS)


def _full_ranking(engine, now) -> dict[int, tuple[int, float]]:
    """The ranking rewritten from scratch (min_change 0), in a transaction rolled back."""
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(text("DELETE FROM stream_rankings"))
        rank_streams(connection, now, window=24 * H, half_life=6 * H, min_change=0)
        rows = connection.execute(text("SELECT stream_id, rank, score FROM stream_rankings")).all()
        transaction.rollback()
    return {sid: (rank, score) for sid, rank, score in rows}


def _assert_same_as_full_ranking(engine, now):
    full = _full_ranking(engine, now)
    ours = _rankings(engine)
    assert {sid: row.rank for sid, row in ours.items()} == {sid: r for sid, (r, _) in full.items()}
    for sid, (_, score) in full.items():
        assert abs(ours[sid].score - score) < 0.01, (sid, ours[sid].score, score)


def test_rank_streams_writes_only_changed_rows_and_equals_a_full_ranking(engine):
    _stream_fixture(engine, NOW)
    with engine.begin() as connection:
        first = rank_streams(connection, NOW, window=24 * H, half_life=6 * H)
    assert (first.streams_ranked, first.rows_written) == (5, 5)

    # A minute later only stream 2's score (7.5) decayed by 0.01 or more; no rank moved.
    later = NOW + timedelta(minutes=1)
    with engine.begin() as connection:
        second = rank_streams(connection, later, window=24 * H, half_life=6 * H)
    assert (second.streams_ranked, second.rows_written) == (5, 1)
    rows = _rankings(engine)
    assert as_utc(rows[2].computed_at) == later and as_utc(rows[1].computed_at) == NOW
    _assert_same_as_full_ranking(engine, later)

    # A new stream goes straight to the top (every rank moves), stream 5 ended days ago.
    with engine.begin() as connection:
        connection.execute(
            insert(schema.streams),
            [{"id": 7, "title": "new", "is_live": True, "started_at": later, "ended_at": None}],
        )
        connection.execute(
            insert(schema.stream_events),
            [{"stream_id": 7, "user_id": 1, "kind": "follow", "value": 2, "created_at": later}],
        )
        connection.execute(
            update(schema.streams)
            .where(schema.streams.c.id == 5)
            .values(is_live=False, ended_at=later - 3 * D)
        )
        third = rank_streams(connection, later, window=24 * H, half_life=6 * H)
    # stream 7 inserted, 2, 1, 3 and 6 moved down one rank, 5 deleted
    assert (third.streams_ranked, third.rows_written, third.rows_deleted) == (5, 6, 1)
    assert {sid: row.rank for sid, row in _rankings(engine).items()} == {
        7: 1,
        2: 2,
        1: 3,
        3: 4,
        6: 5,
    }
    _assert_same_as_full_ranking(engine, later)


def test_stream_rankings_asset_writes_table_metadata_and_passes_checks(engine, database):
    now = utcnow()
    _stream_fixture(engine, now)
    with mock.patch.object(_sql_assets, "utcnow", lambda: now):  # the fixture's clock
        result = dg.materialize(
            [stream_rankings, stream_ranks_dense_and_unique, one_ranking_row_per_stream],
            resources={"database": database},
        )
    assert result.success
    rows = _rankings(engine)
    assert {sid: row.rank for sid, row in rows.items()} == EXPECTED_RANKS
    for sid, score in EXPECTED_SCORES.items():
        assert rows[sid].score == pytest.approx(score, rel=1e-6), sid
    [materialization] = result.asset_materializations_for_node("stream_rankings")
    metadata = materialization.metadata
    assert metadata["row_count"].value == 5
    assert metadata["streams_with_activity"].value == 4
    assert "duration_s" in metadata
    assert "| 1 | 2 | two | yes |" in metadata["preview"].value
    checks = check_results(result)
    assert checks["stream_ranks_dense_and_unique"].passed
    assert checks["one_ranking_row_per_stream"].passed


def test_stream_checks_fail_on_gaps_and_missing_streams(engine, database):
    now = utcnow()
    _stream_fixture(engine, now)
    dg.materialize([stream_rankings], resources={"database": database})
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM stream_rankings WHERE rank = 2"))
    checks = run_checks_only(
        database, stream_rankings, stream_ranks_dense_and_unique, one_ranking_row_per_stream
    )
    assert not checks["stream_ranks_dense_and_unique"].passed
    assert not checks["one_ranking_row_per_stream"].passed
    assert checks["one_ranking_row_per_stream"].metadata["eligible_streams_missing"].value == 1


# --- trust scores ---------------------------------------------------------------------------
HALF_LIFE = timedelta(days=90)


def _trust_fixture(engine, now):
    users = [
        {"id": i, "email": f"u{i}@example.com", "trust_score": 50.0, "trust_score_updated_at": None}
        for i in range(1, 8)
    ]
    users[6]["trust_score"] = 12.0  # user 7: an old value from another system
    users[6]["trust_score_updated_at"] = now - 400 * D

    def rep(user, weight, age, kind="endorsement"):
        return {"user_id": user, "kind": kind, "weight": weight, "created_at": now - age}

    events = [
        rep(2, 10, timedelta(0)),  # 50 + 10 = 60
        rep(3, 20, 2 * HALF_LIFE),  # 50 + 20 × ¼ = 55
        rep(3, -8, HALF_LIFE, kind="report"),  # … − 8 × ½ = 51
        rep(4, 100, timedelta(0)),  # 150 → clamped to 100
        rep(5, -80, timedelta(0), kind="report"),  # −30 → clamped to 0
        rep(6, 40, -D),  # in the future: ignored → 50
        rep(7, 5, 10_000 * D),  # decayed to nothing → 50
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.users), users)
        connection.execute(insert(schema.reputation_events), events)


EXPECTED_TRUST = {1: 50.0, 2: 60.0, 3: 51.0, 4: 100.0, 5: 0.0, 6: 50.0, 7: 50.0}


def _trust(engine):
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                schema.users.c.id, schema.users.c.trust_score, schema.users.c.trust_score_updated_at
            )
        ).all()
    return {row.id: (row.trust_score, as_utc(row.trust_score_updated_at)) for row in rows}


def test_update_trust_scores_exact_clamped_and_every_user(engine):
    _trust_fixture(engine, NOW)
    with engine.begin() as connection:
        update = update_trust_scores(connection, NOW, base_score=50, half_life=HALF_LIFE)
    assert update == TrustScoreUpdate(examined=7, written=7)
    scores = _trust(engine)
    for user, expected in EXPECTED_TRUST.items():
        assert scores[user][0] == pytest.approx(expected, abs=1e-9), user
        assert scores[user][1] == NOW, user


def test_bad_arguments_are_clear_errors(engine):
    with engine.begin() as connection:
        with pytest.raises(ValueError, match="base score must be within 0–100"):
            update_trust_scores(connection, NOW, base_score=150, half_life=HALF_LIFE)
        with pytest.raises(ValueError, match="half-life must be positive"):
            update_trust_scores(connection, NOW, base_score=50, half_life=timedelta(0))
        with pytest.raises(ValueError, match="unknown stream event kinds"):
            rank_streams(connection, NOW, 24 * H, 6 * H, weights={"like": 1.0})


def test_user_trust_scores_asset_updates_every_user_and_passes_checks(engine, database):
    now = utcnow()
    _trust_fixture(engine, now)
    started = utcnow()
    result = dg.materialize(
        [user_trust_scores, trust_scores_within_range, trust_scores_updated_for_every_user],
        resources={"database": database},
    )
    assert result.success
    scores = _trust(engine)
    for user, expected in EXPECTED_TRUST.items():
        assert scores[user][0] == pytest.approx(expected, abs=1e-3), user
        assert scores[user][1] >= started, user
    assert len({updated_at for _, updated_at in scores.values()}) == 1
    [materialization] = result.asset_materializations_for_node("user_trust_scores")
    metadata = materialization.metadata
    assert metadata["row_count"].value == 7
    assert metadata["rows_examined"].value == 7 and metadata["rows_written"].value == 7
    assert metadata["users_at_0"].value == 1 and metadata["users_at_100"].value == 1
    assert "**Highest trust**" in metadata["preview"].value
    checks = check_results(result)
    assert checks["trust_scores_within_range"].passed
    assert checks["trust_scores_updated_for_every_user"].passed


def test_trust_checks_catch_out_of_range_and_stale_users(engine, database):
    _trust_fixture(engine, utcnow())
    dg.materialize([user_trust_scores], resources={"database": database})
    with engine.begin() as connection:
        connection.execute(
            update(schema.users).where(schema.users.c.id == 2).values(trust_score=140.0)
        )
        connection.execute(insert(schema.users), [{"id": 8, "email": "new@example.com"}])
    checks = run_checks_only(
        database, user_trust_scores, trust_scores_within_range, trust_scores_updated_for_every_user
    )
    assert not checks["trust_scores_within_range"].passed
    assert checks["trust_scores_within_range"].metadata["users_out_of_range"].value == 1
    assert not checks["trust_scores_updated_for_every_user"].passed
    assert checks["trust_scores_updated_for_every_user"].metadata["stale_users"].value == 1


def test_decay_matches_the_half_life_formula(engine):
    with engine.begin() as connection:
        connection.execute(insert(schema.users), [{"id": 1, "email": "a@example.com"}])
        connection.execute(
            insert(schema.reputation_events),
            [
                {
                    "user_id": 1,
                    "kind": "endorsement",
                    "weight": 30,
                    "created_at": NOW - timedelta(days=33, hours=5),
                },
            ],
        )
        update_trust_scores(connection, NOW, base_score=40, half_life=HALF_LIFE)
    age_days = 33 + 5 / 24
    expected = 40 + 30 * math.pow(0.5, age_days / 90)
    assert _trust(engine)[1][0] == pytest.approx(expected, rel=1e-9)


# --- trust scores: only what changed is written --------------------------------------------
def _scores(engine) -> dict[int, float]:
    return {user: score for user, (score, _) in _trust(engine).items()}


def _full_recompute(engine, now) -> dict[int, float]:
    """Every user's score rewritten (min_change 0), in a transaction rolled back."""
    with engine.connect() as connection, connection.begin() as transaction:
        update_trust_scores(connection, now, 50, HALF_LIFE, min_change=0)
        rows = connection.execute(select(schema.users.c.id, schema.users.c.trust_score)).all()
        transaction.rollback()
    return dict(rows)


def _assert_same_as_full_recompute(engine, now):
    full = _full_recompute(engine, now)
    ours = _scores(engine)
    assert set(ours) == set(full)
    for user, score in full.items():
        assert abs(ours[user] - score) < 0.01, (user, ours[user], score)


def test_incremental_trust_scores_write_only_changed_users_and_equal_a_full_recompute(engine):
    _trust_fixture(engine, NOW)
    with engine.begin() as connection:
        first = update_trust_scores(connection, NOW, 50, HALF_LIFE)
    assert first == TrustScoreUpdate(examined=7, written=7)  # never scored: all written

    later = NOW + timedelta(minutes=30)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.reputation_events),
            [
                # user 2 (60) crosses the upper bound: 60 + 45 -> 100
                {"user_id": 2, "kind": "endorsement", "weight": 45, "created_at": later},
                # user 4 (clamped at 100, raw 150) comes down through it: 150 - 90 -> 60
                {"user_id": 4, "kind": "report", "weight": -90, "created_at": later},
                # user 5 (clamped at 0, raw -30) stays below it: -20 -> still 0, not written
                {"user_id": 5, "kind": "endorsement", "weight": 10, "created_at": later},
                # user 3 moves by less than the precision: not written
                {"user_id": 3, "kind": "endorsement", "weight": 0.004, "created_at": later},
                # a new user with events, and one without (scored for the first time)
                {"user_id": 9, "kind": "report", "weight": -70, "created_at": later},
            ],
        )
        connection.execute(
            insert(schema.users),
            [{"id": 8, "email": "u8@example.com"}, {"id": 9, "email": "u9@example.com"}],
        )
    before = _trust(engine)
    with engine.begin() as connection:
        second = update_trust_scores(connection, later, 50, HALF_LIFE)
    after = _trust(engine)
    written = {user for user in after if after[user][1] == later}
    # 2 and 4 crossed a bound, 8 and 9 are new; 60 in 30 min decays by < 0.01 (half-life 90 d)
    assert written == {2, 4, 8, 9}
    assert second == TrustScoreUpdate(examined=9, written=4)
    assert after[2][0] == 100.0 and after[4][0] == pytest.approx(60.0, abs=0.05)
    assert after[5][0] == 0.0 and after[9][0] == 0.0 and after[8][0] == 50.0
    for user in set(before) - written:
        assert after[user] == before[user], user  # untouched: score and time
    _assert_same_as_full_recompute(engine, later)


def test_scores_older_than_the_refresh_age_are_rewritten(engine):
    _trust_fixture(engine, NOW)
    with engine.begin() as connection:
        update_trust_scores(connection, NOW, 50, HALF_LIFE)
    with engine.begin() as connection:
        soon = update_trust_scores(connection, NOW + 23 * H, 50, HALF_LIFE)
    # 60 decays by 0.0128 in 23 h, 51 by 0.001: only user 2 moved by the precision
    assert soon.written == 1
    with engine.begin() as connection:
        day_later = update_trust_scores(connection, NOW + 25 * H, 50, HALF_LIFE)
    assert day_later == TrustScoreUpdate(examined=7, written=6)  # user 2 written 2 h ago
    assert {at for _, at in _trust(engine).values()} == {NOW + 23 * H, NOW + 25 * H}
    _assert_same_as_full_recompute(engine, NOW + 25 * H)
    with engine.begin() as connection:
        every = update_trust_scores(
            connection, NOW + 26 * H, 50, HALF_LIFE, refresh_after=timedelta(0)
        )
    assert every.written == 7


def test_a_changed_base_score_rewrites_the_users_it_moves(engine):
    _trust_fixture(engine, NOW)
    with engine.begin() as connection:
        update_trust_scores(connection, NOW, 50, HALF_LIFE)
        moved = update_trust_scores(connection, NOW, 45, HALF_LIFE)
    # users 4 and 5 stay clamped (145 -> 100, -35 -> 0); every other score moves by 5
    assert moved.written == 5
    assert _scores(engine) == pytest.approx(
        {1: 45.0, 2: 55.0, 3: 46.0, 4: 100.0, 5: 0.0, 6: 45.0, 7: 45.0}, abs=1e-9
    )
