"""The production topology end to end, on a Postgres-backed instance.

One stack for the whole module (tests/e2e/_stack.py): a gRPC code server, `dagster-daemon`
and `dagster-webserver` with the deploy/ configuration on a fresh Postgres database; every
group's schedules and sensors are off by default and each test starts the ones it exercises
through GraphQL, as an operator would in the UI.

Proved here: a run launched through GraphQL goes through the queue and succeeds; a sensor
tick (payment checks) and a schedule tick (the every-minute email queue) launch runs that
succeed; the daemon killed with SIGKILL and restarted keeps its cursors and launches no
duplicate run for a tick or a run key; queued runs start by `dagster/priority`; two runs of
a singleton job never overlap; `ops-platform status` reads the instance; a weekly report
waits for its last input partition, then its automation sensor runs it once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import date, timedelta

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType
from dagster._core.storage.tags import SCHEDULED_EXECUTION_TIME_TAG
from sqlalchemy import insert, select, text

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.resources.payments import simulated_status
from tests.e2e._processes import BIN, REPO, base_env, wait_for
from tests.e2e._stack import Stack, running_stack

pytestmark = pytest.mark.e2e

PAYMENT_SENSOR = "payment_status_check_sensor"
EMAIL_SCHEDULE = "email_queue_every_minute"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from running_stack(tmp_path_factory, "e2e_daemon")


# --- app data helpers -----------------------------------------------------------------------


def provider_ref(*answers: str) -> str:
    """A reference the payment simulator answers with `answers` on successive checks."""
    for n in range(100_000):
        ref = f"e2e-{n}"
        if all(simulated_status(ref, attempt) == answer for attempt, answer in enumerate(answers)):
            return ref
    raise AssertionError(f"no simulator reference answers {answers}")


def insert_payment(stack: Stack, payment_id: int, ref: str) -> None:
    """A payment created now: its checks are due 5, 10, 15 s… from now."""
    engine = stack.app
    with engine.begin() as connection:
        connection.execute(
            insert(schema.payments).values(
                id=payment_id,
                provider_ref=ref,
                user_id=1,
                amount_cents=1500,
                currency="USD",
                status="pending",
                created_at=utcnow(),
                check_count=0,
            )
        )
    engine.dispose()


def payment(stack: Stack, payment_id: int):
    engine = stack.app
    with engine.connect() as connection:
        row = connection.execute(
            select(schema.payments).where(schema.payments.c.id == payment_id)
        ).one()
    engine.dispose()
    return row


def payment_runs(stack: Stack) -> list[dg.RunRecord]:
    return stack.runs(job_name="payment_status_check", tags={"dagster/sensor_name": PAYMENT_SENSOR})


def run_key(record: dg.RunRecord) -> str:
    return record.dagster_run.tags.get("dagster/run_key", "")


def carries(record: dg.RunRecord, payment_id: int) -> list[str]:
    """The checks `payment_id@check_count` a payment-check run carries (from its run key)."""
    checks = run_key(record).removeprefix("payment_checks:").split(",")
    return [check for check in checks if check.split("@")[0] == str(payment_id)]


def assert_cursor_kept(ticks, killed_at: float, restarted_at: float) -> None:
    """After the restart the sensor goes on from its stored cursor: no tick asks again for a
    run key that an earlier tick asked for. One exception is inherent: the kill may land
    between the daemon recording the last tick and storing that tick's cursor; the first
    evaluation after the restart then repeats that one tick's requests, and the run keys
    make them no-ops (the callers check that every key has exactly one run)."""
    ordered = sorted(ticks, key=lambda t: t.timestamp)
    before = [t for t in ordered if t.timestamp <= killed_at]
    after = [t for t in ordered if t.timestamp >= restarted_at]
    last_before, first_after = (before[-1] if before else None), (after[0] if after else None)
    requested_before = {key: t for t in before for key in t.run_keys}
    for tick in after:
        for key in tick.run_keys:
            earlier = requested_before.get(key)
            if earlier is None:
                continue
            assert earlier is last_before and tick is first_after, (
                f"{key} was requested before the kill (tick at {earlier.timestamp}) and again after the "
                f"restart (tick at {tick.timestamp}): the sensor lost its cursor"
            )
    seen_after = Counter(key for t in after for key in t.run_keys)
    assert all(count == 1 for count in seen_after.values()), seen_after


def assert_no_overlap(records: list[dg.RunRecord]) -> None:
    spans = sorted((r.start_time, r.end_time, r.dagster_run.run_id) for r in records)
    for (_start_a, end_a, id_a), (start_b, _, id_b) in zip(spans, spans[1:]):
        assert end_a <= start_b, (
            f"runs {id_a} and {id_b} overlapped: {id_a} ended {end_a}, {id_b} started {start_b}"
        )


# --- the checks -----------------------------------------------------------------------------


@pytest.mark.timeout(900)  # includes starting the stack
def test_a_run_launched_through_graphql_is_queued_and_succeeds(stack):
    now = utcnow()
    engine = stack.app
    with engine.begin() as connection:
        connection.execute(
            insert(schema.sessions),
            [
                {
                    "id": i,
                    "user_id": i,
                    "kind": "user",
                    "created_at": now - timedelta(days=3),
                    "last_seen_at": now - timedelta(days=1),
                    "expires_at": now + timedelta(days=1 - 2 * (i % 2)),
                }
                for i in range(1, 7)
            ],
        )

    run_id = stack.submit(
        "session_cleanup", {"ops": {"cleanup_sessions": {"config": {"mode": "light"}}}}
    )
    record = stack.wait_finished(run_id)

    enqueued = stack.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
    assert enqueued, "the run did not go through the run queue"
    tags = record.dagster_run.tags
    assert tags["ops/singleton"] == "session_cleanup" and tags["dagster/priority"] == "70"
    with engine.connect() as connection:
        left = connection.execute(text("SELECT COUNT(*) FROM sessions")).scalar()
    engine.dispose()
    assert left == 3, "the three expired sessions were not deleted"


@pytest.mark.timeout(600)
def test_a_sensor_tick_launches_a_run_that_succeeds(stack):
    stack.start_sensor(PAYMENT_SENSOR)
    insert_payment(stack, 101, provider_ref("succeeded"))

    settled = wait_for(
        "payment 101 to settle",
        lambda: (p := payment(stack, 101)).status != "pending" and p,
        400,
        interval_s=1,
        diagnostics=stack.diagnostics,
    )
    assert settled.status == "succeeded" and settled.check_count == 1

    [run] = [r for r in payment_runs(stack) if carries(r, 101)]
    assert carries(run, 101) == ["101@0"]
    stack.wait_finished(run.dagster_run.run_id)
    assert stack.instance.all_logs(run.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)


@pytest.mark.timeout(600)
def test_a_schedule_tick_launches_a_run_that_succeeds(stack):
    now = utcnow()
    engine = stack.app
    with engine.begin() as connection:
        connection.execute(insert(schema.users).values(id=501, email="e2e-reader@example.com"))
        connection.execute(
            insert(schema.notifications).values(id=501, user_id=501, title="Welcome", body="hello")
        )
        connection.execute(
            insert(schema.notification_email_queue).values(
                id=501,
                user_id=501,
                notification_ids=[501],
                scheduled_for=now - timedelta(minutes=1),
                status="pending",
                attempts=0,
            )
        )

    stack.start_schedule(EMAIL_SCHEDULE)  # "* * * * *": its next tick is at most a minute away
    scheduled = wait_for(
        "a run of the every-minute schedule",
        lambda: stack.runs(job_name="email_queue", tags={"dagster/schedule_name": EMAIL_SCHEDULE}),
        300,
        interval_s=2,
        diagnostics=stack.diagnostics,
    )
    first = min(scheduled, key=lambda r: r.create_timestamp)
    stack.wait_finished(first.dagster_run.run_id)

    with engine.connect() as connection:
        status = connection.execute(
            text("SELECT status FROM notification_email_queue WHERE id = 501")
        ).scalar()
    engine.dispose()
    assert status == "sent"
    assert list((stack.data_dir / "outbox").glob("*.eml")), "no mail in the outbox"


@pytest.mark.timeout(1200)
def test_daemon_killed_and_restarted_keeps_cursors_and_duplicates_nothing(stack):
    # A payment the provider reports pending twice, then succeeded: three checks, 5-10 s
    # apart, launched by the sensor across the crash.
    insert_payment(stack, 202, provider_ref("pending", "pending", "succeeded"))
    wait_for(
        "the first check of payment 202",
        lambda: any(carries(r, 202) for r in payment_runs(stack)),
        400,
        interval_s=0.5,
        diagnostics=stack.diagnostics,
    )

    stack.kill_daemon()
    killed_at = time.time()
    assert stack.instigator_cursor(PAYMENT_SENSOR), "the sensor stored no cursor"

    # While the daemon is down, runs wait in the queue: a low then a high priority one.
    low = stack.submit("session_cleanup", tags={"dagster/priority": "10"})
    high = stack.submit("session_cleanup", tags={"dagster/priority": "100"})
    time.sleep(3)
    assert {stack.record(low).dagster_run.status, stack.record(high).dagster_run.status} == {
        dg.DagsterRunStatus.QUEUED
    }

    restarted_at = time.time()
    stack.start_daemon()

    low_record, high_record = stack.wait_finished(low, 600), stack.wait_finished(high, 600)
    assert high_record.start_time < low_record.start_time, (
        "the queue did not start the higher priority first"
    )
    assert_no_overlap([low_record, high_record])

    settled = wait_for(
        "payment 202 to settle",
        lambda: (p := payment(stack, 202)).status != "pending" and p,
        600,
        interval_s=1,
        diagnostics=stack.diagnostics,
    )
    assert settled.status == "succeeded" and settled.check_count == 3

    # Exactly one run per check, and per run key, across the crash.
    checks = sorted(check for r in payment_runs(stack) for check in carries(r, 202))
    assert checks == ["202@0", "202@1", "202@2"], checks
    keys = Counter(run_key(r) for r in payment_runs(stack))
    assert all(count == 1 for count in keys.values()), keys
    assert_cursor_kept(stack.ticks(InstigatorType.SENSOR, PAYMENT_SENSOR), killed_at, restarted_at)
    for r in payment_runs(stack):
        stack.wait_finished(r.dagster_run.run_id)

    # The schedule ticks again after the restart, and no tick time ever got two runs.
    wait_for(
        "a schedule tick after the restart",
        lambda: [
            r
            for r in stack.runs(
                job_name="email_queue", tags={"dagster/schedule_name": EMAIL_SCHEDULE}
            )
            if r.create_timestamp.timestamp() > killed_at
        ],
        400,
        interval_s=2,
        diagnostics=stack.diagnostics,
    )
    scheduled = stack.runs(job_name="email_queue", tags={"dagster/schedule_name": EMAIL_SCHEDULE})
    per_tick = Counter(r.dagster_run.tags[SCHEDULED_EXECUTION_TIME_TAG] for r in scheduled)
    assert all(count == 1 for count in per_tick.values()), per_tick
    tick_times = Counter(
        tick.timestamp for tick in stack.ticks(InstigatorType.SCHEDULE, EMAIL_SCHEDULE)
    )
    assert all(count == 1 for count in tick_times.values()), tick_times
    stack.stop_schedule(EMAIL_SCHEDULE)  # quiet from here on: a run a minute is load
    for r in stack.runs(job_name="email_queue", tags={"dagster/schedule_name": EMAIL_SCHEDULE}):
        stack.wait_finished(r.dagster_run.run_id)


@pytest.mark.timeout(900)
def test_two_launches_of_a_singleton_job_never_run_at_once(stack):
    first = stack.submit("session_cleanup")
    second = stack.submit("session_cleanup")
    stack.wait_finished(first)
    stack.wait_finished(second, 600)
    every_cleanup = stack.runs(job_name="session_cleanup")
    assert len(every_cleanup) >= 5
    assert_no_overlap(every_cleanup)


@pytest.mark.timeout(400)
def test_status_cli_reads_the_instance(stack):
    if (
        stack.instigator_state(InstigatorType.SCHEDULE, EMAIL_SCHEDULE).status
        == InstigatorStatus.RUNNING
    ):
        stack.stop_schedule(EMAIL_SCHEDULE)  # already stopped unless the restart test failed early
    command = [str(BIN / "python"), "-m", "ops_platform.cli", "status", "--json", "--last", "10"]
    output = subprocess.run(
        command, env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert output.returncode == 0, output.stderr
    rows = {row["job"]: row for row in json.loads(output.stdout)}

    cleanup = rows["session_cleanup"]
    assert cleanup["last_run_status"] == "SUCCESS"
    assert cleanup["success_rate"] == 1.0 and cleanup["finished_runs"] >= 5
    assert cleanup["schedule_on"] is False  # OPS_ENABLE_CLEANUP=false and never started
    checks = rows["payment_status_check"]
    assert checks["sensor_on"] is True and checks["success_rate"] == 1.0
    email = rows["email_queue"]  # its schedule ran, then the operator stopped it
    assert email["schedule_on"] is False and email["next_tick"] is None, email
    assert email["last_run_status"] == "SUCCESS" and email["consecutive_failures"] == 0

    table = subprocess.run(
        command[:-3], env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert (
        table.returncode == 0 and "session_cleanup" in table.stdout and "next tick" in table.stdout
    )


@pytest.mark.timeout(180)
def test_definitions_validate_from_the_cli(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    env = base_env(tmp_path / "dagster_home", tmp_path / "data", f"sqlite:///{tmp_path / 'app.db'}")
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "ops_platform.definitions"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- reports wait for their inputs ----------------------------------------------------------

REPORT_SENSOR = "weekly_trend_report_automation"


def report_inputs_landed(stack: Stack, days) -> None:
    """Daily analytics partitions materialized and checked, as their daily runs record them."""
    from ops_platform.assets.analytics.checks import IN_RANGE
    from ops_platform.assets.analytics.inputs import DAILY_INPUTS

    for day in days:
        for asset in DAILY_INPUTS:
            stack.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=asset, partition=day.isoformat())
            )
            stack.instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(asset), check_name=IN_RANGE, passed=True, blocking=True
                )
            )


def report_runs(stack: Stack, week: str) -> list[dg.RunRecord]:
    return [
        record
        for record in stack.runs(tags={"dagster/partition": week})
        if dg.AssetKey("weekly_trend_report") in (record.dagster_run.asset_selection or ())
    ]


def evaluations(stack: Stack) -> int:
    return len(stack.ticks(InstigatorType.SENSOR, REPORT_SENSOR))


@pytest.mark.timeout(900)
def test_a_report_waits_for_its_inputs_then_runs_once(stack):
    from ops_platform.assets.analytics.partitions import WEEKLY_PARTITIONS
    from ops_platform.assets.analytics.weekly import weekly_input_days

    week = WEEKLY_PARTITIONS.get_last_partition_key()
    days = weekly_input_days(date.fromisoformat(week))
    stack.start_sensor(REPORT_SENSOR)
    wait_for("the automation sensor's first evaluation", lambda: evaluations(stack) >= 1, 300)

    report_inputs_landed(stack, days[:-1])  # the week's last day is late
    seen = evaluations(stack)
    wait_for("two more evaluations", lambda: evaluations(stack) >= seen + 2, 400, interval_s=2)
    assert report_runs(stack, week) == []  # incomplete inputs: no report

    report_inputs_landed(stack, days[-1:])
    [run] = wait_for(
        "the report's run",
        lambda: report_runs(stack, week) or None,
        400,
        interval_s=2,
        diagnostics=stack.diagnostics,
    )
    stack.wait_finished(run.dagster_run.run_id)
    assert run.dagster_run.tags["ops/singleton"] == "weekly_trend_report_job"
    [record] = stack.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("weekly_trend_report"), asset_partitions=[week]
        ),
        limit=1,
    ).records
    metadata = record.asset_materialization.metadata
    assert metadata["inputs_complete"].value is True
    assert len(metadata["input_partitions"].value["daily_course_analytics"]) == len(days)

    seen = evaluations(stack)
    wait_for("two more evaluations", lambda: evaluations(stack) >= seen + 2, 400, interval_s=2)
    assert len(report_runs(stack, week)) == 1  # once
