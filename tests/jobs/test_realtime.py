"""realtime_publish against the running Redis (127.0.0.1:6379, or OPS_TEST_REDIS_URL):
a subscriber receives every event exactly once, in order; rows are marked published; a
second run publishes nothing; with no Redis the rows stay in the outbox. Each test uses
channels under a prefix of its own. The sensor is evaluated with build_sensor_context."""

import json
import os
import threading
import time
import uuid
from datetime import timedelta

import dagster as dg
import pytest
import redis
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import insert, select, text

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.realtime import publish_outbox, realtime_publish
from ops_platform.resources.realtime import RealtimePublisher, RealtimeUnavailable
from ops_platform.sensors.realtime import build_sensors
from ops_platform.settings import load_settings
from tests.jobs.cleanup_helpers import lose_the_lock_connection_once, output_metadata

[realtime_publish_sensor] = build_sensors(load_settings({}))

REDIS_URL = os.environ.get("OPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def redis_url():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("OPS_REQUIRE_REDIS") == "1":
            pytest.fail(f"no Redis at {REDIS_URL}: {error}")
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")
    return REDIS_URL


@pytest.fixture
def prefix():
    return f"test-{uuid.uuid4().hex[:10]}"


class Subscriber:
    """Collects every message on `prefix:*` in a thread."""

    def __init__(self, url, prefix):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f"{prefix}:*")
        while self.pubsub.get_message(timeout=1.0) is None and not self.pubsub.subscribed:
            pass
        self.messages: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                self.messages.append((message["channel"].decode(), json.loads(message["data"])))

    def wait_for(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def subscriber(redis_url, prefix):
    sub = Subscriber(redis_url, prefix)
    yield sub
    sub.close()


def _events(engine, prefix, count, start=0):
    now = utcnow()
    rows = [
        {
            "channel": f"{prefix}:{'thrones' if i % 3 else 'festivals'}",
            "event": "throne:expired" if i % 3 else "festival:activated",
            "payload": {"n": i, "name": f"item {i}"},
            "created_at": now - timedelta(seconds=count - i),
        }
        for i in range(start, start + count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.realtime_events), rows)


def _unpublished(engine):
    with engine.connect() as connection:
        return (
            connection.execute(
                select(schema.realtime_events.c.id)
                .where(schema.realtime_events.c.published_at.is_(None))
                .order_by(schema.realtime_events.c.id)
            )
            .scalars()
            .all()
        )


def _run(database, url, **config):
    return realtime_publish.execute_in_process(
        run_config={"ops": {"publish_realtime_events": {"config": config}}} if config else None,
        resources={"database": database, "realtime": RealtimePublisher(url=url)},
    )


def test_every_event_once_and_in_order(database, engine, redis_url, prefix, subscriber):
    _events(engine, prefix, 23)
    result = _run(database, redis_url, batch_size=5)
    assert result.success and result.output_for_node("publish_realtime_events") == 23
    received = subscriber.wait_for(23)
    assert [message["id"] for _, message in received] == list(range(1, 24))
    channel, first = received[0]
    assert channel == f"{prefix}:festivals"
    assert first["event"] == "festival:activated" and first["payload"] == {"n": 0, "name": "item 0"}
    assert first["created_at"].endswith("+00:00")
    assert _unpublished(engine) == []

    again = _run(database, redis_url)
    assert again.output_for_node("publish_realtime_events") == 0
    time.sleep(0.3)
    assert len(subscriber.messages) == 23


def test_new_events_after_a_run_are_published_next(database, engine, redis_url, prefix, subscriber):
    _events(engine, prefix, 3)
    _run(database, redis_url)
    _events(engine, prefix, 2, start=3)
    _run(database, redis_url)
    assert [m["id"] for _, m in subscriber.wait_for(5)] == [1, 2, 3, 4, 5]


def test_without_redis_rows_stay_in_the_outbox(database, engine, prefix):
    _events(engine, prefix, 4)
    result = _run(database, None)
    assert result.success and result.output_for_node("publish_realtime_events") == 0
    assert _unpublished(engine) == [1, 2, 3, 4]


def test_redis_down_loses_nothing(engine, prefix):
    _events(engine, prefix, 4)
    dead = RealtimePublisher(url="redis://127.0.0.1:1/0", retries=0, socket_timeout_s=0.5)
    with pytest.raises(RealtimeUnavailable, match="Redis at redis://127.0.0.1:1/0 failed"):
        publish_outbox(engine, dead)
    assert _unpublished(engine) == [1, 2, 3, 4]


def test_bad_rows_are_skipped_counted_and_kept(database, engine, redis_url, prefix, subscriber):
    _events(engine, prefix, 2)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.realtime_events), [{"channel": "  ", "event": "x", "payload": {}}]
        )
        if engine.dialect.name == "sqlite":  # Postgres' json type refuses malformed JSON itself
            connection.execute(
                text(
                    "INSERT INTO realtime_events (channel, event, payload, created_at) "
                    "VALUES (:c, 'x', '{broken', '2026-01-01 00:00:00.000000')"
                ),
                {"c": f"{prefix}:x"},
            )
    _events(engine, prefix, 2, start=2)
    report = publish_outbox(engine, RealtimePublisher(url=redis_url), batch_size=2)
    bad = [3, 4] if engine.dialect.name == "sqlite" else [3]
    assert report.skipped_bad == bad and report.published == 4
    assert [m["id"] for _, m in subscriber.wait_for(4)] == [i for i in range(1, 7) if i not in bad][
        :4
    ]
    assert _unpublished(engine) == bad


def test_a_second_run_at_the_same_time_publishes_nothing(
    database, engine, redis_url, prefix, subscriber
):
    _events(engine, prefix, 3)
    with database.job_lock("realtime_publish"):
        result = _run(database, redis_url)
    assert result.success and result.output_for_node("publish_realtime_events") == 0
    assert _unpublished(engine) == [1, 2, 3]


def _evaluate(instance, database, url):
    resources = {"database": database, "realtime": RealtimePublisher(url=url)}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return realtime_publish_sensor(context)


def test_sensor_requests_a_run_keyed_by_the_newest_event(database, engine, redis_url, prefix):
    with dg.instance_for_test() as instance:
        assert "no unpublished" in _evaluate(instance, database, redis_url).skip_message
        _events(engine, prefix, 3)
        request = _evaluate(instance, database, redis_url)
        assert request.run_key == "realtime_publish:3"
        assert "no Redis configured" in _evaluate(instance, database, None).skip_message
        create_run_for_test(
            instance, job_name="realtime_publish", status=dg.DagsterRunStatus.STARTED
        )
        assert "already queued or running" in _evaluate(instance, database, redis_url).skip_message


def test_the_redis_password_never_reaches_the_logs():
    assert (
        RealtimePublisher(url="redis://:s3cret@cache.internal:6380/2").safe_url
        == "redis://cache.internal:6380/2"
    )
    assert not RealtimePublisher().enabled


def test_a_retried_run_reports_every_attempts_events_once(
    database, engine, redis_url, prefix, subscriber, monkeypatch
):
    _events(engine, prefix, 12)
    lose_the_lock_connection_once(monkeypatch)
    result = _run(database, redis_url, batch_size=5)
    assert result.success and result.output_for_node("publish_realtime_events") == 12
    metadata = output_metadata(result)
    assert (metadata["published"], metadata["batches"], metadata["attempts"]) == (12, 3, 2)
    assert len(subscriber.wait_for(12)) == 12
    time.sleep(0.3)
    assert len(subscriber.messages) == 12 and _unpublished(engine) == []
