"""`overdue_payment_reminders`: daily, one balance-due reminder per overdue project.

A project is overdue when its advance was paid at least `overdue_days` (3) ago and its
balance is still unpaid; the reminder goes to its primary contact (a current team member
with an email address; the earliest such member if there are several).

At most one reminder per project per UTC day, whatever re-runs happen: the day each
reminder is for is the project's own record (`payment_reminder_days`, unique on project,
kind and day, beside the app's `payment_reminders` row); today's rows are inserted for the
overdue projects that have none yet, then every PENDING or FAILED row of today is sent and
marked SENT (with `sent_at`) or FAILED (with the error, kept in `payment_reminder_days`). A SENT row is never sent again; a crashed run's PENDING row is sent by the
next run; a project whose balance got paid meanwhile is marked CANCELED instead.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import EmailMessage

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, Engine, delete, text

from ops_platform.db import schema
from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.engine import as_utc, dialect_insert, state_table, utcnow
from ops_platform.jobs._common import (
    Tally,
    add_earlier_counts,
    count_done,
    job_op,
    note_done,
    one_op_job,
)
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database
from ops_platform.resources.mailer import Mailer, MailError, MailServerUnavailable, plain_text_email

KIND = "BALANCE_DUE"


class ReminderConfig(dg.Config):
    dry_run: bool = Field(
        default=False, description="Report what would be sent; insert and send nothing."
    )
    overdue_days: int = Field(
        default=3, ge=0, description="Days after the advance payment before reminding."
    )


@dataclass
class ReminderResult(Tally):
    """Overdue projects, and today's reminders by what the run did with them."""

    COUNTED = ("eligible_projects", "queued", "sent", "failed", "canceled", "already_sent_today")
    errors: list[str] = field(default_factory=list)

    def metadata(self, dry_run: bool) -> dict:
        return {"dry_run": dry_run, **self.counted()}


# Overdue projects with the address of their primary contact (lowest project_team id).
OVERDUE_PROJECTS = """
    SELECT s.project_id, u.email
    FROM project_payment_status s
    JOIN (
        SELECT t.project_id, MIN(t.id) AS team_id
        FROM project_team t
        JOIN users u ON u.id = t.user_id
        WHERE t.is_primary_contact AND t.removed_at IS NULL
          AND u.email IS NOT NULL AND u.email LIKE '%_@_%'
        GROUP BY t.project_id
    ) contact ON contact.project_id = s.project_id
    JOIN project_team t ON t.id = contact.team_id
    JOIN users u ON u.id = t.user_id
    WHERE s.advance_paid AND NOT s.balance_paid AND s.advance_paid_at <= :cutoff
"""


def _params(now: datetime, overdue_days: int) -> dict:
    return {
        "cutoff": now - timedelta(days=overdue_days),
        "today": now.date(),
        "now": now,
        "kind": KIND,
        "day_kind": KIND,  # `:kind` under a second name: Postgres types each use apart
    }


def count_overdue(connection: Connection, params: dict) -> int:
    return connection.execute(
        text(f"SELECT count(*) FROM ({OVERDUE_PROJECTS}) o"), params
    ).scalar_one()


# Today's PENDING reminder of every overdue project that has no reminder day yet.
INSERT_TODAYS = (
    "INSERT INTO payment_reminders (project_id, kind, status, recipient_email, scheduled_for) "
    "SELECT o.project_id, :kind, 'PENDING', o.email, :now FROM ({overdue}) o "
    "WHERE NOT EXISTS (SELECT 1 FROM {days} d WHERE d.project_id = o.project_id "
    "AND d.kind = :day_kind AND d.reminder_date = :today) RETURNING id, project_id"
)
# Overdue projects whose reminder of today, if any, is still to send (PENDING or FAILED).
COUNT_UNSETTLED = (
    "SELECT count(*) FROM ({overdue}) o "
    "WHERE NOT EXISTS (SELECT 1 FROM {days} d JOIN payment_reminders r "
    "ON r.id = d.reminder_id WHERE d.project_id = o.project_id AND d.kind = :kind "
    "AND d.reminder_date = :today AND r.status NOT IN ('PENDING', 'FAILED'))"
)


