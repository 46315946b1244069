"""overdue_payment_reminders: one reminder per overdue project per day whatever re-runs
happen, sent over real SMTP (aiosmtpd); the row and the send agree."""

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs.reminders import (
    overdue_payment_reminders,
    reminder_message_id,
    send_payment_reminders,
)
from ops_platform.resources.mailer import Mailer
from tests.jobs.cleanup_helpers import lose_the_lock_connection_once, output_metadata
from tests.smtp_server import CollectingHandler, free_port, smtp_server

reminders = schema.payment_reminders


@pytest.fixture
def projects(engine):
    """Projects 1, 2: overdue. 3: advance too recent. 4: balance paid. 5: no advance.
    6: overdue but the primary contact was removed. 7: overdue, contact without email.
    8: overdue with two primary contacts (the earliest team row wins)."""
    now = utcnow()
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    with engine.begin() as connection:
        connection.execute(
            insert(schema.users),
            [{"id": i, "email": f"contact{i}@example.com"} for i in range(1, 10)]
            + [{"id": 70, "email": ""}],
        )
        connection.execute(
            insert(schema.projects), [{"id": i, "name": f"Project {i}"} for i in range(1, 9)]
        )
        connection.execute(
            insert(schema.project_payment_status),
            [
                {
                    "project_id": 1,
                    "advance_paid": True,
                    "advance_paid_at": days(4),
                    "balance_paid": False,
                },
                {
                    "project_id": 2,
                    "advance_paid": True,
                    "advance_paid_at": days(30),
                    "balance_paid": False,
                },
                {
                    "project_id": 3,
                    "advance_paid": True,
                    "advance_paid_at": days(1),
                    "balance_paid": False,
                },
                {
                    "project_id": 4,
                    "advance_paid": True,
                    "advance_paid_at": days(10),
                    "balance_paid": True,
                },
                {
                    "project_id": 5,
                    "advance_paid": False,
                    "advance_paid_at": None,
                    "balance_paid": False,
                },
                {
                    "project_id": 6,
                    "advance_paid": True,
                    "advance_paid_at": days(5),
                    "balance_paid": False,
                },
                {
                    "project_id": 7,
                    "advance_paid": True,
                    "advance_paid_at": days(5),
                    "balance_paid": False,
                },
                {
                    "project_id": 8,
                    "advance_paid": True,
                    "advance_paid_at": days(5),
                    "balance_paid": False,
                },
            ],
        )
        connection.execute(
            insert(schema.project_team),
            [
                {"removed_at": None, **row}
                for row in [
                    {"id": 1, "project_id": 1, "user_id": 1, "is_primary_contact": True},
                    {"id": 2, "project_id": 1, "user_id": 9, "is_primary_contact": False},
                    {"id": 3, "project_id": 2, "user_id": 2, "is_primary_contact": True},
                    {"id": 4, "project_id": 3, "user_id": 3, "is_primary_contact": True},
                    {"id": 5, "project_id": 4, "user_id": 4, "is_primary_contact": True},
                    {"id": 6, "project_id": 5, "user_id": 5, "is_primary_contact": True},
                    {
                        "id": 7,
                        "project_id": 6,
                        "user_id": 6,
                        "is_primary_contact": True,
                        "removed_at": days(1),
                    },
                    {"id": 8, "project_id": 7, "user_id": 70, "is_primary_contact": True},
                    {"id": 10, "project_id": 8, "user_id": 9, "is_primary_contact": True},
                    {"id": 9, "project_id": 8, "user_id": 8, "is_primary_contact": True},
                ]
            ],
        )
    return engine


def reminder_rows(engine):
    """The app's reminder rows with the day and error the project keeps for each."""
    days = schema.payment_reminder_days
    query = (
        select(reminders, days.c.reminder_date, days.c.error_message)
        .outerjoin(days, days.c.reminder_id == reminders.c.id)
        .order_by(reminders.c.project_id)
    )
    with engine.connect() as connection:
        return connection.execute(query).all()


def insert_reminder(connection, scheduled_for, reminder_date):
    """A pending balance-due reminder for project 1 that a crashed run left behind: the app's
    row and its day record."""
    new_id = connection.execute(
        insert(reminders)
        .values(
            project_id=1,
            kind="BALANCE_DUE",
            status="PENDING",
            recipient_email="contact1@example.com",
            scheduled_for=scheduled_for,
        )
        .returning(reminders.c.id)
    ).scalar_one()
    connection.execute(
        insert(schema.payment_reminder_days).values(
            reminder_id=new_id, project_id=1, kind="BALANCE_DUE", reminder_date=reminder_date
        )
    )


def run_job(database, mailer, **config):
    return overdue_payment_reminders.execute_in_process(
        run_config={"ops": {"send_overdue_payment_reminders": {"config": config}}},
        resources={"database": database, "mailer": mailer},
        raise_on_error=False,
    )


