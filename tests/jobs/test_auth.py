"""token_cleanup and unverified_account_cleanup on SQLite and Postgres."""

import dagster as dg
import pytest
from sqlalchemy import insert

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.db.migrate import upgrade
from ops_platform.jobs.auth import (
    TokenCleanupConfig,
    UnverifiedAccountCleanupConfig,
    delete_expired_tokens,
    delete_unverified_accounts,
    token_cleanup,
    unverified_account_cleanup,
)
from ops_platform.resources.database import Database
from tests.jobs.cleanup_helpers import Crash, ago, ahead, at, crash_after_first_batch, ids, run_job

TOKENS = {
    # table: {id: expires_at}; ids ending in 1 are past expiry + retention (deleted).
    "refresh_tokens": {
        11: ago(days=8),
        12: ago(days=6),
        13: ahead(days=1),
        14: None,
        15: ago(days=30),
    },
    "password_reset_tokens": {21: ago(hours=25), 22: ago(hours=23), 23: ahead(hours=1), 24: None},
    "email_verification_tokens": {31: ago(minutes=1), 33: ahead(days=1), 34: None},
}
GONE = {
    "refresh_tokens": {11, 15},
    "password_reset_tokens": {21},
    "email_verification_tokens": {31},
}


@pytest.fixture
def tokens(engine):
    with engine.begin() as connection:
        for table, rows in TOKENS.items():
            connection.execute(
                insert(schema.metadata.tables[table]),
                [
                    {"id": id, "user_id": 1, "token_hash": f"h{id}", "expires_at": at(expires)}
                    for id, expires in rows.items()
                ],
            )
    return engine


def _token_ids(engine):
    return {table: ids(engine, schema.metadata.tables[table]) for table in TOKENS}


def _expected_after(kinds=("refresh_tokens", "password_reset_tokens", "email_verification_tokens")):
    return {
        table: set(rows) - (GONE[table] if table in kinds else set())
        for table, rows in TOKENS.items()
    }


def _tokens(database, **config):
    return run_job(token_cleanup, "cleanup_tokens", database, **config)


def test_tokens_past_retention_deleted_others_kept(tokens, database):
    changed, metadata = _tokens(database, batch_size=1)
    assert _token_ids(tokens) == _expected_after()
    assert changed == metadata["rows_changed"] == 4
    assert metadata["refresh_tokens_expired_changed"] == 2
    assert metadata["refresh_tokens_skipped_null_expiry"] == 1
    assert metadata["password_reset_tokens_skipped_null_expiry"] == 1


def test_one_kind_per_schedule(tokens, database):
    changed, _ = _tokens(database, kinds=["password_reset"])
    assert changed == 1
    assert _token_ids(tokens) == _expected_after(kinds=("password_reset_tokens",))


def test_retention_overrides(tokens, database):
    _tokens(
        database,
        kinds=["refresh", "password_reset"],
        refresh_retention_days=0,
        password_reset_retention_hours=0,
    )
    remaining = _token_ids(tokens)
    assert remaining["refresh_tokens"] == {13, 14}
    assert remaining["password_reset_tokens"] == {23, 24}


def test_token_dry_run_changes_nothing_and_counts_exactly(tokens, database):
    changed, metadata = _tokens(database, dry_run=True)
    assert changed == 0 and metadata["rows_changed"] == 0
    assert metadata["rows_matched"] == 4
    assert _token_ids(tokens) == {table: set(rows) for table, rows in TOKENS.items()}
    assert _tokens(database)[0] == 4


def test_token_second_run_changes_nothing(tokens, database):
    assert _tokens(database)[0] == 4
    changed, metadata = _tokens(database)
    assert changed == 0 and metadata["rows_changed"] == 0


def test_token_crash_half_way_then_rerun_finishes(tokens):
    config = TokenCleanupConfig(kinds=["refresh"], batch_size=1)
    with pytest.raises(Crash):
        delete_expired_tokens(tokens, config, utcnow(), crash_after_first_batch)
    assert len(_token_ids(tokens)["refresh_tokens"] & GONE["refresh_tokens"]) == 1
    outcome = delete_expired_tokens(tokens, config, utcnow())
    assert outcome.rows_changed == 1
    assert _token_ids(tokens)["refresh_tokens"] == {12, 13, 14}


def test_token_concurrent_run_does_not_act(tokens, database):
    with database.job_lock("token_cleanup"):
        changed, metadata = _tokens(database)
    assert changed == 0 and metadata["rows_changed"] == 0
    assert _token_ids(tokens) == {table: set(rows) for table, rows in TOKENS.items()}


