"""email_queue against a real SMTP server (aiosmtpd): every batch ends sent or dead, none
lost, none sent twice; leased claims; crashed runs' batches come back; bad rows go dead."""

import threading
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import insert, select, update

from ops_platform.db import schema
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.jobs._email_queue import (
    batch_message_id,
    claim_due_batches,
    count_due,
    mark_sent,
)
from ops_platform.jobs.email import email_queue, send_due_emails
from ops_platform.resources.mailer import Mailer, MailServerUnavailable
from ops_platform.sensors.email import build_sensors
from ops_platform.settings import load_settings
from tests.jobs.cleanup_helpers import lose_the_lock_connection_once, output_metadata
from tests.smtp_server import CollectingHandler, free_port, smtp_server

[email_queue_due_sensor] = build_sensors(load_settings({}))

queue = schema.notification_email_queue


def seed_batches(engine, count, *, now=None, start=1, **overrides):
    """`count` due batches, each for its own user with two notifications."""
    now = now or utcnow()
    users, notes, batches = [], [], []
    for i in range(start, start + count):
        users.append({"id": i, "email": f"user{i}@example.com"})
        notes += [
            {"id": 2 * i - 1, "user_id": i, "title": f"Hello {i}", "body": "first"},
            {"id": 2 * i, "user_id": i, "title": f"Update {i}", "body": "second"},
        ]
        batches.append(
            {
                "id": i,
                "user_id": i,
                "notification_ids": [2 * i - 1, 2 * i],
                "scheduled_for": now - timedelta(minutes=1),
                "status": "pending",
                "attempts": 0,
                **overrides,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(schema.users), users)
        connection.execute(insert(schema.notifications), notes)
        connection.execute(insert(queue), batches)


def rows(engine):
    """The queue's rows with the project's delivery state of each (backoff, Message-ID)."""
    d = schema.email_deliveries
    query = select(queue, d.c.next_attempt_at, d.c.message_id).outerjoin(
        d, d.c.queue_id == queue.c.id
    )
    with engine.connect() as connection:
        return {row.id: row for row in connection.execute(query)}


def run_job(database, mailer, **config):
    return email_queue.execute_in_process(
        run_config={"ops": {"process_email_queue": {"config": config}}},
        resources={"database": database, "mailer": mailer},
        raise_on_error=False,
    )


def test_due_batches_are_sent_once_over_one_connection(engine, database):
    now = utcnow()
    seed_batches(engine, 30, now=now)
    seed_batches(engine, 2, now=now + timedelta(hours=1), start=31)  # not yet due
    with engine.begin() as connection:
        connection.execute(
            update(queue).where(queue.c.id == 32).values(scheduled_for=now + timedelta(hours=1))
        )
        connection.execute(
            update(queue).where(queue.c.id == 31).values(scheduled_for=now + timedelta(hours=1))
        )
    with smtp_server() as (url, handler):
        result = run_job(database, Mailer(smtp_url=url, mail_from="ops@example.com"))
    assert result.success
    assert output_metadata(result)["sent"] == 30
    assert handler.connections == 1
    assert handler.message_ids == {batch_message_id(i): 1 for i in range(1, 31)}
    first = next(m for m in handler.messages if m["Message-ID"] == batch_message_id(1))
    assert first["To"] == "user1@example.com" and first["From"] == "ops@example.com"
    assert "Hello 1" in first.get_content() and "Update 1" in first.get_content()
    state = rows(engine)
    for i in range(1, 31):
        assert state[i].status == "sent" and state[i].sent_at is not None and state[i].attempts == 1
        assert state[i].message_id == batch_message_id(i)
    assert {state[31].status, state[32].status} == {"pending"}


def test_max_batches_bounds_a_run(engine, database):
    seed_batches(engine, 12)
    with smtp_server() as (url, handler):
        result = run_job(database, Mailer(smtp_url=url), max_batches=5)
    assert output_metadata(result)["sent"] == 5
    assert sum(r.status == "sent" for r in rows(engine).values()) == 5


def test_flaky_server_every_batch_ends_sent_or_dead_none_twice(engine):
    seed_batches(engine, 40)
    now = utcnow()
    handler = CollectingHandler(fail_every=3)
    with smtp_server(handler) as (url, handler), Mailer(smtp_url=url) as mailer:
        first = send_due_emails(engine, mailer, now, max_batches=50, max_attempts=3)
        assert first.sent + first.failed == 40 and first.failed > 0
        failed = [r for r in rows(engine).values() if r.status == "failed"]
        assert all("451" in r.error_message and as_utc(r.next_attempt_at) > now for r in failed)
        # Nothing is due again before the backoff passes.
        assert send_due_emails(engine, mailer, now, max_batches=50).claimed == 0
        for _ in range(10):
            now += timedelta(hours=2)
            if not count_due(engine, now):
                break
            send_due_emails(engine, mailer, now, max_batches=50, max_attempts=3)
    state = rows(engine)
    assert {r.status for r in state.values()} <= {"sent", "dead"}
    sent = {i for i, r in state.items() if r.status == "sent"}
    dead = {i for i, r in state.items() if r.status == "dead"}
    assert sent | dead == set(range(1, 41))
    # Each sent batch arrived exactly once; a dead one never arrived, and kept its error.
    assert handler.message_ids == {batch_message_id(i): 1 for i in sent}
    for i in dead:
        assert state[i].attempts == 3 and "451" in state[i].error_message


def test_permanent_refusal_is_dead_at_once(engine):
    seed_batches(engine, 3)
    handler = CollectingHandler(refuse={"user2@example.com"})
    with smtp_server(handler) as (url, handler), Mailer(smtp_url=url) as mailer:
        result = send_due_emails(engine, mailer, utcnow())
    assert (result.sent, result.dead) == (2, 1)
    state = rows(engine)
    assert state[2].status == "dead" and "550" in state[2].error_message and state[2].attempts == 1


def test_bad_rows_are_dead_with_a_clear_error_and_do_not_stop_the_run(engine, database):
    seed_batches(engine, 6)
    with engine.begin() as connection:
        connection.execute(update(queue).where(queue.c.id == 1).values(user_id=999))
        connection.execute(update(schema.users).where(schema.users.c.id == 2).values(email=""))
        connection.execute(update(queue).where(queue.c.id == 3).values(notification_ids=[]))
        connection.execute(
            update(queue).where(queue.c.id == 4).values(notification_ids="not a list")
        )
        connection.execute(
            update(queue).where(queue.c.id == 5).values(notification_ids=[11, 12])
        )  # user 6's
    with smtp_server() as (url, handler):
        result = run_job(database, Mailer(smtp_url=url))
    assert result.success
    assert output_metadata(result)["sent"] == 1 and output_metadata(result)["dead"] == 5
    state = rows(engine)
    assert "user 999 does not exist" in state[1].error_message
    assert "has no email address" in state[2].error_message
    assert "is empty" in state[3].error_message
    assert "not a JSON list" in state[4].error_message
    assert "none of notifications [11, 12] exist for user 5" in state[5].error_message
    assert handler.message_ids == {batch_message_id(6): 1}


def test_two_concurrent_claims_never_take_the_same_batch(engine):
    seed_batches(engine, 300)
    now = utcnow()
    claims: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def claimer(name):
        barrier.wait()
        claims[name] = [b.id for b in claim_due_batches(engine, now, limit=200)]

    threads = [threading.Thread(target=claimer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(claims["a"]) & set(claims["b"])
    assert len(claims["a"]) + len(claims["b"]) == 300
    assert all(r.status == "processing" and r.attempts == 1 for r in rows(engine).values())


def test_a_crashed_runs_batch_comes_back_after_the_lease(engine):
    now = utcnow()
    seed_batches(engine, 2, status="processing", attempts=1)
    with engine.begin() as connection:
        connection.execute(
            update(queue).where(queue.c.id == 1).values(claimed_at=now - timedelta(minutes=10))
        )
        connection.execute(
            update(queue).where(queue.c.id == 2).values(claimed_at=now - timedelta(minutes=1))
        )
    with smtp_server() as (url, handler), Mailer(smtp_url=url) as mailer:
        result = send_due_emails(engine, mailer, now, lease_seconds=300)
    assert result.sent == 1
    state = rows(engine)
    assert state[1].status == "sent" and state[1].attempts == 2
    assert state[2].status == "processing"  # a live run still holds it
    assert handler.message_ids == {batch_message_id(1): 1}


def test_a_batch_reclaimed_after_lease_expiry_is_not_marked_by_the_old_run(engine):
    now = utcnow()
    seed_batches(engine, 1)
    [old] = claim_due_batches(engine, now, limit=10, lease_seconds=60)
    later = now + timedelta(seconds=61)
    [new] = claim_due_batches(engine, later, limit=10, lease_seconds=60)
    assert (old.id, new.attempts) == (new.id, 2)
    assert not mark_sent(engine, old, now, later)
    assert mark_sent(engine, new, later, later)


def test_unreachable_server_gives_the_claims_back_without_using_attempts(engine):
    seed_batches(engine, 4)
    mailer = Mailer(smtp_url=f"smtp://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(MailServerUnavailable, match="cannot reach SMTP server"):
        send_due_emails(engine, mailer, utcnow())
    assert {(r.status, r.attempts) for r in rows(engine).values()} == {("pending", 0)}


def test_dry_run_claims_and_sends_nothing(engine, database):
    seed_batches(engine, 3)
    with smtp_server() as (url, handler):
        result = run_job(database, Mailer(smtp_url=url), dry_run=True)
    assert result.success
    assert output_metadata(result)["due"] == 3 and output_metadata(result)["would_send"] == 3
    assert not handler.messages
    assert {r.status for r in rows(engine).values()} == {"pending"}


def test_outbox_default_writes_one_eml_per_batch(engine, database, tmp_path):
    seed_batches(engine, 3)
    result = run_job(database, Mailer(outbox_dir=str(tmp_path / "outbox")))
    assert result.success
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == [f"notification-batch-{i}@ops-platform.eml" for i in (1, 2, 3)]
    assert "Hello 2" in (tmp_path / "outbox" / files[1]).read_text()


def test_a_second_run_while_one_holds_the_lock_sends_nothing(engine, database, tmp_path):
    seed_batches(engine, 2)
    with database.job_lock("email_queue"):
        result = run_job(database, Mailer(outbox_dir=str(tmp_path)))
    assert result.success and output_metadata(result)["sent"] == 0
    assert {r.status for r in rows(engine).values()} == {"pending"}


def test_bad_config_is_rejected(database):
    with pytest.raises(Exception, match="greater than 0"):
        email_queue.execute_in_process(
            run_config={"ops": {"process_email_queue": {"config": {"max_batches": 0}}}},
            resources={"database": database, "mailer": Mailer()},
        )
    with pytest.raises(dg.DagsterInvalidConfigError):
        email_queue.execute_in_process(
            run_config={"ops": {"process_email_queue": {"config": {"max_batches": "all"}}}},
            resources={"database": database, "mailer": Mailer()},
        )


def test_due_sensor_requests_one_run_when_mail_is_due_and_none_is_active(engine, database):
    def tick(instance):
        with dg.build_sensor_context(
            instance=instance, resources={"database": database}
        ) as context:
            return email_queue_due_sensor.evaluate_tick(context)

    with dg.DagsterInstance.ephemeral() as instance:
        assert "no email batch is due" in tick(instance).skip_message
        seed_batches(engine, 1)
        [request] = tick(instance).run_requests
        assert request.run_key.startswith("email_queue_due:")
        instance.create_run_for_job(email_queue)  # a run queued, not yet finished
        assert "already queued or running" in tick(instance).skip_message


def test_a_retried_run_reports_the_mails_every_attempt_sent(
    engine, database, tmp_path, monkeypatch
):
    seed_batches(engine, 5)
    lose_the_lock_connection_once(monkeypatch)
    result = run_job(database, Mailer(outbox_dir=str(tmp_path / "outbox")))
    assert result.success
    metadata = output_metadata(result)
    assert (metadata["sent"], metadata["claimed"], metadata["attempts"]) == (5, 5, 2)
    assert metadata["done_by_earlier_attempts"] == {"claimed": 5, "sent": 5}
    assert result.output_for_node("process_email_queue") == 5
    assert {row.status for row in rows(engine).values()} == {"sent"}
