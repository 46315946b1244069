"""payment_status_check / payment_status_sweep against a provider over real HTTP.

The provider is `tests.payment_provider.ScriptedProvider` (a ThreadingHTTPServer on a free
port): pending → succeeded, failed, timeouts, 5xx then success, malformed JSON. Time is
injected (`now`) so the schedule is checked to the second.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from ops_platform.db import schema
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.jobs._payment_checks import (
    check_due_payments,
    check_payments,
    load_pending,
    sweep_pending,
)
from ops_platform.jobs._payment_outcomes import next_check_offset
from ops_platform.jobs.payments import payment_status_check, payment_status_sweep
from ops_platform.resources.payments import (
    PaymentProvider,
    ProviderError,
    serve_simulator,
    simulated_status,
)
from tests.payment_provider import ScriptedProvider
from tests.payment_rows import insert_payments, payment_row

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def provider_server():
    with ScriptedProvider() as server:
        yield server


@pytest.fixture
def provider(provider_server):
    client = PaymentProvider(
        url=provider_server.url,
        connect_timeout_s=1.0,
        read_timeout_s=0.3,
        max_retries=2,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    yield client
    client.close()


def _insert(engine, *rows):
    insert_payments(engine, *rows, amount_cents=1000, currency="USD", created_at=T0)


def _payment(engine, id):
    """The app's payment row with the last provider error the project keeps for it."""
    errors = schema.payment_check_errors
    query = (
        select(schema.payments, errors.c.last_error)
        .outerjoin(errors, errors.c.payment_id == schema.payments.c.id)
        .where(schema.payments.c.id == id)
    )
    with engine.connect() as connection:
        row = connection.execute(query).one()
    return row._asdict() | {
        k: as_utc(getattr(row, k))
        for k in ("created_at", "next_check_at", "last_checked_at", "settled_at")
    }


def _check(engine, provider, id, now, **options):
    return check_payments(engine, provider, load_pending(engine, [id]), now=now, **options)


def test_schedule_offsets_are_5_10_15_20_30_60_then_every_60():
    offsets, elapsed = [], 0.0
    for _ in range(10):
        elapsed = next_check_offset(elapsed)
        offsets.append(elapsed)
    assert offsets == [5, 10, 15, 20, 30, 60, 120, 180, 240, 300]
    assert next_check_offset(0.0) == 5
    assert next_check_offset(7.5) == 10  # a late check keeps the schedule
    assert next_check_offset(61) == 120


def test_next_check_at_follows_the_schedule_after_created_at(engine, provider, provider_server):
    _insert(engine, {"id": 1, "provider_ref": "pay_sched"})
    expected = [5, 10, 15, 20, 30, 60, 120, 180, 240]
    check_at = 5
    for number, offset in enumerate(expected[1:], start=1):
        report = _check(engine, provider, 1, T0 + timedelta(seconds=check_at))
        assert report.outcomes == {"pending": 1}
        row = _payment(engine, 1)
        assert row["status"] == "pending"
        assert row["check_count"] == number
        assert row["last_checked_at"] == T0 + timedelta(seconds=check_at)
        assert row["next_check_at"] == T0 + timedelta(seconds=offset), f"after check {number}"
        check_at = offset
    assert provider_server.requests["pay_sched"] == len(expected) - 1


def test_pending_then_succeeded_records_settled_at(engine, provider, provider_server):
    provider_server.script("pay_ok", "pending", "succeeded")
    _insert(engine, {"id": 1, "provider_ref": "pay_ok"})
    _check(engine, provider, 1, T0 + timedelta(seconds=5))
    assert _payment(engine, 1)["status"] == "pending"
    report = _check(engine, provider, 1, T0 + timedelta(seconds=10))
    assert report.outcomes == {"succeeded": 1} and report.written == 1
    row = _payment(engine, 1)
    assert row["status"] == "succeeded"
    assert row["settled_at"] == T0 + timedelta(seconds=10)
    assert row["next_check_at"] is None and row["check_count"] == 2 and row["last_error"] is None
    # A settled payment is not checked again.
    assert load_pending(engine, [1]) == []


