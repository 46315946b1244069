"""throne_expiry and festival_activation on SQLite and Postgres: state changes and their
realtime_events outbox rows in one transaction."""

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from ops_platform.db import schema
from ops_platform.db.engine import state_table, utcnow
from ops_platform.jobs.engagement import (
    FestivalActivationConfig,
    ThroneExpiryConfig,
    deactivate_expired_thrones,
    festival_activation,
    throne_expiry,
    update_festival_states,
)
from tests.jobs.cleanup_helpers import (
    Crash,
    ago,
    ahead,
    at,
    column,
    crash_after_first_batch,
    run_job,
)

THRONES = [
    # id, stream_id, expires_at, is_active
    (1, 10, ago(minutes=1), True),  # expires
    (2, 10, ahead(minutes=5), True),  # live
    (3, 11, ago(days=1), False),  # already inactive: untouched, no event
    (4, 12, None, True),  # bad row: no expiry
    (5, None, ago(hours=1), True),  # expires; no stream → channel "thrones"
    (6, 9, ago(days=2), True),  # expires
]
EXPIRING = {1, 5, 6}


def _events(engine, event=None):
    query = select(schema.realtime_events).order_by(schema.realtime_events.c.id)
    if event:
        query = query.where(schema.realtime_events.c.event == event)
    with engine.connect() as connection:
        return [row._asdict() for row in connection.execute(query)]


@pytest.fixture
def thrones(engine):
    with engine.begin() as connection:
        connection.execute(
            insert(schema.thrones),
            [
                {
                    "id": id,
                    "stream_id": stream,
                    "holder_id": 100 + id,
                    "total_coins": 1000 * id,
                    "started_at": at(ago(hours=3)),
                    "expires_at": at(expires),
                    "is_active": active,
                }
                for id, stream, expires, active in THRONES
            ],
        )
    return engine


def _active(engine):
    return {id for id, active in column(engine, schema.thrones, "is_active").items() if active}


def _thrones(database, **config):
    return run_job(throne_expiry, "expire_thrones", database, **config)


def test_expired_thrones_deactivated_with_one_event_each(thrones, database):
    changed, metadata = _thrones(database, batch_size=2)
    assert _active(thrones) == {2, 4}
    assert metadata["thrones_expired_changed"] == 3
    assert metadata["thrones_expired_events_changed"] == 3
    assert changed == 6
    assert metadata["thrones_skipped_null_expiry"] == 1
    events = {e["payload"]["throneId"]: e for e in _events(thrones)}
    assert set(events) == EXPIRING
    assert events[1]["event"] == "throne:expired" and events[1]["channel"] == "stream:10"
    assert events[1]["payload"] == {
        "throneId": 1,
        "streamId": 10,
        "holderId": 101,
        "totalCoins": 1000,
    }
    assert events[5]["channel"] == "thrones" and events[5]["payload"]["streamId"] is None
    assert all(e["published_at"] is None for e in events.values())


def test_throne_dry_run_then_second_run(thrones, database):
    changed, metadata = _thrones(database, dry_run=True)
    assert changed == 0 and metadata["rows_matched"] == 6  # 3 thrones + 3 events
    assert _active(thrones) == {1, 2, 4, 5, 6} and _events(thrones) == []
    assert _thrones(database)[0] == 6
    changed, metadata = _thrones(database)
    assert changed == 0 and metadata["rows_changed"] == 0
    assert len(_events(thrones)) == 3


def test_throne_crash_half_way_then_rerun_publishes_nothing_twice(thrones):
    config = ThroneExpiryConfig(batch_size=1)
    with pytest.raises(Crash):
        deactivate_expired_thrones(thrones, config, utcnow(), crash_after_first_batch)
    assert _active(thrones) == {2, 4, 5, 6}
    assert [e["payload"]["throneId"] for e in _events(thrones)] == [1]
    outcome = deactivate_expired_thrones(thrones, config, utcnow())
    assert outcome.changed("thrones_expired") == 2
    assert sorted(e["payload"]["throneId"] for e in _events(thrones)) == sorted(EXPIRING)


def test_throne_update_and_event_are_one_transaction(thrones):
    # With the outbox unwritable, the state change must not happen either.
    with thrones.begin() as connection:
        connection.execute(text("ALTER TABLE realtime_events RENAME TO realtime_events_gone"))
    with pytest.raises(DBAPIError):
        deactivate_expired_thrones(thrones, ThroneExpiryConfig(batch_size=10), utcnow())
    assert _active(thrones) == {1, 2, 4, 5, 6}


def test_throne_concurrent_run_does_not_act(thrones, database):
    with database.job_lock("throne_expiry"):
        assert _thrones(database)[0] == 0
    assert _active(thrones) == {1, 2, 4, 5, 6} and _events(thrones) == []


# --- festivals ----------------------------------------------------------------------------

