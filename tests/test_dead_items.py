"""Dead items listed and replayed: dead email batches replayed through a real SMTP server
(aiosmtpd) are sent exactly once each, however often they are replayed; replays are
audited; payments that expired without an answer go back to pending; the outbox is listed
with the reason its events wait; the same replay runs as the `replay_dead_items` job."""

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from ops_platform.cli import main
from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.dead_items import replay_dead_items
from ops_platform.resources.mailer import Mailer
from tests.jobs.test_email import rows, run_job, seed_batches
from tests.smtp_server import CollectingHandler, smtp_server

replays = schema.dead_item_replays


def audit(engine) -> list:
    with engine.connect() as connection:
        return connection.execute(select(replays).order_by(replays.c.id)).all()


def statuses(engine) -> dict[int, str]:
    return {id: row.status for id, row in rows(engine).items()}


def test_replayed_dead_mail_is_sent_exactly_once(engine, database, ops_env, capsys):
    seed_batches(engine, 5)
    refusing = CollectingHandler(refuse={"user2@example.com", "user4@example.com"})
    with smtp_server(refusing) as (url, handler):
        assert run_job(database, Mailer(smtp_url=url)).success
    assert statuses(engine) == {1: "sent", 2: "dead", 3: "sent", 4: "dead", 5: "sent"}
    sent_first = handler.message_ids

    assert main(["dead", "list", "--queue", "email"]) == 0
    listed = capsys.readouterr().out
    assert "email: 2 dead" in listed and "550" in listed
    assert [line.split()[0] for line in listed.splitlines()[3:5]] == ["2", "4"]

    # A dry run changes nothing and is not audited.
    assert main(["dead", "replay", "--queue", "email", "--all", "--dry-run"]) == 0
    assert "would put 2 dead items back" in capsys.readouterr().out
    assert statuses(engine)[2] == "dead" and audit(engine) == []

    # Replaying a sent batch by id leaves it alone; the dead one goes back, attempts reset.
    assert main(["dead", "replay", "--queue", "email", "--id", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "put 1 dead items back" in out and "left alone: [1]" in out
    after = rows(engine)
    assert (after[2].status, after[2].attempts, after[2].error_message) == ("pending", 0, None)
    assert after[1].status == "sent"
    # The rest, twice: the second finds nothing left to replay.
    assert main(["dead", "replay", "--queue", "email", "--all"]) == 0
    assert main(["dead", "replay", "--queue", "email", "--all"]) == 0
    assert "put 0 dead items back" in capsys.readouterr().out.splitlines()[-1]

    with smtp_server() as (url, handler):
        assert run_job(database, Mailer(smtp_url=url)).success
        assert run_job(database, Mailer(smtp_url=url)).success  # nothing left to send
        assert main(["dead", "replay", "--queue", "email", "--all"]) == 0
        assert run_job(database, Mailer(smtp_url=url)).success
    assert set(statuses(engine).values()) == {"sent"}
    # Each batch's mail went out exactly once over both servers.
    everything = sent_first + handler.message_ids
    assert sorted(everything) == sorted(
        f"<notification-batch-{i}@ops-platform>" for i in range(1, 6)
    )
    assert set(everything.values()) == {1}

    entries = audit(engine)
    assert [(e.queue, e.requested, e.replayed, e.requested_by) for e in entries] == [
        ("email", 2, 1, "alice"),
        ("email", 1, 1, "alice"),
    ]
    assert all(e.replayed_at is not None and e.run_id is None for e in entries)


def test_payments_that_expired_without_an_answer_go_back_to_pending(engine, ops_env, capsys):
    now = utcnow()
    created = now - timedelta(hours=2)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.payments),
            [
                {
                    "id": 1,
                    "provider_ref": "p1",
                    "status": "expired",
                    "created_at": created,
                    "check_count": 12,
                },
                {
                    "id": 2,
                    "provider_ref": "p2",
                    "status": "expired",
                    "created_at": created,
                    "check_count": 9,
                },  # the provider said it expired
                {
                    "id": 3,
                    "provider_ref": "p3",
                    "status": "succeeded",
                    "created_at": created,
                    "check_count": 3,
                },
            ],
        )
        # the provider error the project kept for payment 1
        connection.execute(
            insert(schema.payment_check_errors).values(
                payment_id=1, last_error="payment provider: 404 not found", checked_at=now
            )
        )
    assert main(["dead", "list", "--queue", "payments"]) == 0
    out = capsys.readouterr().out
    assert "payments: 1 dead" in out and "404 not found" in out and " 12 " in out

    assert main(["dead", "replay", "--queue", "payments", "--all"]) == 0
    with engine.connect() as connection:
        found = {
            row.id: row
            for row in connection.execute(select(schema.payments).order_by(schema.payments.c.id))
        }
    assert (found[1].status, found[1].check_count) == ("pending", 0)
    with engine.connect() as connection:  # the stale error went with the replay
        errors = connection.execute(select(schema.payment_check_errors)).all()
    assert errors == []
    assert found[1].next_check_at is not None
    assert found[2].status == "expired" and found[3].status == "succeeded"
    assert [(e.queue, e.replayed) for e in audit(engine)] == [("payments", 1)]


def test_outbox_is_listed_with_the_reason_and_has_nothing_to_replay(engine, ops_env, capsys):
    old = utcnow() - timedelta(hours=3)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.realtime_events),
            [
                {
                    "id": 1,
                    "channel": "thrones",
                    "event": "throne:expired",
                    "payload": {"a": 1},
                    "created_at": old,
                },
                {"id": 2, "channel": " ", "event": "x", "payload": None, "created_at": old},
                {
                    "id": 3,
                    "channel": "thrones",
                    "event": "new",
                    "payload": None,
                    "created_at": utcnow(),
                },  # recent: waiting, not dead
            ],
        )
    assert main(["dead", "list"]) == 0
    out = capsys.readouterr().out
    assert "email: 0 dead" in out and "payments: 0 dead" in out and "outbox: 2 dead" in out
    assert "not published yet" in out and "cannot be published: empty channel" in out
    with pytest.raises(SystemExit):
        main(["dead", "replay", "--queue", "outbox", "--all"])


def test_replay_needs_ids_or_all(ops_env):
    with pytest.raises(SystemExit):
        main(["dead", "replay", "--queue", "email"])
    with pytest.raises(SystemExit):
        main(["dead", "replay", "--queue", "email", "--all", "--id", "3"])


def test_replay_dead_items_job_with_run_config(engine, database):
    seed_batches(engine, 3)
    with engine.begin() as connection:
        connection.execute(
            update(schema.notification_email_queue)
            .where(schema.notification_email_queue.c.id.in_([1, 2]))
            .values(status="dead", attempts=5, error_message="451 try later")
        )

    def launch(**config):
        return replay_dead_items.execute_in_process(
            run_config={"ops": {"replay_dead": {"config": config}}},
            resources={"database": database},
            raise_on_error=False,
        )

    dry = launch(queue="email", all=True, dry_run=True)
    assert dry.success and dry.output_for_node("replay_dead") == 2
    assert audit(engine) == []
    result = launch(queue="email", ids=[2, 3], requested_by="bob (UI)")
    assert result.success and result.output_for_node("replay_dead") == 1
    assert statuses(engine) == {1: "dead", 2: "pending", 3: "pending"}
    [entry] = audit(engine)
    assert (entry.queue, entry.requested, entry.replayed) == ("email", 2, 1)
    assert entry.requested_by == "bob (UI)" and entry.run_id == result.run_id
    assert not launch(queue="email").success  # neither ids nor all