def test_failed_payment(engine, provider, provider_server):
    provider_server.script("pay_fail", "failed")
    _insert(engine, {"id": 1, "provider_ref": "pay_fail"})
    _check(engine, provider, 1, T0 + timedelta(seconds=5))
    row = _payment(engine, 1)
    assert row["status"] == "failed" and row["settled_at"] == T0 + timedelta(seconds=5)


def test_expires_after_30_minutes_and_is_configurable(engine, provider):
    _insert(engine, {"id": 1, "provider_ref": "pay_slow"}, {"id": 2, "provider_ref": "pay_slow2"})
    _check(engine, provider, 1, T0 + timedelta(minutes=29, seconds=30))
    row = _payment(engine, 1)
    assert row["status"] == "pending"
    assert row["next_check_at"] == T0 + timedelta(minutes=30)  # the last slot is the expiry itself
    report = _check(engine, provider, 1, T0 + timedelta(minutes=30))
    assert report.outcomes == {"expired": 1}
    row = _payment(engine, 1)
    assert row["status"] == "expired" and row["next_check_at"] is None

    _check(engine, provider, 2, T0 + timedelta(minutes=10), expire_after=timedelta(minutes=10))
    assert _payment(engine, 2)["status"] == "expired"


def test_timeout_records_error_and_leaves_status(engine, provider, provider_server):
    provider_server.script("pay_hang", ("slow", 1.0, "succeeded"))
    _insert(engine, {"id": 1, "provider_ref": "pay_hang"})
    started = time.perf_counter()
    report = _check(engine, provider, 1, T0 + timedelta(seconds=5))
    assert (
        time.perf_counter() - started < 3
    )  # 3 attempts of a 0.3 s read timeout, not the 1 s answers
    assert report.outcomes == {"error": 1}
    row = _payment(engine, 1)
    assert row["status"] == "pending" and row["settled_at"] is None
    assert "timed out" in row["last_error"] and "pay_hang" in row["last_error"]
    assert row["check_count"] == 1
    assert row["next_check_at"] == T0 + timedelta(seconds=10)  # still advanced
    assert provider_server.requests["pay_hang"] == 3


def test_5xx_is_retried_then_succeeds(engine, provider, provider_server):
    provider_server.script("pay_flaky", 503, 500, "succeeded")
    _insert(engine, {"id": 1, "provider_ref": "pay_flaky"})
    report = _check(engine, provider, 1, T0 + timedelta(seconds=5))
    assert report.outcomes == {"succeeded": 1}
    assert provider_server.requests["pay_flaky"] == 3
    assert _payment(engine, 1)["status"] == "succeeded"


def test_5xx_through_every_retry_is_unavailable(engine, provider, provider_server):
    provider_server.script("pay_down", 502)
    _insert(engine, {"id": 1, "provider_ref": "pay_down"})
    report = _check(engine, provider, 1, T0 + timedelta(seconds=5))
    assert report.outcomes == {"error": 1} and report.unavailable == 1
    assert "HTTP 502 after 3 attempts" in _payment(engine, 1)["last_error"]


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"{not json", "malformed JSON"),
        (b'["succeeded"]', "JSON list, expected an object"),
        (b'{"reference": "pay_bad", "status": "paid"}', "unknown status 'paid'"),
        (b'{"reference": "someone_else", "status": "succeeded"}', "reference 'someone_else'"),
    ],
)
def test_malformed_answer_is_a_clear_error_and_payment_untouched(
    engine, provider, provider_server, body, problem
):
    provider_server.script("pay_bad", ("raw", body))
    with pytest.raises(ProviderError, match=f"reference 'pay_bad': .*{problem}"):
        provider.get_status("pay_bad")
    _insert(engine, {"id": 7, "provider_ref": "pay_bad"})
    report = _check(engine, provider, 7, T0 + timedelta(seconds=5))
    assert report.outcomes == {"error": 1}
    assert report.errors[0].startswith("payment 7: payment provider, reference 'pay_bad'")
    row = _payment(engine, 7)
    assert row["status"] == "pending" and row["settled_at"] is None
    assert problem in row["last_error"]
    assert provider_server.requests["pay_bad"] == 2  # a bad answer is not retried


