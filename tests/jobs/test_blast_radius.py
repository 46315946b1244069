"""The blast-radius gate on session_cleanup: a run that would empty the table changes nothing,
fails with the figures and the override, and alerts once; confirm_large overrides it; a
normal day passes once history builds up, and a day far over the usual is refused."""

import json
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import func, insert, select

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs._gate import Preview, judge, limits
from ops_platform.jobs.auth import UnverifiedAccountCleanupConfig
from ops_platform.jobs.sessions import session_cleanup
from ops_platform.resources.alerts import Alerts
from ops_platform.schedules.catalog import Gate
from tests.jobs.cleanup_helpers import output_metadata
from tests.sensors.test_alerting import alert_on_failure


def add_sessions(engine, first_id: int, expired: int, live: int) -> None:
    now = utcnow()
    rows = [
        {
            "id": first_id + n,
            "user_id": n % 97 + 1,
            "kind": "user",
            "created_at": now - timedelta(days=2),
            "last_seen_at": now - timedelta(hours=1),
            "expires_at": now - timedelta(hours=1) if n < expired else now + timedelta(days=1),
            "revoked_at": None,
        }
        for n in range(expired + live)
    ]
    with engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(insert(schema.sessions), rows[start : start + 5000])


def count(engine, expired_only=False) -> int:
    query = select(func.count()).select_from(schema.sessions)
    if expired_only:
        query = query.where(schema.sessions.c.expires_at < utcnow())
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def run(instance, database, **config):
    return session_cleanup.execute_in_process(
        run_config={"ops": {"cleanup_sessions": {"config": {"mode": "light", **config}}}},
        resources={"database": database},
        instance=instance,
        raise_on_error=False,
    )


def step_failure(result):
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    metadata = failure.event_specific_data.user_failure_data.metadata
    return error.message, {key: value.value for key, value in metadata.items()}


def alert_lines(alerts: Alerts) -> list[dict]:
    with open(alerts.log_file) as file:
        return [json.loads(line) for line in file]


def test_a_run_that_would_delete_90_percent_is_refused_then_confirmed(database, tmp_path):
    engine = database.engine
    add_sessions(engine, 1, expired=18_000, live=2_000)
    alerts = Alerts(log_file=str(tmp_path / "alerts.log"))
    with dg.DagsterInstance.ephemeral() as instance:
        refused = run(instance, database)
        assert not refused.success
        assert count(engine) == 20_000  # nothing deleted
        message, metadata = step_failure(refused)
        assert "refused by the blast-radius gate; nothing was changed" in message
        assert "18,000 of the 20,000 rows of sessions (90%; max_fraction 0.5)" in message
        assert "confirm_large: true" in message
        assert "ops: {cleanup_sessions: {config: {confirm_large: true}}}" in message
        assert metadata["gate"] == "refused"
        assert metadata["gate_rows"] == 18_000
        assert metadata["gate_sessions_size"] == 20_000
        assert metadata["sample_ids"] == {"sessions_expired": list(range(1, 11))}

        alert_on_failure(instance, refused, alerts)
        [alert] = alert_lines(alerts)  # one alert, with the figures and the override
        assert alert["title"] == "session_cleanup failed"
        assert "18,000 of the 20,000 rows" in alert["text"]
        assert "confirm_large: true" in alert["text"]

        confirmed = run(instance, database, confirm_large=True)
        assert confirmed.success
        assert confirmed.output_for_node("cleanup_sessions") == 18_000
        assert count(engine) == 2_000
        assert count(engine, expired_only=True) == 0
        assert output_metadata(confirmed)["gate"] == "refused, overridden by confirm_large"


def test_history_lets_a_normal_day_through_and_refuses_ten_times_more(database):
    engine = database.engine
    add_sessions(engine, 1, expired=0, live=30_000)
    next_id = 100_000
    with dg.DagsterInstance.ephemeral() as instance:
        for day_expired in (1_400, 1_500, 1_600):  # history: ~1,500 a run
            add_sessions(engine, next_id, expired=day_expired, live=0)
            next_id += 10_000
            result = run(instance, database)
            assert result.success
            assert output_metadata(result)["gate"] == "passed"

        add_sessions(engine, next_id, expired=2_000, live=0)  # a normal day
        next_id += 10_000
        normal = run(instance, database)
        assert normal.success and normal.output_for_node("cleanup_sessions") == 2_000
        figures = output_metadata(normal)
        assert (figures["gate"], figures["gate_history_median"]) == ("passed", 1_500)
        assert figures["gate_scope"] == "mode=light"

        add_sessions(engine, next_id, expired=16_000, live=0)  # 35% of the table, 10x+ the median
        refused = run(instance, database)
        assert not refused.success
        message, _ = step_failure(refused)
        assert "16,000 rows, 10.3x the median 1,550 of its last 4 successful runs" in message
        assert "of the" not in message.split(" and ")[0]  # the fraction (35%) is fine
        assert count(engine, expired_only=True) == 16_000

        # A deep run has no history of its own yet: only the fraction applies to it.
        deep = run(instance, database, mode="deep")
        assert deep.success and output_metadata(deep)["gate_history_runs"] == 0