def _overdue_and(connection: Connection, now: datetime, overdue_days: int, sql: str):
    """The number of overdue projects, and the result of `sql` about them (its `{overdue}`
    the overdue projects' query, `{days}` the reminder day table) on the same connection."""
    params = _params(now, overdue_days)
    days = state_table(connection, "payment_reminder_days")
    statement = text(sql.format(overdue=OVERDUE_PROJECTS, days=days))
    return count_overdue(connection, params), connection.execute(statement, params)


def queue_todays_reminders(engine: Engine, now: datetime, overdue_days: int = 3) -> tuple[int, int]:
    """Insert today's PENDING reminder of every overdue project that has none yet, and its
    day record. Returns (overdue projects, rows inserted)."""
    with engine.begin() as connection:
        eligible, created = _overdue_and(connection, now, overdue_days, INSERT_TODAYS)
        return eligible, _record_days(connection, created.all(), now.date())


def _record_days(connection: Connection, created: list, today: date) -> int:
    """The day record of each new reminder. The unique day keeps one reminder per project
    and day even against a concurrent run: a reminder whose day was taken meanwhile is
    removed again in this transaction."""
    days = schema.payment_reminder_days
    rows = [
        {"reminder_id": id_, "project_id": project, "kind": KIND, "reminder_date": today}
        for id_, project in created
    ]
    recorded: set[int] = set()
    for start in range(0, len(rows), 1000):
        statement = (
            dialect_insert(connection)(days)
            .values(rows[start : start + 1000])
            .on_conflict_do_nothing(index_elements=["project_id", "kind", "reminder_date"])
            .returning(days.c.reminder_id)
        )
        recorded.update(connection.execute(statement).scalars())
    lost = [id_ for id_, _ in created if id_ not in recorded]
    if lost:
        connection.execute(
            delete(schema.payment_reminders).where(schema.payment_reminders.c.id.in_(lost))
        )
    return len(recorded)


def todays_reminders(engine: Engine, today: date) -> list:
    """Today's reminders with what the email says and whether the balance is still due."""
    days = state_table(engine, "payment_reminder_days")
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT r.id, r.project_id, r.status, r.recipient_email, p.name AS project_name, "
                "       s.advance_paid_at, COALESCE(s.balance_paid, false) AS balance_paid "
                f"FROM {days} d JOIN payment_reminders r ON r.id = d.reminder_id "
                "LEFT JOIN projects p ON p.id = r.project_id "
                "LEFT JOIN project_payment_status s ON s.project_id = r.project_id "
                "WHERE d.kind = :kind AND d.reminder_date = :today ORDER BY r.id"
            ),
            {"kind": KIND, "today": today},
        ).all()


def reminder_message_id(reminder_id: int) -> str:
    return f"<payment-reminder-{reminder_id}@ops-platform>"


def build_reminder_email(row, mail_from: str, now: datetime) -> EmailMessage:
    project = row.project_name or f"project {row.project_id}"
    paid_at = as_utc(row.advance_paid_at)
    return plain_text_email(
        message_id=reminder_message_id(row.id),
        sender=mail_from,
        to=row.recipient_email.strip(),
        subject=f"Payment reminder: balance due for {project}",
        body=(
            f"Hello,\n\nThe advance for {project} was received"
            f"{' on ' + paid_at.strftime('%Y-%m-%d') if paid_at else ''}; the balance is still outstanding.\n"
            "Please settle it so that the final deliverables can be released.\n\nThank you.\n"
        ),
        date=now,
    )


def _mark(engine: Engine, reminder_id: int, status: str, *, sent_at=None, error=None) -> None:
    days = state_table(engine, "payment_reminder_days")
    with engine.begin() as connection:
        changed = connection.execute(
            text(
                "UPDATE payment_reminders SET status = :status, sent_at = :sent_at "
                "WHERE id = :id AND status IN ('PENDING', 'FAILED')"
            ),
            {"id": reminder_id, "status": status, "sent_at": sent_at},
        ).rowcount
        if changed:
            connection.execute(
                text(f"UPDATE {days} SET error_message = :error WHERE reminder_id = :id"),
                {"id": reminder_id, "error": error[:2000] if error else None},
            )