def test_unknown_reference_expires_only_past_expiry(engine, provider, provider_server):
    provider_server.script("pay_404", 404)
    _insert(engine, {"id": 1, "provider_ref": "pay_404"})
    _check(engine, provider, 1, T0 + timedelta(seconds=5))
    row = _payment(engine, 1)
    assert row["status"] == "pending" and "unknown reference" in row["last_error"]
    _check(engine, provider, 1, T0 + timedelta(minutes=31))
    row = _payment(engine, 1)
    assert row["status"] == "expired" and "unknown reference" in row["last_error"]


def test_a_concurrent_settle_is_never_overwritten(engine, provider, provider_server):
    _insert(engine, {"id": 1, "provider_ref": "pay_race"}, {"id": 2, "provider_ref": "pay_race2"})
    stale = load_pending(engine, [1, 2])
    with engine.begin() as connection:  # a webhook settles #1, another check records #2
        connection.execute(
            update(schema.payments)
            .where(schema.payments.c.id == 1)
            .values(status="succeeded", settled_at=T0)
        )
        connection.execute(
            update(schema.payments).where(schema.payments.c.id == 2).values(check_count=1)
        )
    report = check_payments(engine, provider, stale, now=T0 + timedelta(seconds=5))
    assert report.unchanged == 2 and report.written == 0
    assert _payment(engine, 1)["status"] == "succeeded" and _payment(engine, 1)["check_count"] == 0
    assert _payment(engine, 2)["check_count"] == 1


def test_check_job_with_default_config_checks_only_due_payments(
    database, engine, provider, provider_server
):
    now = utcnow()
    _insert(
        engine,
        payment_row(1, "due_1", now - timedelta(minutes=2), now - timedelta(seconds=1)),
        payment_row(2, "due_2", now - timedelta(seconds=30)),  # never scheduled, 30 s old
        payment_row(3, "young", now),  # never scheduled, not 5 s old
        payment_row(4, "later", now - timedelta(minutes=2), now + timedelta(minutes=1)),
        payment_row(
            5, "done", now - timedelta(minutes=2), now - timedelta(seconds=1), status="succeeded"
        ),
    )
    provider_server.script("due_1", "succeeded")
    result = payment_status_check.execute_in_process(
        resources={"database": database, "payments": provider}
    )
    assert result.success
    assert set(provider_server.requests) == {"due_1", "due_2"}
    assert result.output_for_node("check_payment_status") == 2
    assert _payment(engine, 1)["status"] == "succeeded"
    assert _payment(engine, 2)["check_count"] == 1


def test_check_job_with_ids_checks_those_still_pending(database, engine, provider, provider_server):
    _insert(
        engine,
        {"id": 1, "provider_ref": "a"},
        {"id": 2, "provider_ref": "b"},
        {"id": 3, "provider_ref": "c", "status": "failed"},
        {"id": 4, "provider_ref": "d"},
    )
    result = payment_status_check.execute_in_process(
        run_config={"ops": {"check_payment_status": {"config": {"payment_ids": [1, 3, 4, 99]}}}},
        resources={"database": database, "payments": provider},
    )
    assert result.success
    assert set(provider_server.requests) == {"a", "d"}