FESTIVALS = [
    # id, theme, start_at, end_at, is_active
    (1, "halloween", ago(days=2), ahead(days=5), False),  # in window: activated
    (2, "summer", ago(days=30), ago(days=1), True),  # ended: deactivated
    (3, "spring", ahead(days=10), ahead(days=20), False),  # future: untouched
    (4, "winter", ago(days=5), ahead(days=5), True),  # in window, already active: no event
    (5, "broken", None, ahead(days=5), False),  # bad row: no start
    (6, "old", ago(days=90), ago(days=60), False),  # ended long ago, already inactive
    (7, "backwards", ahead(days=5), ago(days=5), False),  # bad row: ends before it starts
]
GIFTS = [
    # id, festival_id, is_active
    (11, 1, False),
    (12, 1, True),
    (21, 2, True),
    (22, 2, True),
    (31, 3, True),
    (41, 4, False),
    (61, 6, False),
    (90, None, True),
]


@pytest.fixture
def festivals(engine):
    with engine.begin() as connection:
        connection.execute(
            insert(schema.festivals),
            [
                {
                    "id": id,
                    "name": f"Festival {id}",
                    "theme": theme,
                    "start_at": at(start),
                    "end_at": at(end),
                    "is_active": active,
                }
                for id, theme, start, end, active in FESTIVALS
            ],
        )
        connection.execute(
            insert(schema.gifts),
            [
                {"id": id, "name": f"gift {id}", "festival_id": festival, "is_active": active}
                for id, festival, active in GIFTS
            ],
        )
    return engine


def _festival_state(engine):
    festivals = {
        id for id, active in column(engine, schema.festivals, "is_active").items() if active
    }
    gifts = {id for id, active in column(engine, schema.gifts, "is_active").items() if active}
    with engine.connect() as connection:
        theme = connection.execute(
            text(f"SELECT value FROM {state_table(engine, 'app_state')} WHERE key = 'active_theme'")
        ).first()
    return festivals, gifts, theme[0] if theme else "<unset>"


def _festivals(database, **config):
    return run_job(festival_activation, "activate_festivals", database, **config)


def test_festivals_follow_their_window_with_gifts_theme_and_events(festivals, database):
    changed, metadata = _festivals(database, batch_size=1)
    assert _festival_state(festivals) == ({1, 4}, {11, 12, 31, 90}, "halloween")
    assert metadata["festivals_activated_changed"] == 1
    assert metadata["festivals_ended_changed"] == 1
    assert metadata["gifts_activated_changed"] == 1
    assert metadata["gifts_deactivated_changed"] == 2
    assert metadata["active_theme_changed"] == 1
    assert metadata["festivals_skipped_bad_window"] == 2
    assert changed == 1 + 1 + 1 + 2 + 1 + 1 + 1  # festivals, gifts, events, theme
    events = _events(festivals)
    assert [(e["event"], e["payload"]["festivalId"]) for e in events] == [
        ("festival:activated", 1),
        ("festival:ended", 2),
    ]
    assert events[0]["channel"] == "festivals"
    assert events[0]["payload"] == {"festivalId": 1, "name": "Festival 1", "theme": "halloween"}


def test_festival_dry_run_counts_exactly_then_second_run_changes_nothing(festivals, database):
    before = _festival_state(festivals)
    changed, metadata = _festivals(database, dry_run=True)
    assert changed == 0 and _festival_state(festivals) == before and _events(festivals) == []
    real_changed, real = _festivals(database)
    assert metadata["rows_matched"] == real["rows_changed"] == real_changed == 8
    changed, metadata = _festivals(database)
    assert changed == 0 and metadata["rows_changed"] == 0
    assert len(_events(festivals)) == 2


def test_theme_cleared_when_no_festival_is_running(festivals):
    config = FestivalActivationConfig()
    update_festival_states(festivals, config, utcnow())
    outcome = update_festival_states(festivals, config, utcnow() + timedelta(days=6))
    assert outcome.changed("festivals_ended") == 2
    assert _festival_state(festivals) == (set(), {31, 90}, None)
    assert [e["event"] for e in _events(festivals)][-2:] == ["festival:ended", "festival:ended"]


def test_festival_crash_half_way_then_rerun_publishes_nothing_twice(festivals):
    config = FestivalActivationConfig(batch_size=1)
    with pytest.raises(Crash):
        update_festival_states(festivals, config, utcnow(), crash_after_first_batch)
    assert _festival_state(festivals)[:2] == ({1, 2, 4}, {11, 12, 21, 22, 31, 90})
    assert len(_events(festivals)) == 1
    update_festival_states(festivals, config, utcnow())
    assert _festival_state(festivals) == ({1, 4}, {11, 12, 31, 90}, "halloween")
    assert [e["payload"]["festivalId"] for e in _events(festivals)] == [1, 2]


def test_festival_concurrent_run_does_not_act(festivals, database):
    before = _festival_state(festivals)
    with database.job_lock("festival_activation"):
        assert _festivals(database)[0] == 0
    assert _festival_state(festivals) == before and _events(festivals) == []
