"""team_member_cleanup and deliverable_expiry on SQLite and Postgres."""

import pytest
from sqlalchemy import insert

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.projects import (
    DeliverableExpiryConfig,
    TeamMemberCleanupConfig,
    delete_removed_team_members,
    deliverable_expiry,
    mark_deliverables_expired,
    team_member_cleanup,
)
from tests.jobs.cleanup_helpers import (
    Crash,
    ago,
    ahead,
    at,
    column,
    crash_after_first_batch,
    ids,
    run_job,
)

MEMBERS = {
    1: ago(days=91),
    2: ago(days=89),
    3: None,
    4: ago(days=400),
    5: ago(days=120),
    6: ago(minutes=1),
}
REMOVED_LONG_AGO = {1, 4, 5}


@pytest.fixture
def team(engine):
    with engine.begin() as connection:
        connection.execute(
            insert(schema.project_team),
            [
                {"id": id, "project_id": 7, "user_id": id, "removed_at": at(removed)}
                for id, removed in MEMBERS.items()
            ],
        )
    return engine


def _members(database, **config):
    return run_job(team_member_cleanup, "cleanup_team_members", database, **config)


def test_members_removed_over_90_days_ago_deleted(team, database):
    changed, metadata = _members(database, batch_size=2)
    assert ids(team, schema.project_team) == set(MEMBERS) - REMOVED_LONG_AGO
    assert changed == metadata["project_team_removed_changed"] == 3
    assert metadata["project_team_removed_within_retention"] == 2


def test_members_dry_run_then_second_run(team, database):
    changed, metadata = _members(database, dry_run=True)
    assert changed == 0 and metadata["rows_matched"] == 3
    assert ids(team, schema.project_team) == set(MEMBERS)
    assert _members(database)[0] == 3
    changed, metadata = _members(database)
    assert changed == 0 and metadata["rows_changed"] == 0


def test_members_retention_override(team, database):
    _members(database, retention_days=0)
    assert ids(team, schema.project_team) == {3}


def test_members_crash_half_way_then_rerun_finishes(team):
    config = TeamMemberCleanupConfig(batch_size=2)
    with pytest.raises(Crash):
        delete_removed_team_members(team, config, utcnow(), crash_after_first_batch)
    assert len(ids(team, schema.project_team)) == len(MEMBERS) - 2
    assert delete_removed_team_members(team, config, utcnow()).rows_changed == 1
    assert ids(team, schema.project_team) == set(MEMBERS) - REMOVED_LONG_AGO


def test_members_concurrent_run_does_not_act(team, database):
    with database.job_lock("team_member_cleanup"):
        assert _members(database)[0] == 0
    assert ids(team, schema.project_team) == set(MEMBERS)


# --- deliverables -------------------------------------------------------------------------

DELIVERABLES = [
    # id, delivered_at, expires_at, status
    (1, ago(days=400), ago(days=35), "delivered"),  # expired
    (2, ago(days=10), ahead(days=355), "delivered"),  # live
    (3, ago(days=366), None, "delivered"),  # no expiry: 365 days after delivery → expired
    (4, ago(days=364), None, "delivered"),  # no expiry, delivered 364 days ago: live
    (5, None, None, "delivered"),  # bad row: no expiry, never delivered
    (6, ago(days=500), ago(days=100), "expired"),  # already expired: untouched
    (7, ago(days=30), ago(seconds=1), "approved"),  # expired, any status
    (8, ago(days=30), ago(days=1), "delivered"),  # expired
]
EXPIRING = {1, 3, 7, 8}


@pytest.fixture
def deliverables(engine):
    with engine.begin() as connection:
        connection.execute(
            insert(schema.deliverables),
            [
                {
                    "id": id,
                    "project_id": 1,
                    "delivered_at": at(delivered),
                    "expires_at": at(expires),
                    "status": status,
                }
                for id, delivered, expires, status in DELIVERABLES
            ],
        )
    return engine


def _statuses(engine):
    return column(engine, schema.deliverables, "status")


def _expected_statuses():
    return {id: "expired" if id in EXPIRING else status for id, _, _, status in DELIVERABLES}


def _deliverables(database, **config):
    return run_job(deliverable_expiry, "expire_deliverables", database, **config)


def test_deliverables_past_expiry_marked_expired(deliverables, database):
    changed, metadata = _deliverables(database, batch_size=2)
    assert _statuses(deliverables) == _expected_statuses()
    assert changed == 4
    assert metadata["deliverables_expired_changed"] == 3
    assert metadata["deliverables_expired_after_delivery_changed"] == 1
    assert metadata["deliverables_skipped_no_expiry"] == 1


def test_deliverables_dry_run_then_second_run(deliverables, database):
    before = _statuses(deliverables)
    changed, metadata = _deliverables(database, dry_run=True)
    assert changed == 0 and metadata["rows_matched"] == 4
    assert _statuses(deliverables) == before
    assert _deliverables(database)[0] == 4
    changed, metadata = _deliverables(database)
    assert changed == 0 and metadata["rows_changed"] == 0
    assert metadata["deliverables_skipped_no_expiry"] == 1


def test_deliverables_access_days_override(deliverables, database):
    _deliverables(database, access_days=300)
    assert _statuses(deliverables)[4] == "expired"


def test_deliverables_crash_half_way_then_rerun_finishes(deliverables):
    config = DeliverableExpiryConfig(batch_size=2)
    with pytest.raises(Crash):
        mark_deliverables_expired(deliverables, config, utcnow(), crash_after_first_batch)
    assert sum(s == "expired" for s in _statuses(deliverables).values()) == 1 + 2
    assert mark_deliverables_expired(deliverables, config, utcnow()).rows_changed == 2
    assert _statuses(deliverables) == _expected_statuses()


def test_deliverables_concurrent_run_does_not_act(deliverables, database):
    before = _statuses(deliverables)
    with database.job_lock("deliverable_expiry"):
        assert _deliverables(database)[0] == 0
    assert _statuses(deliverables) == before
