"""Malformed app rows in every table a job reads: every job and asset runs, skips them,
leaves them unchanged and reports them by kind (`bad_rows`); SQLite and Postgres."""

import os
from datetime import timedelta

import dagster as dg
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from ops_platform.assets.bonuses import og_daily_bonus
from ops_platform.assets.engagement import stream_rankings, user_trust_scores
from ops_platform.assets.games import leaderboards
from ops_platform.db import schema
from ops_platform.db.bad_rows import count_bad_rows, no_bad_rows_check
from ops_platform.db.engine import is_postgres, utcnow
from ops_platform.jobs.auth import token_cleanup, unverified_account_cleanup
from ops_platform.jobs.email import email_queue
from ops_platform.jobs.engagement import festival_activation, throne_expiry
from ops_platform.jobs.games import game_cleanup
from ops_platform.jobs.payments import payment_status_check, payment_status_sweep
from ops_platform.jobs.projects import deliverable_expiry
from ops_platform.jobs.realtime import realtime_publish
from ops_platform.jobs.reminders import overdue_payment_reminders
from ops_platform.jobs.secrets import secret_rotation
from ops_platform.jobs.sessions import session_cleanup
from ops_platform.resources.folders import Folders
from ops_platform.resources.mailer import Mailer
from ops_platform.resources.payments import PaymentProvider
from ops_platform.resources.realtime import RealtimePublisher
from tests.jobs.cleanup_helpers import output_metadata, run_job

