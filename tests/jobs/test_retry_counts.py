"""Counts across a retry: after a transient fault and a successful retry, metadata and logs
report what the whole run did (every attempt), not only its last attempt."""

from datetime import timedelta

import dagster as dg
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from ops_platform.db import batching, schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.sessions import session_cleanup
from tests.jobs.cleanup_helpers import output_metadata

EXPIRED, LIVE = 60, 5


def _seed(engine) -> None:
    now = utcnow()
    rows = [
        {
            "id": n,
            "user_id": n,
            "kind": "user",
            "created_at": now - timedelta(days=2),
            "last_seen_at": now - timedelta(hours=1),
            "expires_at": now + (timedelta(days=1) if n > EXPIRED else -timedelta(hours=1)),
        }
        for n in range(1, EXPIRED + LIVE + 1)
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.sessions), rows)


def test_rows_committed_before_a_transient_fault_count_in_the_run(engine, database, monkeypatch):
    _seed(engine)
    real_delete = batching.delete_batch
    calls = {"n": 0}

    def lose_the_connection_on_the_third_batch(connection, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OperationalError("DELETE FROM sessions", {}, Exception("server closed"))
        return real_delete(connection, *args, **kwargs)

    monkeypatch.setattr(batching, "delete_batch", lose_the_connection_on_the_third_batch)
    instance = dg.DagsterInstance.ephemeral()
    config = {"batch_size": 10, "confirm_large": True}
    result = session_cleanup.execute_in_process(
        run_config={"ops": {"cleanup_sessions": {"config": config}}},
        resources={"database": database},
        instance=instance,
    )
    assert result.success
    with engine.connect() as connection:
        left = set(connection.execute(select(schema.sessions.c.id)).scalars())
    assert left == set(range(EXPIRED + 1, EXPIRED + LIVE + 1))

    metadata = output_metadata(result)
    assert metadata["rows_changed"] == metadata["sessions_expired_changed"] == EXPIRED
    assert metadata["attempts"] == 2
    earlier = metadata["rows_changed_by_earlier_attempts"]
    assert 0 < earlier < EXPIRED  # the first attempt's committed batches are counted
    assert result.output_for_node("cleanup_sessions") == EXPIRED
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(f"changed {EXPIRED} rows (sessions_expired={EXPIRED})" in m for m in messages)
    assert any(f"({earlier} rows committed by this attempt count" in m for m in messages)
