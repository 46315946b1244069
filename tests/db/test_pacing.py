"""Paced batches yield to the app's database (Postgres): they pause while a real streaming
replica lags and continue when it catches up, stop cleanly after the bounded wait, pause
while the app waits on a lock on their table, and never keep an app query waiting longer
than their lock_timeout. Batch sizes follow the target duration on both databases."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import text

from ops_platform.db.engine import make_engine, utcnow
from ops_platform.db.migrate import upgrade
from ops_platform.db.pacing import Pacer, Pacing, use_pacer
from ops_platform.jobs.sessions import SessionCleanupConfig, apply_session_cleanup_rules
from tests import pg_cluster

# Every 5th session is live, the others expired an hour ago.
LOAD = """
INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at)
SELECT g, g % 50 + 1, 'user', :now - interval '1 day', :now - interval '1 hour',
       CASE WHEN g % 5 = 0 THEN :now + interval '1 day' ELSE :now - interval '1 hour' END
FROM generate_series(1, CAST(:n AS integer)) AS g
"""


def load_sessions(engine, n: int) -> None:
    with engine.begin() as connection:
        connection.execute(text(LOAD), {"now": utcnow(), "n": n})


def remaining(engine) -> tuple[int, int]:
    """(expired sessions left, live sessions left)."""
    with engine.connect() as connection:
        return tuple(
            connection.execute(
                text(
                    "SELECT count(*) FILTER (WHERE expires_at < now()), "
                    "count(*) FILTER (WHERE expires_at >= now()) FROM sessions"
                )
            ).one()
        )


class Messages(list):
    def wait_for(self, fragment: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self):
                if fragment in message:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no message with {fragment!r} in {timeout}s: {self[-5:]}")


def cleanup_in_thread(engine, pacer: Pacer, **config) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def work():
        try:
            with use_pacer(pacer):
                outcome["results"], _ = apply_session_cleanup_rules(
                    engine, SessionCleanupConfig(**config), utcnow(), log=pacer.log
                )
        except BaseException as error:  # reported by the test thread
            outcome["error"] = error

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


def finish(thread, outcome, timeout: float = 120) -> list:
    thread.join(timeout)
    assert not thread.is_alive(), "cleanup did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["results"]


# --- a real streaming replica ---------------------------------------------------------------


@pytest.fixture
def replicated():
    """A primary of our own (wal_level=replica) with the app schema, and a streaming replica
    made by pg_basebackup -R; both stopped afterwards."""
    reason = pg_cluster.missing()
    if reason:
        if os.environ.get("OPS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"OPS_REQUIRE_POSTGRES=1 but no throw-away cluster can start: {reason}")
        pytest.skip(reason)
    with pg_cluster.cluster_folder() as root:
        primary = pg_cluster.start_primary(root)
        replica = None
        try:
            upgrade(primary.url)
            replica = pg_cluster.start_replica(primary, root)
            engines = make_engine(primary.url), make_engine(replica.url)
            yield engines
            for engine in engines:
                engine.dispose()
        finally:
            if replica:
                replica.stop()
            primary.stop()


def test_cleanup_pauses_while_the_replica_lags_and_stops_cleanly_then_continues(replicated):
    primary, replica = replicated
    load_sessions(primary, 25_000)  # 20,000 expired, 5,000 live

    def set_replay(action: str) -> None:
        with replica.connect() as connection:
            connection.execute(text(f"SELECT pg_wal_replay_{action}()"))

    # Replay stops after the first batch; batches pinned at 500 and spaced by the progress
    # callback so lag builds up while the run is still going.
    messages = Messages()

    def progress(message: str) -> None:
        if not messages:
            set_replay("pause")
        messages.append(message)
        time.sleep(0.05)

    base = {"max_replica_lag_seconds": 1.0, "poll_seconds": 0.2}
    pinned = {"min_batch_size": 500, "max_batch_size": 500}
    first = Pacer(Pacing(**base, **pinned, max_wait_seconds=2.0), log=progress)
    thread, outcome = cleanup_in_thread(primary, first, batch_size=500)
    [result] = finish(thread, outcome)
    messages.wait_for("pausing, replica replay_lag")
    assert first.stopped is not None, "the first run should stop after max_wait_seconds"
    assert "replay_lag" in first.stopped.reason and first.stopped.after_key is not None
    assert result.stopped.startswith("stopped at sessions_expired after sessions.id ")
    summary = first.summary()
    assert summary["stopped_after_id"] == str(first.stopped.after_key)
    expired_left, live_left = remaining(primary)
    assert 0 < expired_left < 20_000 and live_left == 5_000

    # The next run (replay still paused) waits, and goes on once replay resumes.
    messages.clear()
    second = Pacer(Pacing(**base, **pinned, max_wait_seconds=120), log=messages.append)
    thread, outcome = cleanup_in_thread(primary, second, batch_size=500)
    messages.wait_for("pausing, replica replay_lag")
    before = remaining(primary)
    time.sleep(1.5)
    assert remaining(primary) == before  # paused: nothing deleted meanwhile
    set_replay("resume")
    [result] = finish(thread, outcome)
    assert second.stopped is None and second.paused_seconds >= 1.5
    assert any("resuming after" in m for m in messages)
    assert result.changed == expired_left
    assert remaining(primary) == (0, 5_000)

    # Every expired row is gone on the replica too, and nothing else.
    deadline = time.monotonic() + 30
    while remaining(replica) != (0, 5_000) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert remaining(replica) == (0, 5_000)


# --- lock waits on the shared server (a schema of our own) ---------------------------------


@pytest.fixture
def pg_engine(postgres_schema_url):
    upgrade(postgres_schema_url)
    engine = make_engine(postgres_schema_url)
    yield engine
    engine.dispose()


@pytest.fixture
def hold_row(pg_engine):
    """Open a session holding one sessions row locked (say an admin tool); whatever the test
    does, it is gone before the schema is dropped."""
    holders = []

    def hold(session_id: int):
        holder = pg_engine.connect()
        holder.begin()
        holder.execute(
            text("SELECT id FROM sessions WHERE id = :id FOR UPDATE"), {"id": session_id}
        )
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        if not holder.closed:
            holder.rollback()
            holder.close()


def session_waiting_on_lock(engine, fragment: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE :fragment"
                ),
                {"fragment": f"%{fragment}%"},
            ).scalar_one():
                return
        time.sleep(0.02)
    raise AssertionError(f"no session waiting on a lock with {fragment!r}")


def test_cleanup_pauses_while_the_app_waits_on_a_lock_on_its_table(pg_engine, hold_row):
    load_sessions(pg_engine, 5_000)
    holder = hold_row(4001)
    waited: dict = {}

    def app_update():
        started = time.monotonic()
        with pg_engine.begin() as connection:
            connection.execute(text("UPDATE sessions SET last_seen_at = now() WHERE id = 4001"))
        waited["s"] = time.monotonic() - started

    app = threading.Thread(target=app_update, daemon=True)
    app.start()
    session_waiting_on_lock(pg_engine, "WHERE id = 4001")

    messages = Messages()
    pacer = Pacer(Pacing(poll_seconds=0.1, max_wait_seconds=60), log=messages.append)
    thread, outcome = cleanup_in_thread(pg_engine, pacer, batch_size=1000)
    messages.wait_for("pausing, 1 session(s) waiting on a lock on sessions")
    time.sleep(0.5)
    assert remaining(pg_engine) == (4_000, 1_000)  # the job waits for the app
    holder.commit()
    holder.close()
    app.join(10)
    finish(thread, outcome)
    assert remaining(pg_engine) == (0, 1_000)
    assert pacer.paused_seconds >= 0.5 and pacer.stopped is None


def test_an_app_query_never_waits_behind_the_job_longer_than_its_lock_timeout(pg_engine, hold_row):
    load_sessions(pg_engine, 3_000)
    # A session (say an admin tool) holds row 2001, which the job's first batch wants.
    holder = hold_row(2001)

    messages = Messages()
    pacing = Pacing(lock_timeout_seconds=1.0, poll_seconds=0.2, max_wait_seconds=60)
    pacer = Pacer(pacing, log=messages.append)
    thread, outcome = cleanup_in_thread(pg_engine, pacer, batch_size=3000)
    session_waiting_on_lock(pg_engine, "DELETE FROM sessions")  # the job, holding rows 1..2000

    # The app touches row 10, which the job's open batch has already deleted (not committed).
    started = time.monotonic()
    with pg_engine.begin() as connection:
        connection.execute(text("UPDATE sessions SET last_seen_at = now() WHERE id = 10"))
    app_wait = time.monotonic() - started
    assert app_wait <= pacing.lock_timeout_seconds + 0.3

    messages.wait_for("pausing, batch rolled back (55P03")  # the job backs off
    time.sleep(1.0)
    holder.commit()
    holder.close()
    [result] = finish(thread, outcome)
    assert pacer.retries >= 1 and pacer.stopped is None
    assert result.changed == 2_400 and remaining(pg_engine) == (0, 600)


# --- adaptive size (both databases) ---------------------------------------------------------


def test_batch_size_follows_the_target_duration():
    pacer = Pacer(Pacing(target_batch_seconds=0.5, min_batch_size=100, max_batch_size=50_000))
    assert pacer.next_size(1_000, 1_000, 0.05) == 2_000  # fast: at most doubles
    assert pacer.next_size(10_000, 10_000, 2.0) == 2_500  # slow: shrinks at once
    assert pacer.next_size(40_000, 40_000, 0.1) == 50_000  # capped by max_batch_size
    assert pacer.next_size(1_000, 1_000, 100.0) == 100  # floored by min_batch_size
    assert (
        pacer.next_size(2, 2, 100.0, floor=pacer.floor(2)) == 2
    )  # a smaller batch_size is the floor


def test_adaptive_batches_delete_everything_with_the_rate_logged(engine):
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            text(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) "
                "INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at) "
                "SELECT n, 1, 'user', :now, :now, CASE WHEN n % 5 = 0 THEN :later ELSE :now END "
                "FROM g"
            ),
            {"now": now, "later": now.replace(year=now.year + 1)},
        )
    messages = Messages()
    pacer = Pacer(Pacing(target_batch_seconds=0.05), log=messages.append)
    with use_pacer(pacer):
        [result], _ = apply_session_cleanup_rules(
            engine, SessionCleanupConfig(batch_size=100), utcnow(), log=messages.append
        )
    assert result.changed == 16_000
    sizes = [t.size for t in pacer.timings]
    assert sizes[0] == 100 and max(sizes) > 100  # grew from the first batch
    assert all("rows/s" in m for m in messages if "deleted" in m)


def app_touches(engine, session_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE sessions SET last_seen_at = now() WHERE id = :id"), {"id": session_id}
        )


def test_a_run_that_waited_too_long_succeeds_reporting_where_it_stopped(
    pg_engine, postgres_schema_url, hold_row
):
    import dagster as dg

    from ops_platform.jobs._history import recent_rows_changed
    from ops_platform.jobs.sessions import session_cleanup
    from ops_platform.resources.database import Database

    load_sessions(pg_engine, 5_000)
    holder = hold_row(4001)
    app = threading.Thread(target=app_touches, args=(pg_engine, 4001), daemon=True)
    database = Database(url=postgres_schema_url)
    config = {"confirm_large": True, "max_wait_seconds": 1.5}
    try:
        app.start()
        session_waiting_on_lock(pg_engine, "SET last_seen_at = now() WHERE id")
        with dg.DagsterInstance.ephemeral() as instance:
            result = session_cleanup.execute_in_process(
                run_config={"ops": {"cleanup_sessions": {"config": config}}},
                resources={"database": database},
                instance=instance,
            )
            assert result.success
            [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
            metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
            assert metadata["stopped"].startswith("stopped at sessions_expired: ")
            assert "waiting on a lock on sessions" in metadata["stopped"]
            assert metadata["rows_changed"] == 0 and metadata["paused_s"] >= 1.5
            # A stopped run did not do its usual amount: the gate's history leaves it out.
            assert recent_rows_changed(instance, "session_cleanup", "mode=light", 10, 50) == []
    finally:
        holder.commit()
        holder.close()
        app.join(10)
        database.engine.dispose()
    assert remaining(pg_engine)[0] == 4_000
