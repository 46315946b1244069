"""`payment_status_check` (sensor-driven) and `payment_status_sweep` (every 30 min).

A pending payment is checked with the provider at 5 s, 10 s, 15 s, 20 s, 30 s and 60 s after
its creation, then every 60 s, until it settles or expires (30 min by default). Each check
records its outcome:

- a final provider status (succeeded, failed, canceled, expired) → `status`, `settled_at`;
  no further check;
- `pending` → `check_count + 1`, `last_checked_at`, and `next_check_at` = the next slot of
  the schedule after now (a late check does not shift the schedule; the last slot is the
  expiry time); past the expiry → `status = 'expired'`;
- a provider error (unreachable, timeout, 5xx through every retry, malformed answer) →
  `last_error` (the project's `payment_check_errors`, cleared by the next clean check),
  `check_count + 1` and `next_check_at` advanced the same way, `status`
  untouched. A payment the provider does not know (404) past its expiry expires.

`settled_at` is the time the payment reached its final status. Every update is guarded by
`status = 'pending'` (a payment settled meanwhile by a webhook or another check is never
overwritten), and a reschedule also by the `check_count` it read, so two overlapping
checks record one check. The provider is asked in parallel (`concurrency` threads); the
outcomes are written with one statement per kind of outcome. A payment with a negative or
absurd amount is a bad row: never checked, never changed, counted.
"""

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, text

from ops_platform.db import schema
from ops_platform.db.bad_rows import ABSURD_CENTS, job_bad_rows
from ops_platform.db.engine import as_utc, upsert, utcnow
from ops_platform.jobs._common import (
    DestructiveJobConfig,
    add_earlier_counts,
    lock_held_output,
    note_done,
    one_op_job,
    singleton,
    transient_retries,
)
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database
from ops_platform.resources.payments import (
    FINAL_STATUSES,
    PaymentNotFound,
    PaymentProvider,
    ProviderError,
    ProviderStatus,
    ProviderUnavailable,
)
from ops_platform.schedules.catalog import op_tags

# Seconds after creation of the first checks; then one every STEADY_INTERVAL_S.
FIRST_CHECKS_S = (5, 10, 15, 20, 30)
STEADY_INTERVAL_S = 60
FIRST_CHECK_DELAY = timedelta(seconds=FIRST_CHECKS_S[0])
DEFAULT_EXPIRE_MINUTES = 30
MAX_ERRORS_REPORTED = 10

_SETTLE = text(
    "UPDATE payments SET status = :status, settled_at = :now, last_checked_at = :now, "
    "check_count = check_count + 1, next_check_at = NULL "
    "WHERE id = :id AND status = 'pending'"
)
_RESCHEDULE = text(
    "UPDATE payments SET check_count = check_count + 1, last_checked_at = :now, "
    "next_check_at = :next_check_at "
    "WHERE id = :id AND status = 'pending' AND check_count = :seen_count"
)


@dataclass(frozen=True)
class PendingPayment:
    id: int
    provider_ref: str
    created_at: datetime
    check_count: int


@dataclass
class CheckReport:
    checked: int = 0
    outcomes: Counter = field(
        default_factory=Counter
    )  # succeeded/failed/canceled/expired/pending/error
    written: int = 0  # payments updated (0 in a dry run)
    unchanged: int = 0  # outcomes not written: another writer changed the payment first
    unavailable: int = 0  # errors that were the provider being unreachable
    errors: list[str] = field(default_factory=list)  # the first few error messages

    def merge(self, other: "CheckReport") -> "CheckReport":
        self.checked += other.checked
        self.written += other.written
        self.outcomes.update(other.outcomes)
        self.unchanged += other.unchanged
        self.unavailable += other.unavailable
        self.errors.extend(other.errors[: max(0, MAX_ERRORS_REPORTED - len(self.errors))])
        return self

    def counts(self) -> dict[str, int]:
        """The counters of a recorded check, as `note_done` takes them."""
        outcomes = {f"outcomes__{name}": n for name, n in self.outcomes.items()}
        return {
            "checked": self.checked,
            "written": self.written,
            "unchanged": self.unchanged,
            "unavailable": self.unavailable,
            **outcomes,
        }

    def metadata(self) -> dict:
        metadata = {
            "checked": self.checked,
            "rows_changed": self.written,
            "unchanged": self.unchanged,
        }
        for outcome in ("succeeded", "failed", "canceled", "expired", "pending", "error"):
            metadata[outcome if outcome != "error" else "errors"] = self.outcomes.get(outcome, 0)
        if self.errors:
            metadata["first_errors"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in self.errors))
        return metadata


