"""game_cleanup on SQLite and Postgres: stale sessions, orphaned entries, the archive."""

import pytest
from sqlalchemy import insert, select

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.games import (
    GameCleanupConfig,
    clean_game_sessions_and_leaderboards,
    game_cleanup,
)
from tests.jobs.cleanup_helpers import Crash, ago, at, column, ids, run_job

SESSIONS = [
    # id, status, started_at
    (1, "active", ago(minutes=31)),  # expires
    (2, "active", ago(minutes=29)),  # still playing
    (3, "completed", ago(hours=2)),  # untouched
    (4, "active", None),  # bad row: no start
    (5, "paused", ago(days=1)),  # bad row: unknown status
    (6, "active", ago(days=3)),  # expires
]
ENTRIES = [
    # id, session_id, created_at
    (101, 1, ago(hours=1)),  # kept
    (102, 999, ago(hours=1)),  # orphan: deleted
    (103, None, ago(hours=1)),  # no session: kept, counted
    (104, 3, ago(days=100)),  # archived
    (105, 888, ago(days=100)),  # orphan: deleted, not archived
    (106, None, ago(days=200)),  # archived
    (107, 2, ago(days=91)),  # archived
    (108, 6, ago(days=89)),  # kept
]
ARCHIVED = {104, 106, 107}
ORPHANS = {102, 105}


@pytest.fixture
def games(engine):
    with engine.begin() as connection:
        connection.execute(
            insert(schema.game_sessions),
            [
                {
                    "id": id,
                    "game_type": "snake",
                    "player_address": f"0x{id}",
                    "status": status,
                    "started_at": at(started),
                }
                for id, status, started in SESSIONS
            ],
        )
        connection.execute(
            insert(schema.leaderboard_entries),
            [
                {
                    "id": id,
                    "session_id": session,
                    "game_type": "snake",
                    "player_address": f"0x{id}",
                    "score": id,
                    "created_at": at(created),
                }
                for id, session, created in ENTRIES
            ],
        )
    return engine


def _state(engine):
    return (
        column(engine, schema.game_sessions, "status"),
        ids(engine, schema.leaderboard_entries),
        ids(engine, schema.leaderboard_entries_archive),
    )


def _expected():
    statuses = {id: ("expired" if id in (1, 6) else status) for id, status, _ in SESSIONS}
    entries = {id for id, _, _ in ENTRIES} - ARCHIVED - ORPHANS
    return statuses, entries, ARCHIVED


def _run(database, **config):
    return run_job(game_cleanup, "cleanup_games", database, **config)


def test_game_cleanup_changes_exactly_past_each_boundary(games, database):
    changed, metadata = _run(database, batch_size=2)
    assert _state(games) == _expected()
    assert metadata["game_sessions_expired_changed"] == 2
    assert metadata["leaderboard_entries_orphaned_changed"] == 2
    assert metadata["leaderboard_entries_archived_changed"] == 3
    assert metadata["leaderboard_entries_archive_changed"] == 3
    assert changed == 2 + 2 + 3 + 3
    assert metadata["game_sessions_skipped_null_started_at"] == 1
    assert metadata["game_sessions_skipped_unknown_status"] == 1
    assert metadata["leaderboard_entries_kept_null_session"] == 1
    with games.connect() as connection:
        ended = dict(
            connection.execute(
                select(schema.game_sessions.c.id, schema.game_sessions.c.ended_at)
            ).all()
        )
        archived = {
            row.id: row for row in connection.execute(select(schema.leaderboard_entries_archive))
        }
    assert ended[1] is not None and ended[2] is None
    assert (
        archived[107].session_id == 2
        and archived[107].score == 107
        and archived[107].archived_at is not None
    )


def test_game_dry_run_counts_exactly_then_second_run_changes_nothing(games, database):
    before = _state(games)
    changed, metadata = _run(database, dry_run=True)
    assert changed == 0 and _state(games) == before
    real_changed, real = _run(database)
    assert metadata["rows_matched"] == real["rows_changed"] == real_changed == 10
    changed, metadata = _run(database)
    assert changed == 0 and metadata["rows_changed"] == 0


def test_config_overrides(games, database):
    _run(database, session_expiry_minutes=60 * 24 * 7, archive_leaderboards=False)
    statuses, entries, archive = _state(games)
    assert statuses[1] == statuses[6] == "active"
    assert entries == {id for id, _, _ in ENTRIES} - ORPHANS and archive == set()
    _run(database, leaderboard_archive_age_days=95)
    assert _state(games)[2] == {104, 106}


def test_archive_crash_half_way_never_loses_nor_duplicates(games):
    config = GameCleanupConfig(batch_size=1)

    def crash_in_archive(message):
        if message.startswith("leaderboard_entries_archived"):
            raise Crash(message)

    with pytest.raises(Crash):
        clean_game_sessions_and_leaderboards(games, config, utcnow(), crash_in_archive)
    _, entries, archive = _state(games)
    assert len(archive) == 1 and not (entries & archive)
    outcome = clean_game_sessions_and_leaderboards(games, config, utcnow())
    assert outcome.changed("leaderboard_entries_archived") == 2
    assert outcome.changed("game_sessions_expired") == 0
    assert _state(games) == _expected()


def test_entry_already_in_archive_is_not_duplicated(games, database):
    with games.begin() as connection:
        connection.execute(
            insert(schema.leaderboard_entries_archive),
            [
                {
                    "id": 104,
                    "session_id": 3,
                    "game_type": "snake",
                    "player_address": "0x104",
                    "score": 104,
                    "created_at": at(ago(days=100)),
                }
            ],
        )
    changed, metadata = _run(database)
    assert metadata["leaderboard_entries_archived_changed"] == 3
    assert metadata["leaderboard_entries_archive_changed"] == 2
    assert _state(games) == _expected()


def test_game_concurrent_run_does_not_act(games, database):
    before = _state(games)
    with database.job_lock("game_cleanup"):
        assert _run(database)[0] == 0
    assert _state(games) == before