def test_unknown_token_kind_is_a_clear_error(tmp_path):
    # Config is checked before any row is touched: one database kind is enough. (Upgraded:
    # a run first checks that the tables its job uses are there.)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    database = Database(url=url)
    with pytest.raises(
        dg.DagsterInvalidConfigError, match="not in enum type TokenKind got cookies"
    ):
        _tokens(database, kinds=["cookies"])
    with pytest.raises(dg.DagsterInvalidConfigError, match="kinds must name at least one of"):
        _tokens(database, kinds=[])
    with pytest.raises(Exception, match="greater than 0"):
        _tokens(database, batch_size=0)
    with pytest.raises(dg.DagsterInvalidConfigError):
        _tokens(database, kinds="refresh")


# --- unverified accounts ------------------------------------------------------------------

USERS = [
    # id, created, verified, coins
    (1, ago(days=31), None, 0),  # deleted
    (2, ago(days=29), None, 0),  # too recent: kept
    (3, ago(days=100), ago(days=99), 0),  # verified: kept
    (4, ago(days=40), None, 500),  # holds coins: kept and counted
    (5, ago(days=35), None, 0),  # deleted
    (6, ago(days=60), None, 0),  # deleted
]
DELETED_USERS = {1, 5, 6}


@pytest.fixture
def accounts(engine):
    with engine.begin() as connection:
        connection.execute(
            insert(schema.users),
            [
                {
                    "id": id,
                    "email": f"u{id}@example.com",
                    "created_at": at(created),
                    "email_verified_at": at(verified),
                    "coin_balance": coins,
                }
                for id, created, verified, coins in USERS
            ],
        )
        # Two sessions and one token of each kind per user.
        connection.execute(
            insert(schema.sessions),
            [
                {"id": user * 10 + n, "user_id": user, "expires_at": at(ahead(days=1))}
                for user in range(1, 7)
                for n in (1, 2)
            ],
        )
        for table in (
            schema.refresh_tokens,
            schema.email_verification_tokens,
            schema.password_reset_tokens,
        ):
            connection.execute(
                insert(table),
                [
                    {
                        "id": user,
                        "user_id": user,
                        "token_hash": "h",
                        "expires_at": at(ahead(days=1)),
                    }
                    for user in range(1, 7)
                ],
            )
    return engine


def _user_rows(engine):
    return {
        "users": ids(engine, schema.users),
        "sessions": {id // 10 for id in ids(engine, schema.sessions)},
        **{
            t.name: ids(engine, t)
            for t in (
                schema.refresh_tokens,
                schema.email_verification_tokens,
                schema.password_reset_tokens,
            )
        },
    }


def _accounts(database, **config):
    return run_job(unverified_account_cleanup, "cleanup_unverified_accounts", database, **config)


def test_unverified_accounts_deleted_with_sessions_and_tokens(accounts, database):
    changed, metadata = _accounts(database, batch_size=2)
    kept = {2, 3, 4}
    assert _user_rows(accounts) == {name: kept for name in _user_rows(accounts)}
    assert metadata["users_unverified_changed"] == 3
    assert metadata["sessions_of_deleted_users_changed"] == 6
    assert metadata["refresh_tokens_of_deleted_users_changed"] == 3
    assert changed == 3 + 6 + 3 * 3
    assert metadata["users_skipped_holding_coins"] == 1


def test_unverified_dry_run_changes_nothing_and_counts_exactly(accounts, database):
    before = _user_rows(accounts)
    changed, metadata = _accounts(database, dry_run=True)
    assert changed == 0 and _user_rows(accounts) == before
    assert metadata["users_unverified_matched"] == 3
    assert metadata["sessions_of_deleted_users_matched"] == 6
    assert metadata["rows_matched"] == _accounts(database)[1]["rows_changed"] == 18


def test_unverified_second_run_changes_nothing(accounts, database):
    _accounts(database)
    changed, metadata = _accounts(database)
    assert changed == 0 and metadata["rows_changed"] == 0


def test_unverified_retention_override(accounts, database):
    _accounts(database, retention_days=45)
    assert ids(accounts, schema.users) == {1, 2, 3, 4, 5}


def test_unverified_crash_half_way_then_rerun_finishes(accounts):
    config = UnverifiedAccountCleanupConfig(batch_size=1)
    with pytest.raises(Crash):
        delete_unverified_accounts(accounts, config, utcnow(), crash_after_first_batch)
    rows = _user_rows(accounts)
    # The first user went with all their rows, in one transaction.
    assert rows["users"] == {2, 3, 4, 5, 6}
    assert all(table_rows == rows["users"] for table_rows in rows.values())
    outcome = delete_unverified_accounts(accounts, config, utcnow())
    assert outcome.changed("users_unverified") == 2
    assert _user_rows(accounts) == {name: {2, 3, 4} for name in rows}


def test_unverified_concurrent_run_does_not_act(accounts, database):
    before = _user_rows(accounts)
    with database.job_lock("unverified_account_cleanup"):
        changed, _ = _accounts(database)
    assert changed == 0 and _user_rows(accounts) == before