# --- the schedule ----------------------------------------------------------------------------


def next_check_offset(elapsed_s: float) -> float:
    """Seconds after creation of the first check slot strictly after `elapsed_s`."""
    for offset in FIRST_CHECKS_S:
        if offset > elapsed_s:
            return offset
    return STEADY_INTERVAL_S * (int(elapsed_s // STEADY_INTERVAL_S) + 1)


def next_check_time(created_at: datetime, now: datetime, expire_after: timedelta) -> datetime:
    elapsed = (now - created_at).total_seconds()
    return min(
        created_at + timedelta(seconds=next_check_offset(elapsed)), created_at + expire_after
    )


def decide(
    payment: PendingPayment,
    answer: ProviderStatus | ProviderError,
    now: datetime,
    expire_after: timedelta,
) -> tuple[str, dict]:
    """(outcome, parameters of the update that records it) for one check."""
    expired = now >= payment.created_at + expire_after
    if isinstance(answer, ProviderError):
        if expired and isinstance(answer, PaymentNotFound):
            return "expired", {
                "id": payment.id,
                "status": "expired",
                "now": now,
                "error": str(answer),
            }
        return "error", _reschedule(payment, now, expire_after, error=str(answer))
    if answer.status in FINAL_STATUSES:
        return answer.status, {"id": payment.id, "status": answer.status, "now": now, "error": None}
    if expired:
        return "expired", {"id": payment.id, "status": "expired", "now": now, "error": None}
    return "pending", _reschedule(payment, now, expire_after, error=None)


def _reschedule(
    payment: PendingPayment, now: datetime, expire_after: timedelta, error: str | None
) -> dict:
    return {
        "id": payment.id,
        "now": now,
        "next_check_at": next_check_time(payment.created_at, now, expire_after),
        "error": error,
        "seen_count": payment.check_count,
    }


# --- reading ---------------------------------------------------------------------------------


def _pending(row) -> PendingPayment:
    return PendingPayment(row.id, row.provider_ref, as_utc(row.created_at), row.check_count)


_COLUMNS = (
    schema.payments.c.id,
    schema.payments.c.provider_ref,
    schema.payments.c.created_at,
    schema.payments.c.check_count,
)


def checkable():
    """Pending with an amount that can be real: a negative or absurd amount is a bad row,
    never checked nor changed (counted in `bad_rows`)."""
    p = schema.payments.c
    return and_(p.status == "pending", p.amount_cents >= 0, p.amount_cents <= ABSURD_CENTS)


def due_condition(now: datetime):
    """Pending and due: `next_check_at` reached, or never scheduled and 5 s old."""
    p = schema.payments.c
    return and_(
        checkable(),
        or_(
            p.next_check_at <= now,
            and_(p.next_check_at.is_(None), p.created_at <= now - FIRST_CHECK_DELAY),
        ),
    )


def load_due(engine: Engine, now: datetime, limit: int) -> list[PendingPayment]:
    """Due pending payments, longest overdue first, at most `limit`."""
    p = schema.payments.c
    query = (
        select(*_COLUMNS)
        .where(due_condition(now))
        .order_by(func.coalesce(p.next_check_at, p.created_at), p.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [_pending(row) for row in connection.execute(query)]


def load_pending(engine: Engine, ids: Iterable[int]) -> list[PendingPayment]:
    """The payments among `ids` that are still pending (others were settled meanwhile)."""
    ids = sorted(set(ids))
    found: list[PendingPayment] = []
    with engine.connect() as connection:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            query = select(*_COLUMNS).where(schema.payments.c.id.in_(chunk), checkable())
            found.extend(
                _pending(row) for row in connection.execute(query.order_by(schema.payments.c.id))
            )
    return found


# --- checking --------------------------------------------------------------------------------


def ask_provider(
    provider: PaymentProvider, payments: Sequence[PendingPayment], concurrency: int
) -> list[ProviderStatus | ProviderError]:
    """The provider's answer (or the error) for each payment, in order."""

    def ask(payment: PendingPayment) -> ProviderStatus | ProviderError:
        try:
            return provider.get_status(payment.provider_ref, attempt=payment.check_count)
        except ProviderError as error:
            return error

    if provider.is_simulator or concurrency <= 1 or len(payments) <= 1:
        return [ask(payment) for payment in payments]
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(payments)), thread_name_prefix="payment-check"
    ) as pool:
        return list(pool.map(ask, payments))


def check_payments(
    engine: Engine,
    provider: PaymentProvider,
    payments: Sequence[PendingPayment],
    *,
    now: datetime | None = None,
    expire_after: timedelta = timedelta(minutes=DEFAULT_EXPIRE_MINUTES),
    concurrency: int = 8,
    dry_run: bool = False,
) -> CheckReport:
    """Ask the provider about `payments` and record each outcome (see the module docstring)."""
    report = CheckReport()
    if not payments:
        return report
    answers = ask_provider(provider, payments, concurrency)
    now = now or utcnow()  # the check's time is when the answers came back
    settle, reschedule = [], []
    for payment, answer in zip(payments, answers):
        outcome, params = decide(payment, answer, now, expire_after)
        report.outcomes[outcome] += 1
        (reschedule if "next_check_at" in params else settle).append(params)
        if isinstance(answer, ProviderError):
            report.unavailable += isinstance(answer, ProviderUnavailable)
            if len(report.errors) < MAX_ERRORS_REPORTED:
                report.errors.append(f"payment {payment.id}: {answer}")
    report.checked = len(payments)
    if dry_run:
        return report
    with engine.begin() as connection:
        written = connection.execute(_SETTLE, settle).rowcount if settle else 0
        written += connection.execute(_RESCHEDULE, reschedule).rowcount if reschedule else 0
        _record_errors(connection, settle + reschedule, now)
    report.written, report.unchanged = written, report.checked - written
    note_done(**report.counts())
    return report


def _record_errors(connection: Connection, outcomes: list[dict], now: datetime) -> None:
    """Keep the provider error of each payment this check wrote (the guarded updates left
    `last_checked_at = now` on exactly those); a clean check clears it."""
    errors = schema.payment_check_errors
    p = schema.payments.c
    ids = [o["id"] for o in outcomes]
    written = set(
        connection.execute(select(p.id).where(p.id.in_(ids), p.last_checked_at == now)).scalars()
    )
    failed = [
        {"payment_id": o["id"], "last_error": o["error"], "checked_at": now}
        for o in outcomes
        if o["id"] in written and o["error"]
    ]
    cleared = [o["id"] for o in outcomes if o["id"] in written and not o["error"]]
    upsert(connection, errors, failed, ("payment_id",))
    if cleared:
        connection.execute(delete(errors).where(errors.c.payment_id.in_(cleared)))


def check_due_payments(
    engine: Engine,
    provider: PaymentProvider,
    *,
    payment_ids: Sequence[int] = (),
    max_payments: int = 500,
    batch_size: int = 100,
    now: datetime | None = None,
    log: LogLine | None = None,
    **options,
) -> CheckReport:
    """`payment_status_check`: the given payments still pending, or with none given every
    due pending payment (at most `max_payments`), in batches of `batch_size`."""
    payments = (
        load_pending(engine, payment_ids)
        if payment_ids
        else load_due(engine, now or utcnow(), max_payments)
    )
    report = CheckReport()
    for start in range(0, len(payments), batch_size):
        report.merge(
            check_payments(
                engine, provider, payments[start : start + batch_size], now=now, **options
            )
        )
        if log:
            log(f"checked {report.checked} of {len(payments)} payments")
    return report


def sweep_pending(
    engine: Engine,
    provider: PaymentProvider,
    *,
    batch_size: int = 200,
    now: datetime | None = None,
    log: LogLine | None = None,
    **options,
) -> CheckReport:
    """`payment_status_sweep`: every pending payment, in id order, `batch_size` at a time."""
    p = schema.payments.c
    report, after = CheckReport(), 0
    while True:
        query = select(*_COLUMNS).where(checkable(), p.id > after).order_by(p.id).limit(batch_size)
        with engine.connect() as connection:
            batch = [_pending(row) for row in connection.execute(query)]
        if not batch:
            return report
        report.merge(check_payments(engine, provider, batch, now=now, **options))
        after = batch[-1].id
        if log:
            log(f"swept {report.checked} pending payments so far (up to id {after})")


# --- Dagster ---------------------------------------------------------------------------------


class PaymentCheckOptions(DestructiveJobConfig):
    batch_size: int = Field(
        default=100, gt=0, le=10_000, description="Payments per provider round and transaction."
    )
    expire_after_minutes: int = Field(
        default=DEFAULT_EXPIRE_MINUTES,
        gt=0,
        description="A payment still pending this long after creation expires.",
    )
    concurrency: int = Field(
        default=8, ge=1, le=64, description="Parallel requests to the provider."
    )


class PaymentCheckConfig(PaymentCheckOptions):
    payment_ids: list[int] = Field(
        default_factory=list,
        description="Payments to check (the sensor passes the due ones); empty: every due payment.",
    )
    max_payments: int = Field(
        default=500, gt=0, description="Bound on due payments checked when no ids are given."
    )


class PaymentSweepConfig(PaymentCheckOptions):
    batch_size: int = Field(
        default=200, gt=0, le=10_000, description="Payments per provider round and transaction."
    )


def _options(config: PaymentCheckOptions) -> dict:
    return {
        "expire_after": timedelta(minutes=config.expire_after_minutes),
        "concurrency": config.concurrency,
        "dry_run": config.dry_run,
    }


def _checks_metadata(
    context: dg.OpExecutionContext,
    config: PaymentCheckOptions,
    database: Database,
    report: CheckReport,
    started: float,
) -> dict:
    """Output metadata of a run's checks, earlier attempts' included; logs the errors."""
    retried = add_earlier_counts(context, report)
    for message in report.errors:
        context.log.warning(message)
    return report.metadata() | {
        "dry_run": config.dry_run,
        "duration_s": round(time.perf_counter() - started, 3),
        **job_bad_rows(context, database.engine),
        **retried,
    }


@dg.op(
    tags=op_tags("payment_status_check"),
    description="Ask the provider about due (or given) pending payments and record each outcome.",
)
def check_payment_status(
    context: dg.OpExecutionContext,
    config: PaymentCheckConfig,
    database: Database,
    payments: PaymentProvider,
) -> dg.Output[int]:
    started = time.perf_counter()
    with transient_retries(context):
        report = check_due_payments(
            database.engine,
            payments,
            payment_ids=config.payment_ids,
            max_payments=config.max_payments,
            batch_size=config.batch_size,
            log=context.log.info,
            **_options(config),
        )
    metadata = _checks_metadata(context, config, database, report, started)
    context.log.info(
        f"payment_status_check: {dict(report.outcomes) or 'nothing due'}"
        f"{' (dry run, nothing written)' if config.dry_run else ''}"
    )
    return dg.Output(report.written, metadata=metadata)


@dg.op(
    tags=op_tags("payment_status_sweep"),
    description="Check every pending payment with the provider, in batches.",
)
def sweep_pending_payments(
    context: dg.OpExecutionContext,
    config: PaymentSweepConfig,
    database: Database,
    payments: PaymentProvider,
) -> dg.Output[int]:
    started = time.perf_counter()
    with transient_retries(context), singleton(context, database) as acting:
        if not acting:
            return lock_held_output("another sweep holds the lock", rows_changed=0)
        report = sweep_pending(
            database.engine,
            payments,
            batch_size=config.batch_size,
            log=context.log.info,
            **_options(config),
        )
    metadata = _checks_metadata(context, config, database, report, started)
    if report.errors and report.unavailable == report.checked:
        # Every check failed to reach the provider: the outcomes are recorded, but say it loudly.
        raise dg.Failure(
            description=f"payment provider unavailable: all {report.checked} checks failed; first: {report.errors[0]}",
            metadata=metadata,
        )
    context.log.info(
        f"payment_status_sweep: {report.checked} pending payments checked: {dict(report.outcomes)}"
    )
    return dg.Output(report.written, metadata=metadata)


payment_status_check = one_op_job(
    "payment_status_check",
    check_payment_status,
    "Check due pending payments with the provider (sensor-driven).",
)


payment_status_sweep = one_op_job(
    "payment_status_sweep",
    sweep_pending_payments,
    "Check every pending payment with the provider, in batches.",
)


defs = dg.Definitions(jobs=[payment_status_check, payment_status_sweep])