def test_sweep_checks_every_pending_payment_in_batches(database, engine, provider, provider_server):
    now = utcnow()
    pending = [
        {
            "id": i,
            "provider_ref": f"sweep_{i}",
            "created_at": now - timedelta(minutes=5),
            "next_check_at": now + timedelta(minutes=1),
        }
        for i in range(1, 26)
    ]
    settled = [
        {"id": 100 + i, "provider_ref": f"settled_{i}", "status": "succeeded"} for i in range(3)
    ]
    _insert(engine, *pending, *settled)
    for i in range(1, 26, 2):
        provider_server.script(f"sweep_{i}", "succeeded")
    result = payment_status_sweep.execute_in_process(
        run_config={
            "ops": {"sweep_pending_payments": {"config": {"batch_size": 4, "concurrency": 4}}}
        },
        resources={"database": database, "payments": provider},
    )
    assert result.success
    assert provider_server.requests == {f"sweep_{i}": 1 for i in range(1, 26)}
    with engine.connect() as connection:
        statuses = dict(
            connection.execute(select(schema.payments.c.id, schema.payments.c.status)).all()
        )
    assert [statuses[i] for i in range(1, 26)] == [
        "succeeded" if i % 2 else "pending" for i in range(1, 26)
    ]
    assert all(statuses[100 + i] == "succeeded" for i in range(3))
    output = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"][0]
    metadata = output.event_specific_data.metadata
    assert (
        metadata["checked"].value == 25
        and metadata["succeeded"].value == 13
        and metadata["pending"].value == 12
    )


def test_sweep_fails_loudly_when_the_provider_is_down(database, engine, provider, provider_server):
    provider_server.script("down_1", 503)
    provider_server.script("down_2", 503)
    _insert(engine, {"id": 1, "provider_ref": "down_1"}, {"id": 2, "provider_ref": "down_2"})
    result = payment_status_sweep.execute_in_process(
        resources={"database": database, "payments": provider}, raise_on_error=False
    )
    assert not result.success
    # The errors were still recorded; the statuses untouched.
    assert all("HTTP 503" in _payment(engine, i)["last_error"] for i in (1, 2))
    assert {_payment(engine, i)["status"] for i in (1, 2)} == {"pending"}


def test_dry_run_asks_but_writes_nothing(engine, provider, provider_server):
    provider_server.script("dry", "succeeded")
    _insert(engine, {"id": 1, "provider_ref": "dry"})
    report = sweep_pending(engine, provider, now=T0 + timedelta(seconds=5), dry_run=True)
    assert report.outcomes == {"succeeded": 1} and report.written == 0
    row = _payment(engine, 1)
    assert row["status"] == "pending" and row["check_count"] == 0


def test_simulator_is_deterministic_and_the_default_config_runs(database, engine):
    assert [simulated_status("ref-42", n) for n in range(4)] == [
        simulated_status("ref-42", n) for n in range(4)
    ]
    statuses = {simulated_status(f"ref-{i}", 5) for i in range(200)}
    assert {"succeeded", "failed", "canceled", "pending"} <= statuses
    now = utcnow()
    _insert(
        engine,
        *(
            {"id": i, "provider_ref": f"sim_{i}", "created_at": now - timedelta(minutes=1)}
            for i in range(1, 51)
        ),
    )
    simulator = PaymentProvider()
    for _ in range(4):  # the simulator settles most payments within three checks
        check_due_payments(engine, simulator, payment_ids=list(range(1, 51)))
    result = payment_status_sweep.execute_in_process(
        resources={"database": database, "payments": simulator}
    )
    assert result.success
    with engine.connect() as connection:
        statuses = connection.execute(select(schema.payments.c.status)).scalars().all()
    assert statuses.count("pending") < 10 and statuses.count("succeeded") > 25


def test_the_simulator_served_over_http_answers_like_the_embedded_one():
    server = serve_simulator()
    client = PaymentProvider(url=server.url)
    try:
        for ref in ("sim-a", "sim/b c", "sim-ü"):
            assert [client.get_status(ref).status for _ in range(4)] == [
                simulated_status(ref, n) for n in range(4)
            ]
    finally:
        client.close()
        server.shutdown()
        server.server_close()