REDIS_URL = os.environ.get("OPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

OLD = utcnow() - timedelta(days=400)


def _rows(engine, json_broken: str):
    """(table, rows) of malformed rows only; `json_broken` is JSON of the wrong shape (or,
    on SQLite, not JSON at all)."""
    return [
        ("og_tiers", [dict(id=1, level=1, price_coins=-500, duration_days=30)]),
        ("og_tiers", [dict(id=2, level=2, price_coins=900, duration_days=-7)]),
        ("og_tiers", [dict(id=3, level=3, price_coins=10**13, duration_days=0)]),
        (
            "users",
            [dict(id=1, email="a@x", og_level=1, og_tier_id=1, og_expires_at=None)]
            + [
                dict(
                    id=id,
                    email=f"{letter}@x",
                    og_level=id,
                    og_tier_id=id,
                    og_expires_at=OLD.replace(year=2999),
                )
                for id, letter in ((2, "b"), (3, "c"))
            ],
        ),
        ("users", [dict(id=4, email="d@x", coin_balance=-5, trust_score=5000)]),
        ("sessions", [dict(id=1, user_id=1, created_at=OLD, last_seen_at=OLD, expires_at=None)]),
        (
            "refresh_tokens",
            [dict(id=1, user_id=1, token_hash="h", created_at=OLD, expires_at=None)],
        ),
        (
            "password_reset_tokens",
            [dict(id=1, user_id=1, token_hash="h", created_at=OLD, expires_at=None)],
        ),
        ("deliverables", [dict(id=1, project_id=None, delivered_at=None, expires_at=None)]),
        ("payments", [dict(id=1, provider_ref="p1", amount_cents=-100, created_at=OLD)]),
        ("payments", [dict(id=2, provider_ref="p2", amount_cents=10**12, created_at=OLD)]),
        ("thrones", [dict(id=1, stream_id=1, total_coins=-3, expires_at=None, is_active=True)]),
        (
            "festivals",
            [
                dict(id=1, name="no end", start_at=OLD, end_at=None),
                dict(id=2, name="backwards", start_at=OLD, end_at=OLD - timedelta(days=1)),
            ],
        ),
        ("gifts", [dict(id=1, name="g", price_coins=-1, festival_id=1)]),
        ("game_sessions", [dict(id=1, game_type="g", player_address="p", started_at=None)]),
        (
            "leaderboard_entries",
            [
                dict(
                    id=1,
                    session_id=1,
                    game_type="g",
                    player_address="p",
                    score=-1,
                    created_at=utcnow(),
                )
            ],
        ),
        ("stream_events", [dict(id=1, stream_id=1, kind="gift", value=-2, created_at=OLD)]),
        ("reputation_events", [dict(id=1, user_id=4, kind="k", weight=10**9, created_at=OLD)]),
        (
            "notification_email_queue",
            [dict(id=1, user_id=1, scheduled_for=None, attempts=-1, status="pending")],
        ),
        ("realtime_events", [dict(id=1, channel="c", event="e", created_at=OLD)]),
        (
            "payment_reminders",
            [dict(id=1, project_id=1, kind="BALANCE_DUE", status="PENDING", scheduled_for=None)],
        ),
        (
            "secrets",
            [dict(id=1, name="s", value_ciphertext="x", status="active", expires_at=None)],
        ),
    ]


EXPECTED = {
    "og_tiers.negative_price_coins": 1,
    "og_tiers.negative_duration_days": 1,
    "og_tiers.zero_duration_days": 1,
    "og_tiers.absurd_price_coins": 1,
    "users.null_og_expires_at": 1,
    "users.negative_coin_balance": 1,
    "users.trust_score_out_of_range": 1,
    "sessions.null_expires_at": 1,
    "refresh_tokens.null_expires_at": 1,
    "password_reset_tokens.null_expires_at": 1,
    "deliverables.null_expires_and_delivered_at": 1,
    "payments.negative_amount_cents": 1,
    "payments.absurd_amount_cents": 1,
    "thrones.null_expires_at": 1,
    "thrones.negative_total_coins": 1,
    "festivals.null_start_or_end_at": 1,
    "festivals.end_before_start": 1,
    "gifts.negative_price_coins": 1,
    "game_sessions.null_started_at": 1,
    "leaderboard_entries.negative_score": 1,
    "stream_events.negative_value": 1,
    "reputation_events.absurd_weight": 1,
    "payment_reminders.null_scheduled_for": 1,
    "secrets.null_expires_at": 1,
    "notification_email_queue.null_scheduled_for": 1,
    "notification_email_queue.negative_attempts": 1,
    "notification_email_queue.notification_ids_not_a_list": 1,
}


def _snapshot(engine) -> dict:
    with engine.connect() as connection:
        return {
            # Raw rows: a broken JSON value must not be parsed by the snapshot itself.
            name: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {name}"))))
            for name in {table for table, _ in _rows(engine, "")}
        }


@pytest.fixture
def malformed(engine):
    broken = '{"not": "a list"}' if is_postgres(engine) else "[1, 2"
    with engine.begin() as connection:
        for table, rows in _rows(engine, broken):
            connection.execute(schema.metadata.tables[table].insert(), rows)
        # Written as the app would: text straight into the JSON columns.
        connection.execute(
            text("UPDATE notification_email_queue SET notification_ids = :v"), {"v": broken}
        )
        payload = '"just a string"' if is_postgres(engine) else "{broken"
        connection.execute(text("UPDATE realtime_events SET payload = :v"), {"v": payload})
    return engine


def _expected(engine) -> dict:
    # A Postgres json column cannot hold text that is not JSON.
    return EXPECTED if is_postgres(engine) else EXPECTED | {"realtime_events.payload_not_json": 1}


def test_every_kind_is_counted(malformed):
    assert count_bad_rows(malformed, schema.metadata.tables) == _expected(malformed)


@pytest.mark.parametrize(
    ("job", "op", "config", "kinds"),
    [
        (session_cleanup, "cleanup_sessions", {}, {"sessions.null_expires_at"}),
        (
            unverified_account_cleanup,
            "cleanup_unverified_accounts",
            {"retention_days": 1},
            {
                "users.null_og_expires_at",
                "users.negative_coin_balance",
                "users.trust_score_out_of_range",
            },
        ),
        (
            token_cleanup,
            "cleanup_tokens",
            {},
            {"refresh_tokens.null_expires_at", "password_reset_tokens.null_expires_at"},
        ),
        (
            deliverable_expiry,
            "expire_deliverables",
            {},
            {"deliverables.null_expires_and_delivered_at"},
        ),
        (
            throne_expiry,
            "expire_thrones",
            {},
            {"thrones.null_expires_at", "thrones.negative_total_coins"},
        ),
        (
            festival_activation,
            "activate_festivals",
            {},
            {
                "festivals.null_start_or_end_at",
                "festivals.end_before_start",
                "gifts.negative_price_coins",
            },
        ),
        (
            game_cleanup,
            "cleanup_games",
            {},
            {"game_sessions.null_started_at", "leaderboard_entries.negative_score"},
        ),
    ],
)
def test_jobs_skip_and_report_bad_rows(malformed, database, job, op, config, kinds):
    before = _snapshot(malformed)
    _, metadata = run_job(job, op, database, **config)
    assert set(metadata["bad_rows"]) == kinds
    assert metadata["bad_rows_total"] == len(kinds)
    after = _snapshot(malformed)
    for table in {kind.split(".")[0] for kind in kinds}:
        assert after[table] == before[table], f"{job.name} changed a bad row of {table}"


def test_og_daily_bonus_skips_bad_tiers_and_users(malformed, database):
    partition = og_daily_bonus.partitions_def.get_last_partition_key()
    before = _snapshot(malformed)
    result = dg.materialize(
        [og_daily_bonus], partition_key=partition, resources={"database": database}
    )
    assert result.success
    metadata = result.asset_materializations_for_node("og_daily_bonus")[0].metadata
    assert metadata["credited"].value == 0
    assert set(metadata["bad_rows"].value) == {
        k for k in EXPECTED if k.startswith(("users.", "og_tiers."))
    }
    after = _snapshot(malformed)
    assert after["users"] == before["users"] and after["og_tiers"] == before["og_tiers"]


def _output_metadata(result) -> dict:
    assert result.success
    return output_metadata(result)


@pytest.fixture
def resources(database, tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_SECRETS_KEY", Fernet.generate_key().decode())
    return {
        "database": database,
        "mailer": Mailer(outbox_dir=str(tmp_path / "outbox")),
        "payments": PaymentProvider(),  # the built-in simulator
        "realtime": RealtimePublisher(url=REDIS_URL),
        "folders": Folders(data_dir=str(tmp_path), log_dir=str(tmp_path), log_patterns=["*.log"]),
    }


@pytest.mark.parametrize(
    ("job", "kinds"),
    [
        (
            email_queue,
            {
                "notification_email_queue.null_scheduled_for",
                "notification_email_queue.negative_attempts",
                "notification_email_queue.notification_ids_not_a_list",
            },
        ),
        (payment_status_sweep, {"payments.negative_amount_cents", "payments.absurd_amount_cents"}),
        (payment_status_check, {"payments.negative_amount_cents", "payments.absurd_amount_cents"}),
        (overdue_payment_reminders, {"payment_reminders.null_scheduled_for"}),
        (secret_rotation, {"secrets.null_expires_at"}),
        (realtime_publish, {"realtime_events.payload_not_json"}),
    ],
)
def test_service_jobs_run_and_report_bad_rows(malformed, resources, job, kinds):
    if job is realtime_publish:
        _need_redis()
        if is_postgres(malformed):
            kinds = set()
    wanted = {key: resources[key] for key in job.required_resource_keys if key in resources}
    before = _snapshot(malformed)
    metadata = _output_metadata(job.execute_in_process(resources=wanted))
    assert set(metadata["bad_rows"]) == kinds
    assert metadata["bad_rows_total"] == len(kinds)
    after = _snapshot(malformed)
    for table in {kind.split(".")[0] for kind in kinds}:
        assert after[table] == before[table], f"{job.name} changed a bad row of {table}"


def _need_redis():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")


@pytest.mark.parametrize(
    ("asset", "kinds"),
    [
        (stream_rankings, {"stream_events.negative_value"}),
        (user_trust_scores, {"reputation_events.absurd_weight"}),
        (leaderboards, {"leaderboard_entries.negative_score"}),
    ],
)
def test_assets_run_and_report_bad_rows(malformed, database, asset, kinds):
    before = _snapshot(malformed)
    result = dg.materialize([asset], resources={"database": database})
    assert result.success
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    assert set(materialization.metadata["bad_rows"].value) == kinds
    after = _snapshot(malformed)
    for table in {kind.split(".")[0] for kind in kinds}:
        assert after[table] == before[table], f"{asset.op.name} changed a bad row of {table}"


def test_an_absurd_weight_does_not_pin_a_trust_score(malformed, database):
    dg.materialize([user_trust_scores], resources={"database": database})
    with malformed.connect() as connection:
        score = connection.execute(text("SELECT trust_score FROM users WHERE id = 4")).scalar()
    assert float(score) == 50.0  # the neutral base: the only event is a bad row


def test_the_check_warns_while_malformed_rows_exist(malformed, database):
    check = no_bad_rows_check(user_trust_scores, "user_trust_scores")
    result = dg.materialize([user_trust_scores, check], resources={"database": database})
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["bad_rows_total"].value == 1
    assert result.success  # a warning, never a failed run
