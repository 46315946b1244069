"""session_cleanup: expired sessions gone, live ones kept, modes, dry run, bad rows, lock."""

from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import insert, select

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.sessions import session_cleanup


def _session(id, *, kind="user", expires=None, revoked=None, last_seen=None, created=None):
    now = utcnow()
    if last_seen is None and created is None:
        last_seen = now - timedelta(hours=1)
    return {
        "id": id,
        "user_id": 1,
        "kind": kind,
        "created_at": created or now - timedelta(days=1),
        "last_seen_at": last_seen if last_seen or created is None else None,
        "expires_at": expires,
        "revoked_at": revoked,
    }


@pytest.fixture
def sessions_fixture(engine):
    now = utcnow()
    rows = [
        _session(1, expires=now - timedelta(minutes=5)),  # expired
        _session(2, expires=now + timedelta(days=1)),  # live
        _session(
            3, expires=now + timedelta(days=1), revoked=now - timedelta(days=8)
        ),  # revoked long ago
        _session(
            4, expires=now + timedelta(days=1), revoked=now - timedelta(days=1)
        ),  # revoked recently
        _session(5, expires=now + timedelta(days=1), last_seen=now - timedelta(days=31)),  # idle
        _session(6, kind="player", expires=None, created=now - timedelta(days=40)),  # stale player
        _session(
            7, kind="player", expires=None, last_seen=now - timedelta(days=2)
        ),  # active player
        _session(8, expires=None),  # bad row: user without expiry
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.sessions), rows)
    return engine


def _ids(engine):
    with engine.connect() as connection:
        return set(connection.execute(select(schema.sessions.c.id)).scalars())


def _run(database, **config):
    return session_cleanup.execute_in_process(
        run_config={"ops": {"cleanup_sessions": {"config": config}}},
        resources={"database": database},
    )


@pytest.mark.parametrize(
    "mode, remaining",
    [
        ("light", {2, 3, 4, 5, 6, 7, 8}),
        ("deep", {2, 4, 6, 7, 8}),
        ("safety_net", {2, 4, 7, 8}),
    ],
)
def test_modes_delete_exactly_their_rows(sessions_fixture, database, mode, remaining):
    result = _run(database, mode=mode, batch_size=2)
    assert result.success
    assert _ids(sessions_fixture) == remaining
    metadata = result.output_for_node("cleanup_sessions")
    assert metadata == 8 - len(remaining)


def test_dry_run_changes_nothing_and_reports_what_it_would(sessions_fixture, database):
    result = _run(database, mode="safety_net", dry_run=True)
    assert result.success
    assert _ids(sessions_fixture) == set(range(1, 9))
    [materialization] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = materialization.event_specific_data.metadata
    assert metadata["rows_matched"].value == 4
    assert metadata["rows_changed"].value == 0
    assert metadata["skipped_null_expiry"].value == 1


def test_second_run_changes_nothing(sessions_fixture, database):
    assert _run(database, mode="deep").output_for_node("cleanup_sessions") == 3
    assert _run(database, mode="deep").output_for_node("cleanup_sessions") == 0


def test_concurrent_run_does_not_act(sessions_fixture, database):
    with database.job_lock("session_cleanup"):
        result = _run(database, mode="deep")
    assert result.success
    assert result.output_for_node("cleanup_sessions") == 0
    assert _ids(sessions_fixture) == set(range(1, 9))


def test_bad_config_is_a_clear_error(database):
    with pytest.raises(
        dg.DagsterInvalidConfigError, match="not in enum type SessionMode got weekly"
    ):
        _run(database, mode="weekly")
    with pytest.raises(dg.DagsterInvalidConfigError):
        _run(database, batch_size="many")