def test_dry_run_tells_what_the_gate_would_do_and_limits_come_from_run_config(database):
    add_sessions(database.engine, 1, expired=1_200, live=800)
    with dg.DagsterInstance.ephemeral() as instance:
        dry = run(instance, database, dry_run=True)
        assert dry.success
        assert output_metadata(dry)["gate"].startswith("a real run would be refused: 1,200 of")
        assert run(instance, database, gate_min_rows=5_000).success  # under the gate's floor
    assert count(database.engine) == 800


@pytest.mark.parametrize(
    "rows, size, history, refused",
    [
        (999, 999, [], False),  # under gate_min_rows: never refused
        (1_000, 1_000, [], True),  # the whole table
        (1_000, 2_000, [10, 10], False),  # half the table; 2 runs are too little history
        (1_000, 100_000, [10, 200, 90], True),  # 11x the median 90
        (1_000, 100_000, [100, 100, 100], False),  # exactly 10x
        (1_000, 100_000, [0, 0, 0, 5], True),  # usually nothing at all
    ],
)
def test_judge(rows, size, history, refused):
    verdict = judge(Preview(rows, {"t": rows}), {"t": size}, history, Gate())
    assert verdict.refused is refused


def test_limits_come_from_run_config_then_the_schedule_row_then_the_defaults():
    row_gate, _ = limits("unverified_account_cleanup", None, UnverifiedAccountCleanupConfig())
    assert row_gate == Gate(max_fraction=0.2)  # the schedule table's own limit
    gate, pacing = limits(
        "unverified_account_cleanup",
        "unverified_account_cleanup_daily",
        UnverifiedAccountCleanupConfig(max_fraction=0.4, lock_timeout_seconds=0.25),
    )
    assert (gate.max_fraction, gate.gate_min_rows, gate.max_factor) == (0.4, 1000, 10.0)
    assert (pacing.lock_timeout_seconds, pacing.target_batch_seconds) == (0.25, 0.5)
    assert limits("no_such_job", None, UnverifiedAccountCleanupConfig())[0] == Gate()


GUARDED = {
    "session_cleanup": "cleanup_sessions",
    "token_cleanup": "cleanup_tokens",
    "unverified_account_cleanup": "cleanup_unverified_accounts",
    "team_member_cleanup": "cleanup_team_members",
    "deliverable_expiry": "expire_deliverables",
    "throne_expiry": "expire_thrones",
    "festival_activation": "activate_festivals",
    "game_cleanup": "cleanup_games",
    "secret_rotation": "rotate_expired_secrets",
    "orphaned_file_cleanup": "move_orphaned_files_to_trash",
}


@pytest.mark.parametrize("job_name", sorted(GUARDED))
def test_every_job_that_changes_app_rows_takes_the_gate_keys(job_name):
    from ops_platform.definitions import defs

    job = defs.get_job_def(job_name)
    keys = {"confirm_large": True, "gate_min_rows": 10, "max_fraction": 0.9, "max_factor": 3}
    if job_name != "orphaned_file_cleanup":  # object-store pages: no batch transactions
        keys.update(target_batch_seconds=0.2, max_replica_lag_seconds=5, lock_timeout_seconds=2)
    config = {"ops": {GUARDED[job_name]: {"config": keys}}}
    assert dg.validate_run_config(job, config)


def test_outbox_events_a_run_would_add_are_not_counted_as_changed_rows(database):
    from ops_platform.jobs.engagement import throne_expiry

    now = utcnow()
    rows = [
        {
            "id": n,
            "stream_id": n,
            "holder_id": n,
            "total_coins": 10,
            "started_at": now - timedelta(days=1),
            "expires_at": now - timedelta(minutes=1) if n <= 1_500 else now + timedelta(days=1),
            "is_active": True,
        }
        for n in range(1, 2_001)
    ]
    with database.engine.begin() as connection:
        connection.execute(insert(schema.thrones), rows)
    with dg.DagsterInstance.ephemeral() as instance:
        result = throne_expiry.execute_in_process(
            resources={"database": database}, instance=instance, raise_on_error=False
        )
    assert not result.success
    message, metadata = step_failure(result)
    assert "1,500 of the 2,000 rows of thrones (75%" in message
    assert metadata["gate_rows"] == 3_000  # 1,500 updates and their 1,500 events
    assert "gate_realtime_events_fraction" not in metadata
    with database.engine.connect() as connection:
        active = connection.execute(
            select(func.count()).select_from(schema.thrones).where(schema.thrones.c.is_active)
        ).scalar_one()
    assert active == 2_000