def send_payment_reminders(
    engine: Engine,
    mailer: Mailer,
    now: datetime,
    *,
    overdue_days: int = 3,
    log: LogLine | None = None,
) -> ReminderResult:
    """Queue today's reminders, then send every PENDING/FAILED one of today."""
    log = log or (lambda _message: None)
    result = ReminderResult()
    result.eligible_projects, queued = queue_todays_reminders(engine, now, overdue_days)
    count_done(result, queued=queued)
    server_down: str | None = None
    for row in todays_reminders(engine, now.date()):
        if row.status == "SENT":
            result.already_sent_today += 1
            continue
        if row.status not in ("PENDING", "FAILED"):
            continue
        if row.balance_paid:
            _mark(engine, row.id, "CANCELED", error="balance paid before the reminder was sent")
            count_done(result, canceled=1)
            continue
        error = server_down
        if error is None and not (row.recipient_email or "").strip():
            error = f"reminder {row.id} (project {row.project_id}) has no recipient email"
        if error is None:
            try:
                mailer.send(build_reminder_email(row, mailer.mail_from, now))
            except MailServerUnavailable as down:
                server_down = error = f"mail server unavailable: {down}"
            except MailError as refused:
                error = str(refused)
        if error is None:
            _mark(engine, row.id, "SENT", sent_at=utcnow())
            count_done(result, sent=1)
            # After a retry the next attempt finds it SENT: this run's, not an earlier run's.
            note_done(already_sent_today=-1)
        else:
            _mark(engine, row.id, "FAILED", error=error)
            result.failed += 1
            result.errors.append(f"reminder {row.id} for project {row.project_id}: {error}")
            log(result.errors[-1])
    return result


def preview_payment_reminders(
    engine: Engine, now: datetime, overdue_days: int = 3
) -> tuple[int, int]:
    """Dry run: (overdue projects, reminders a run would send today)."""
    with engine.connect() as connection:
        eligible, would_send = _overdue_and(connection, now, overdue_days, COUNT_UNSETTLED)
        return eligible, would_send.scalar_one()


@job_op(
    "overdue_payment_reminders",
    "Queue and send today's balance-due reminders, one per overdue project and day.",
    when_lock_held={"sent": 0},
)
def send_overdue_payment_reminders(
    context: dg.OpExecutionContext, config: ReminderConfig, database: Database, mailer: Mailer
) -> dg.Output[int]:
    now = utcnow()
    if config.dry_run:
        return preview_reminders(context, database.engine, now, config.overdue_days)
    result = send_payment_reminders(
        database.engine, mailer, now, overdue_days=config.overdue_days, log=context.log.warning
    )
    retried = add_earlier_counts(context, result)
    metadata = result.metadata(dry_run=False) | retried | job_bad_rows(context, database.engine)
    context.log.info(
        f"overdue_payment_reminders: {result.sent} sent, {result.failed} failed, "
        f"{result.already_sent_today} already sent today, via {mailer.target}"
    )
    if result.failed:
        # Visible as a failed run (and alerted); a re-run retries exactly the FAILED rows.
        raise dg.Failure(
            description=f"{result.failed} payment reminders could not be sent: "
            + "; ".join(result.errors[:5]),
            metadata=metadata,
        )
    return dg.Output(result.sent, metadata=metadata)


def preview_reminders(
    context: dg.OpExecutionContext, engine: Engine, now: datetime, overdue_days: int
) -> dg.Output[int]:
    """Dry run: overdue projects, and how many reminders a run would send today."""
    result = ReminderResult()
    result.eligible_projects, would_send = preview_payment_reminders(engine, now, overdue_days)
    context.log.info(
        f"dry run: {result.eligible_projects} overdue projects, {would_send} reminders would be sent"
    )
    return dg.Output(0, metadata={**result.metadata(dry_run=True), "would_send": would_send})


overdue_payment_reminders = one_op_job(
    "overdue_payment_reminders", send_overdue_payment_reminders, __doc__.splitlines()[0]
)


defs = dg.Definitions(jobs=[overdue_payment_reminders])
