"""payment_status_check_sensor: due payments → grouped run requests with run keys per
(payment id, check_count), never the same check twice; the requested run config runs."""

import json
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import update

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.payments import payment_status_check
from ops_platform.resources.payments import PaymentProvider
from ops_platform.sensors.payments import PAYMENTS_PER_RUN, RELAUNCH_AFTER_S, build_sensors
from ops_platform.settings import load_settings
from tests.payment_rows import insert_payments, payment_row

[payment_status_check_sensor] = build_sensors(load_settings({}))


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _insert(engine, *rows):
    insert_payments(engine, *rows, amount_cents=500)


def _evaluate(instance, database, cursor=None):
    with dg.build_sensor_context(
        instance=instance, resources={"database": database}, cursor=cursor
    ) as context:
        return payment_status_check_sensor(context)


def _ids(request):
    return request.run_config["ops"]["check_payment_status"]["config"]["payment_ids"]


def test_due_payments_are_requested_once_per_check(instance, database, engine):
    now = utcnow()
    _insert(
        engine,
        payment_row(1, "r1", now - timedelta(minutes=3), now - timedelta(seconds=2), check_count=4),
        payment_row(2, "r2", now - timedelta(seconds=20)),  # never scheduled: due at +5 s
        payment_row(3, "r3", now),  # too young
        payment_row(4, "r4", now - timedelta(minutes=3), now + timedelta(seconds=40)),
        payment_row(
            5, "r5", now - timedelta(minutes=3), now - timedelta(seconds=2), status="succeeded"
        ),
    )
    first = _evaluate(instance, database)
    [request] = first.run_requests
    assert sorted(_ids(request)) == [1, 2]
    assert request.run_key == "payment_checks:2@0,1@4"  # longest overdue first

    # Next tick, nothing recorded yet: the same checks are not launched again.
    second = _evaluate(instance, database, cursor=first.cursor)
    assert not second.run_requests
    assert "already launched" in second.skip_reason.skip_message

    # Payment 1's check is recorded and its next one is due: a new check, a new run key.
    with engine.begin() as connection:
        connection.execute(
            update(schema.payments)
            .where(schema.payments.c.id == 1)
            .values(check_count=5, next_check_at=now - timedelta(seconds=1))
        )
    third = _evaluate(instance, database, cursor=second.cursor)
    [request] = third.run_requests
    assert _ids(request) == [1] and request.run_key == "payment_checks:1@5"
    assert set(json.loads(third.cursor)["launched"]) == {"1", "2"}


def test_many_due_payments_are_grouped_in_bounded_runs(instance, database, engine):
    now = utcnow()
    _insert(
        engine,
        *(
            payment_row(i, f"g{i}", now - timedelta(minutes=1), now - timedelta(seconds=100 - i))
            for i in range(1, 46)
        ),
    )
    result = _evaluate(instance, database)
    groups = [_ids(r) for r in result.run_requests]
    assert [len(g) for g in groups] == [PAYMENTS_PER_RUN, PAYMENTS_PER_RUN, 5]
    assert sorted(i for g in groups for i in g) == list(range(1, 46))
    assert len({r.run_key for r in result.run_requests}) == 3
    assert not _evaluate(instance, database, cursor=result.cursor).run_requests


def test_a_lost_launch_is_relaunched_after_a_while(instance, database, engine):
    now = utcnow()
    _insert(engine, payment_row(1, "lost", now - timedelta(hours=1), now - timedelta(seconds=5)))
    stale = json.dumps({"launched": {"1": [0, now.timestamp() - RELAUNCH_AFTER_S - 1]}})
    [request] = _evaluate(instance, database, cursor=stale).run_requests
    assert _ids(request) == [1]


def test_nothing_due_skips_and_a_bad_cursor_starts_afresh(instance, database, engine):
    result = _evaluate(instance, database, cursor="not json")
    assert not result.run_requests and result.skip_reason.skip_message == "no payment check is due"


def test_the_requested_run_config_checks_those_payments(instance, database, engine):
    now = utcnow()
    _insert(
        engine,
        {"id": 1, "provider_ref": "cfg1", "created_at": now - timedelta(minutes=1)},
        {"id": 2, "provider_ref": "cfg2", "created_at": now - timedelta(minutes=1)},
    )
    [request] = _evaluate(instance, database).run_requests
    result = payment_status_check.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        resources={"database": database, "payments": PaymentProvider()},
    )
    assert result.success
    assert result.output_for_node("check_payment_status") == 2


def test_sensor_is_on_by_default_for_the_payments_group():
    assert payment_status_check_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert payment_status_check_sensor.minimum_interval_seconds == 5
