"""The synthetic data set: every contract table filled, reproducible, both sides of every
boundary the jobs look at, and the app can keep inserting afterwards."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from ops_platform.db import schema
from ops_platform.db.engine import make_engine, state_table
from ops_platform.db.migrate import upgrade
from ops_platform.db.seed import seed_database

NOW = datetime(2026, 3, 18, 14, 25, 7, tzinfo=UTC)
USERS = 50


@pytest.fixture
def seeded(db_url):
    counts = seed_database(db_url, USERS, seed=7, progress=None, now=NOW)
    engine = make_engine(db_url)
    yield engine, counts
    engine.dispose()


def _scalar(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


def _exists(engine, table, where, **params) -> bool:
    return _scalar(engine, f"SELECT count(*) FROM {table} WHERE {where}", **params) > 0


def test_every_contract_table_is_filled_and_counted(seeded):
    engine, counts = seeded
    assert set(schema.CONTRACT_TABLES) <= set(counts)
    for table in schema.CONTRACT_TABLES:
        stored = _scalar(engine, f"SELECT count(*) FROM {table}")
        assert stored == counts[table], table
        if table == "security_alerts":
            assert stored == 0  # the monitor writes it
        else:
            assert stored > 0, f"{table} is empty"
    assert counts["users"] == USERS
    assert counts["sessions"] >= 2 * USERS


def test_same_seed_same_data_and_reseeding_replaces_it(db_url):
    def emails():
        engine = make_engine(db_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT email FROM users ORDER BY id")).scalars().all()
        engine.dispose()
        return rows

    first = seed_database(db_url, USERS, seed=3, progress=None, now=NOW)
    first_emails = emails()
    second = seed_database(db_url, USERS, seed=3, progress=None, now=NOW)
    assert second == first  # the second run emptied the tables first: nothing doubled
    assert emails() == first_emails
    assert all(e.endswith(("example.com", "example.org", "example.net")) for e in first_emails)
    seed_database(db_url, USERS, seed=4, progress=None, now=NOW)
    assert emails() != first_emails


def test_rows_on_both_sides_of_every_boundary(seeded):
    engine, _ = seeded
    now = NOW
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    retirements = state_table(engine, "secret_retirements")
    retire_after = f"(SELECT r.retire_after FROM {retirements} r WHERE r.secret_id = secrets.id)"
    checks = {
        # users: unverified past and inside the 30-day limit; OG active and lapsed
        "unverified_old": (
            "users",
            "email_verified_at IS NULL AND created_at < :t",
            {"t": ago(days=30)},
        ),
        "unverified_new": (
            "users",
            "email_verified_at IS NULL AND created_at > :t",
            {"t": ago(days=30)},
        ),
        "og_active": (
            "users",
            "og_level > 0 AND og_tier_id IS NOT NULL AND og_expires_at > :now",
            {},
        ),
        "og_lapsed": ("users", "og_level > 0 AND og_expires_at < :now", {}),
        # sessions
        "session_expired": ("sessions", "expires_at < :now", {}),
        "session_live": (
            "sessions",
            "expires_at > :now AND revoked_at IS NULL AND last_seen_at > :t",
            {"t": ago(days=30)},
        ),
        "session_revoked_old": ("sessions", "revoked_at < :t", {"t": ago(days=7)}),
        "session_revoked_new": ("sessions", "revoked_at > :t", {"t": ago(days=7)}),
        "session_idle": (
            "sessions",
            "expires_at > :now AND last_seen_at < :t",
            {"t": ago(days=30)},
        ),
        "session_user_no_expiry": ("sessions", "kind = 'user' AND expires_at IS NULL", {}),
        "session_player_stale": (
            "sessions",
            "kind = 'player' AND expires_at IS NULL AND last_seen_at < :t",
            {"t": ago(days=30)},
        ),
        "session_player_active": (
            "sessions",
            "kind = 'player' AND last_seen_at > :t",
            {"t": ago(days=30)},
        ),
        # tokens: refresh kept 7 days, reset 24 h past expiry
        "refresh_live": ("refresh_tokens", "expires_at > :now", {}),
        "refresh_kept": (
            "refresh_tokens",
            "expires_at < :now AND expires_at > :t",
            {"t": ago(days=7)},
        ),
        "refresh_gone": ("refresh_tokens", "expires_at < :t", {"t": ago(days=7)}),
        "reset_live": ("password_reset_tokens", "expires_at > :now", {}),
        "reset_kept": (
            "password_reset_tokens",
            "expires_at < :now AND expires_at > :t",
            {"t": ago(hours=24)},
        ),
        "reset_gone": ("password_reset_tokens", "expires_at < :t", {"t": ago(hours=24)}),
        "verification_live": ("email_verification_tokens", "expires_at > :now", {}),
        "verification_expired": ("email_verification_tokens", "expires_at < :now", {}),
        # secrets
        "secret_due": ("secrets", "status = 'active' AND expires_at < :now", {}),
        "secret_fine": ("secrets", "status = 'active' AND expires_at > :now", {}),
        "secret_retiring_due": ("secrets", f"status = 'retiring' AND {retire_after} < :now", {}),
        "secret_retiring_grace": ("secrets", f"status = 'retiring' AND {retire_after} > :now", {}),
        # payments
        "payment_due": (
            "payments",
            "status = 'pending' AND next_check_at <= :now AND created_at > :t",
            {"t": ago(minutes=30)},
        ),
        "payment_not_due": ("payments", "status = 'pending' AND next_check_at > :now", {}),
        "payment_too_old": (
            "payments",
            "status = 'pending' AND created_at < :t",
            {"t": ago(minutes=30)},
        ),
        "payment_settled": ("payments", "status = 'succeeded' AND settled_at IS NOT NULL", {}),
        # projects
        "member_removed_old": ("project_team", "removed_at < :t", {"t": ago(days=90)}),
        "member_removed_new": ("project_team", "removed_at > :t", {"t": ago(days=90)}),
        "primary_contact": (
            "project_team",
            "is_primary_contact = :yes AND removed_at IS NULL",
            {"yes": True},
        ),
        "balance_overdue": (
            "project_payment_status",
            "advance_paid = :yes AND advance_paid_at < :t AND balance_paid = :no",
            {"t": ago(days=3), "yes": True, "no": False},
        ),
        "advance_recent": (
            "project_payment_status",
            "advance_paid = :yes AND advance_paid_at > :t AND balance_paid = :no",
            {"t": ago(days=3), "yes": True, "no": False},
        ),
        "deliverable_past_expiry": (
            "deliverables",
            "status = 'delivered' AND expires_at < :now",
            {},
        ),
        "deliverable_live": ("deliverables", "status = 'delivered' AND expires_at > :now", {}),
        # notifications, outbox
        "email_due": (
            "notification_email_queue",
            "status = 'pending' AND scheduled_for <= :now",
            {},
        ),
        "email_future": (
            "notification_email_queue",
            "status = 'pending' AND scheduled_for > :now",
            {},
        ),
        "realtime_unpublished": ("realtime_events", "published_at IS NULL", {}),
        "realtime_published": ("realtime_events", "published_at IS NOT NULL", {}),
        # engagement
        "stream_live": ("streams", "is_live = :yes AND ended_at IS NULL", {"yes": True}),
        "stream_ended_recently": ("streams", "ended_at > :t", {"t": ago(hours=24)}),
        "stream_events_last_hour": ("stream_events", "created_at > :t", {"t": ago(hours=1)}),
        "stream_events_old": ("stream_events", "created_at < :t", {"t": ago(hours=24)}),
        "stream_rankings_stale": ("stream_rankings", "computed_at < :t", {"t": ago(hours=1)}),
        "throne_past_expiry": ("thrones", "is_active = :yes AND expires_at < :now", {"yes": True}),
        "throne_running": ("thrones", "is_active = :yes AND expires_at > :now", {"yes": True}),
        "festival_current_inactive": (
            "festivals",
            "start_at <= :now AND end_at >= :now AND is_active = :no",
            {"no": False},
        ),
        "festival_ended_active": ("festivals", "end_at < :now AND is_active = :yes", {"yes": True}),
        "festival_future": ("festivals", "start_at > :now", {}),
        # games
        "game_abandoned": (
            "game_sessions",
            "status = 'active' AND started_at < :t",
            {"t": ago(minutes=30)},
        ),
        "game_fresh": (
            "game_sessions",
            "status = 'active' AND started_at > :t",
            {"t": ago(minutes=30)},
        ),
        "entries_older_than_90_days": (
            "leaderboard_entries",
            "created_at < :t",
            {"t": ago(days=90)},
        ),
        "pool_open_for_past_period": (
            "prize_pools",
            "status = 'open' AND period_start < :today",
            {"today": now.date()},
        ),
        # learning
        "quiz_with_score": ("learning_events", "kind = 'quiz_submitted' AND score IS NOT NULL", {}),
        "course_started": ("learning_events", "kind = 'course_started'", {}),
        # files, security
        "upload_keys": ("stored_files", "s3_key LIKE 'uploads/%'", {}),
        "webhook_invalid_recent": (
            "webhook_events",
            "signature_valid = :no AND received_at > :t",
            {"t": ago(minutes=15), "no": False},
        ),
        "webhook_old": ("webhook_events", "received_at < :t", {"t": ago(minutes=15)}),
    }
    missing = [
        name
        for name, (table, where, params) in checks.items()
        if not _exists(engine, table, where, now=now, **params)
    ]
    assert missing == []


def test_games_cover_every_type_yesterday_last_week_and_orphans(seeded):
    engine, _ = seeded
    today = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC)
    last_monday = today - timedelta(days=today.weekday() + 7)
    with engine.connect() as connection:
        types = set(
            connection.execute(text("SELECT DISTINCT game_type FROM game_sessions")).scalars()
        )
        yesterday = set(
            connection.execute(
                text(
                    "SELECT DISTINCT game_type FROM leaderboard_entries WHERE created_at >= :a AND created_at < :b"
                ),
                {"a": today - timedelta(days=1), "b": today},
            ).scalars()
        )
        last_week = set(
            connection.execute(
                text(
                    "SELECT DISTINCT game_type FROM leaderboard_entries WHERE created_at >= :a AND created_at < :b"
                ),
                {"a": last_monday, "b": last_monday + timedelta(days=7)},
            ).scalars()
        )
        orphans = connection.execute(
            text(
                "SELECT count(*) FROM leaderboard_entries e LEFT JOIN game_sessions g ON g.id = e.session_id "
                "WHERE g.id IS NULL"
            )
        ).scalar_one()
    assert types == set(schema.GAME_TYPES)
    assert yesterday == set(schema.GAME_TYPES)
    assert last_week == set(schema.GAME_TYPES)
    assert orphans > 0


def test_learning_events_span_forty_days_including_yesterday(seeded):
    engine, _ = seeded
    today = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC)
    yesterday = _scalar(
        engine,
        "SELECT count(*) FROM learning_events WHERE created_at >= :a AND created_at < :b "
        "AND kind IN ('lesson_completed', 'quiz_submitted')",
        a=today - timedelta(days=1),
        b=today,
    )
    older = _scalar(
        engine,
        "SELECT count(*) FROM learning_events WHERE created_at < :t",
        t=today - timedelta(days=30),
    )
    completions = _scalar(
        engine,
        "SELECT count(*) FROM enrollments WHERE completed_at >= :a AND completed_at < :b",
        a=today - timedelta(days=1),
        b=today,
    )
    assert yesterday >= 2 and older > 0 and completions > 0


def test_email_batches_list_real_notifications_of_their_user(seeded):
    engine, _ = seeded
    with engine.connect() as connection:
        notifications = dict(
            connection.execute(text("SELECT id, user_id FROM notifications")).all()
        )
        batches = connection.execute(
            text("SELECT user_id, notification_ids FROM notification_email_queue")
        ).all()
    for user_id, ids in batches:
        ids = json.loads(ids) if isinstance(ids, str) else ids
        assert ids and all(notifications[i] == user_id for i in ids)


def test_webhook_attack_patterns_inside_the_last_fifteen_minutes(seeded):
    engine, _ = seeded
    since = NOW - timedelta(minutes=15)
    with engine.connect() as connection:
        busiest = (
            connection.execute(
                text(
                    "SELECT count(*) AS n FROM webhook_events WHERE received_at > :t GROUP BY source_ip ORDER BY n DESC"
                ),
                {"t": since},
            )
            .scalars()
            .first()
        )
        replayed = (
            connection.execute(
                text(
                    "SELECT count(*) AS n FROM webhook_events WHERE received_at > :t GROUP BY event_id ORDER BY n DESC"
                ),
                {"t": since},
            )
            .scalars()
            .first()
        )
    assert busiest >= 100
    assert replayed >= 2


def test_sqlite_timestamps_use_the_engine_text_form(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    seed_database(url, 10, progress=None, now=NOW)
    engine = create_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT created_at FROM sessions LIMIT 1")).scalar_one()
    engine.dispose()
    # the same form the engine's datetime adapter binds, so text comparisons are correct
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", stored)


def test_postgres_sequences_continue_after_the_seeded_ids(postgres_schema_url):
    upgrade(postgres_schema_url)
    counts = seed_database(postgres_schema_url, 20, progress=None, now=NOW)
    engine = make_engine(postgres_schema_url)
    with engine.begin() as connection:
        user_id = connection.execute(
            text("INSERT INTO users (email) VALUES ('new@example.com') RETURNING id")
        ).scalar_one()
        session_id = connection.execute(
            text("INSERT INTO sessions (user_id) VALUES (1) RETURNING id")
        ).scalar_one()
        event_id = connection.execute(
            text("INSERT INTO stream_events (stream_id, kind) VALUES (1, 'view') RETURNING id")
        ).scalar_one()
    engine.dispose()
    assert user_id == counts["users"] + 1
    assert session_id == counts["sessions"] + 1
    assert event_id == counts["stream_events"] + 1


def test_refuses_zero_users_and_a_missing_schema(tmp_path):
    with pytest.raises(ValueError, match="users must be at least 1"):
        seed_database(f"sqlite:///{tmp_path / 'a.db'}", 0, progress=None)
    with pytest.raises(RuntimeError, match="ops-platform db upgrade"):
        seed_database(f"sqlite:///{tmp_path / 'b.db'}", 5, progress=None)
