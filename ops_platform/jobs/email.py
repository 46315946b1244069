"""`email_queue`: send the due batches of `notification_email_queue`.

A batch is due when it is `pending` and scheduled, `failed` and its backoff has passed, or
`processing` with a lease older than `lease_seconds` (a crashed run's batch comes back).
Due batches are claimed so that two runs never take the same batch (`_email_queue`). Each
batch becomes one email to its user with the stable Message-ID
`<notification-batch-{id}@ops-platform>` (`_email_messages`); then `sent`, or `failed` with
the error and a backoff, `dead` after `max_attempts` (or at once for a permanent refusal / a
bad row).
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.engine import utcnow
from ops_platform.jobs._common import (
    Tally,
    add_earlier_counts,
    backoff_seconds,
    count_done,
    job_op,
    one_op_job,
)
from ops_platform.jobs._email_messages import (
    BadBatch,
    build_batch_email,
    load_recipients_and_notifications,
)
from ops_platform.jobs._email_queue import (
    ClaimedBatch,
    claim_due_batches,
    count_due,
    mark_failed,
    mark_sent,
    outcome_connection,
    release,
)
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database
from ops_platform.resources.mailer import Mailer, MailError, MailServerUnavailable

SERVER_RETRIES = 3  # run-level retries when the mail server cannot be reached


class EmailQueueConfig(dg.Config):
    max_batches: int = Field(default=50, gt=0, le=100_000, description="Batches claimed per run.")
    lease_seconds: int = Field(
        default=300, ge=10, description="A claim older than this is a crashed run's; it comes back."
    )
    max_attempts: int = Field(default=5, ge=1, description="Attempts before a batch is dead.")
    dry_run: bool = Field(
        default=False, description="Count the due batches; claim and send nothing."
    )


@dataclass
class EmailQueueResult(Tally):
    """Batches by what the run did with them (`due` is counted by a dry run only)."""

    COUNTED = ("due", "claimed", "sent", "failed", "dead", "released", "lease_lost")
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def metadata(self, dry_run: bool = False) -> dict:
        return {
            "dry_run": dry_run,
            **self.counted(),
            "duration_s": round(self.seconds, 3),
            "mails_per_s": round(self.sent / self.seconds, 1)
            if self.seconds and self.sent
            else 0.0,
        }


# --- the rule -------------------------------------------------------------------------------------


def send_due_emails(
    engine: Engine,
    mailer: Mailer,
    now: datetime,
    *,
    max_batches: int = 50,
    lease_seconds: int = 300,
    max_attempts: int = 5,
    log: LogLine | None = None,
) -> EmailQueueResult:
    """Claim up to `max_batches` due batches and send each; see the module docstring.

    Raises MailServerUnavailable (after giving the unsent claims back) when the mail
    server cannot be reached: an outage must not use up the batches' attempts.
    """
    log = log or (lambda _message: None)
    started = time.monotonic()
    result = EmailQueueResult()
    batches = claim_due_batches(engine, now, max_batches, lease_seconds)
    count_done(result, claimed=len(batches))
    if not batches:
        result.seconds = time.monotonic() - started
        return result
    claimed_at = now
    users, notes = load_recipients_and_notifications(engine, batches)

    def at() -> datetime:  # `now` moved on by the time this run has taken
        return now + timedelta(seconds=time.monotonic() - started)

    with outcome_connection(engine) as marks:

        def record_failure(batch: ClaimedBatch, error: str, permanent: bool) -> None:
            status = mark_failed(marks, batch, claimed_at, at(), error, max_attempts, permanent)
            if status is None:
                count_done(result, lease_lost=1)
            else:
                count_done(result, **{status: 1})
                result.errors.append(error)

        for position, batch in enumerate(batches):
            if time.monotonic() - started > lease_seconds * 0.8:
                # Near the end of the lease another run may take these: hand them back now.
                count_done(result, released=release(marks, batches[position:], claimed_at))
                log(f"lease nearly over: {len(batches) - position} batches handed back")
                break
            try:
                message = build_batch_email(batch, users, notes, mailer.mail_from, at())
            except BadBatch as bad:
                record_failure(batch, str(bad), permanent=True)
                continue
            try:
                mailer.send(message)
            except MailServerUnavailable as down:
                # The message in hand may be what makes the server hang up: it pays an attempt.
                if down.during_send:
                    record_failure(batch, str(down), permanent=False)
                    rest = batches[position + 1 :]
                else:
                    rest = batches[position:]
                count_done(result, released=release(marks, rest, claimed_at))
                result.seconds = time.monotonic() - started
                log(
                    f"mail server unavailable after {result.sent} sent; {result.released} batches handed back: {down}"
                )
                raise
            except MailError as error:
                record_failure(batch, str(error), permanent=error.permanent)
                continue
            if mark_sent(marks, batch, claimed_at, at()):
                count_done(result, sent=1)
            else:
                count_done(result, lease_lost=1)
    result.seconds = time.monotonic() - started
    return result


# --- Dagster -------------------------------------------------------------------------------------


@job_op(
    "email_queue",
    "Claim due notification email batches, send them, record sent/failed/dead.",
    when_lock_held={"sent": 0},
    lock_held_reason="another email_queue run is sending",
)
def process_email_queue(
    context: dg.OpExecutionContext, config: EmailQueueConfig, database: Database, mailer: Mailer
) -> dg.Output[int]:
    now = utcnow()
    if config.dry_run:
        return preview_email_queue(context, config, database.engine, now)
    try:
        result = send_due_emails(
            database.engine,
            mailer,
            now,
            max_batches=config.max_batches,
            lease_seconds=config.lease_seconds,
            max_attempts=config.max_attempts,
            log=context.log.warning,
        )
    except MailServerUnavailable as down:
        raise retry_or_fail(context, mailer, down) from down
    retried = add_earlier_counts(context, result)
    for error in result.errors[:20]:
        context.log.warning(error)
    context.log.info(
        f"email_queue: {result.claimed} claimed, {result.sent} sent, {result.failed} failed, "
        f"{result.dead} dead via {mailer.target} in {result.seconds:.2f}s"
    )
    metadata = result.metadata() | job_bad_rows(context, database.engine) | retried
    return dg.Output(result.sent, metadata=metadata)


def preview_email_queue(
    context: dg.OpExecutionContext, config: EmailQueueConfig, engine: Engine, now: datetime
) -> dg.Output[int]:
    """Dry run: how many batches are due, and how many a run would send."""
    result = EmailQueueResult()
    result.due = count_due(engine, now, config.lease_seconds)
    would_send = min(result.due, config.max_batches)
    context.log.info(f"dry run: {result.due} batches due; a run would send up to {would_send}")
    return dg.Output(0, metadata={**result.metadata(dry_run=True), "would_send": would_send})


def retry_or_fail(
    context: dg.OpExecutionContext, mailer: Mailer, down: MailServerUnavailable
) -> Exception:
    """A mail server outage: retry the run later, a few times, then fail it."""
    if context.retry_number < SERVER_RETRIES:
        wait = backoff_seconds(context.retry_number, base=10)
        context.log.warning(f"{down}; retry {context.retry_number + 1} in {wait:.0f}s")
        return dg.RetryRequested(max_retries=SERVER_RETRIES, seconds_to_wait=wait)
    return dg.Failure(description=f"mail server unavailable ({mailer.target}): {down}")


email_queue = one_op_job("email_queue", process_email_queue, __doc__.splitlines()[0])


defs = dg.Definitions(jobs=[email_queue])