def test_one_reminder_per_overdue_project_per_day_across_reruns(projects, database):
    with smtp_server() as (url, handler):
        for _ in range(3):
            assert run_job(database, Mailer(smtp_url=url)).success
    rows = reminder_rows(projects)
    assert [(r.project_id, r.recipient_email) for r in rows] == [
        (1, "contact1@example.com"),
        (2, "contact2@example.com"),
        (8, "contact8@example.com"),
    ]
    assert all(
        r.status == "SENT" and r.sent_at is not None and r.error_message is None for r in rows
    )
    assert all(r.reminder_date == utcnow().date() and r.kind == "BALANCE_DUE" for r in rows)
    # Three runs, one mail per project.
    assert handler.message_ids == {reminder_message_id(r.id): 1 for r in rows}
    assert sorted(m["To"] for m in handler.messages) == [r.recipient_email for r in rows]
    assert (
        "Project 1"
        in next(m for m in handler.messages if m["To"] == "contact1@example.com")["Subject"]
    )


def test_a_new_day_gets_a_new_reminder(projects, engine, tmp_path):
    mailer = Mailer(outbox_dir=str(tmp_path))
    today = utcnow()
    send_payment_reminders(engine, mailer, today)
    second = send_payment_reminders(engine, mailer, today + timedelta(days=1))
    assert second.sent == 3 and second.already_sent_today == 0
    assert len(reminder_rows(engine)) == 6


def test_refused_send_is_failed_with_the_error_and_retried_by_a_rerun(projects, database):
    handler = CollectingHandler(refuse={"contact2@example.com"})
    with smtp_server(handler) as (url, handler):
        result = run_job(database, Mailer(smtp_url=url))
        assert not result.success  # visible (and alerted) as a failed run
        rows = {r.project_id: r for r in reminder_rows(database.engine)}
        assert (
            rows[2].status == "FAILED"
            and "550" in rows[2].error_message
            and rows[2].sent_at is None
        )
        assert rows[1].status == "SENT" and rows[8].status == "SENT"
        handler.refuse.clear()
        assert run_job(database, Mailer(smtp_url=url)).success
    rows = {r.project_id: r for r in reminder_rows(database.engine)}
    assert (
        rows[2].status == "SENT" and rows[2].error_message is None and rows[2].sent_at is not None
    )
    assert handler.message_ids == {reminder_message_id(r.id): 1 for r in rows.values()}


def test_unreachable_server_marks_every_reminder_failed(projects, engine):
    mailer = Mailer(smtp_url=f"smtp://127.0.0.1:{free_port()}?timeout=2")
    result = send_payment_reminders(engine, mailer, utcnow())
    assert result.failed == 3 and result.sent == 0
    assert all(
        r.status == "FAILED" and "mail server unavailable" in r.error_message
        for r in reminder_rows(engine)
    )


def test_a_crashed_runs_pending_reminder_is_sent_by_the_next_run(projects, engine):
    now = utcnow()
    with engine.begin() as connection:
        insert_reminder(
            connection, scheduled_for=now - timedelta(hours=1), reminder_date=now.date()
        )
    with smtp_server() as (url, handler), Mailer(smtp_url=url) as mailer:
        result = send_payment_reminders(engine, mailer, now)
    assert (result.queued, result.sent) == (2, 3)
    assert len(reminder_rows(engine)) == 3


def test_a_paid_balance_cancels_the_pending_reminder(projects, engine, tmp_path):
    now = utcnow()
    with engine.begin() as connection:
        insert_reminder(connection, scheduled_for=now, reminder_date=now.date())
        connection.execute(
            update(schema.project_payment_status)
            .where(schema.project_payment_status.c.project_id == 1)
            .values(balance_paid=True)
        )
    result = send_payment_reminders(engine, Mailer(outbox_dir=str(tmp_path)), now)
    assert (result.sent, result.canceled) == (2, 1)
    assert reminder_rows(engine)[0].status == "CANCELED"


def test_dry_run_inserts_and_sends_nothing(projects, database, tmp_path):
    outbox = tmp_path / "outbox"
    result = run_job(database, Mailer(outbox_dir=str(outbox)), dry_run=True)
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["eligible_projects"].value == 3 and metadata["would_send"].value == 3
    assert reminder_rows(database.engine) == [] and not outbox.exists()


def test_outbox_default_and_singleton(projects, database, tmp_path):
    with database.job_lock("overdue_payment_reminders"):
        assert run_job(database, Mailer(outbox_dir=str(tmp_path))).success
    assert reminder_rows(database.engine) == []
    assert run_job(database, Mailer(outbox_dir=str(tmp_path))).success
    assert len(list(tmp_path.glob("payment-reminder-*.eml"))) == 3


def test_a_retried_run_reports_the_reminders_every_attempt_sent(
    projects, database, tmp_path, monkeypatch
):
    lose_the_lock_connection_once(monkeypatch)
    result = run_job(database, Mailer(outbox_dir=str(tmp_path)))
    assert result.success and result.output_for_node("send_overdue_payment_reminders") == 3
    metadata = output_metadata(result)
    assert (metadata["sent"], metadata["queued"], metadata["attempts"]) == (3, 3, 2)
    assert metadata["already_sent_today"] == 0  # this run's own, not an earlier run's
    assert len(list(tmp_path.glob("payment-reminder-*.eml"))) == 3
