"""Checking pending payments with the provider: which are due, asking the provider, recording
the outcomes (`ops_platform.jobs._payment_outcomes`) batch by batch, and the report of it.

The provider is asked in parallel (`concurrency` threads). A payment with a negative or
absurd amount is a bad row: never checked, never changed, counted.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from sqlalchemy import Engine, and_, func, or_, select

from ops_platform.db import schema
from ops_platform.db.bad_rows import ABSURD_CENTS
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.jobs._common import note_done
from ops_platform.jobs._payment_outcomes import (
    DEFAULT_EXPIRE_MINUTES,
    FIRST_CHECK_DELAY,
    PendingPayment,
    decide,
    record_outcomes,
)
from ops_platform.log_line import LogLine
from ops_platform.resources.payments import (
    PaymentProvider,
    ProviderError,
    ProviderStatus,
    ProviderUnavailable,
)

MAX_ERRORS_REPORTED = 10


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


def _pending_after(engine: Engine, after: int, limit: int) -> list[PendingPayment]:
    """The next `limit` checkable payments in id order after id `after`."""
    p = schema.payments.c
    query = select(*_COLUMNS).where(checkable(), p.id > after).order_by(p.id).limit(limit)
    with engine.connect() as connection:
        return [_pending(row) for row in connection.execute(query)]


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
    """Ask the provider about `payments` and record each outcome (see `_payment_outcomes`)."""
    report = CheckReport()
    if not payments:
        return report
    answers = ask_provider(provider, payments, concurrency)
    now = now or utcnow()  # the check's time is when the answers came back
    outcomes = []
    for payment, answer in zip(payments, answers):
        outcome, params = decide(payment, answer, now, expire_after)
        report.outcomes[outcome] += 1
        outcomes.append(params)
        if isinstance(answer, ProviderError):
            report.unavailable += isinstance(answer, ProviderUnavailable)
            if len(report.errors) < MAX_ERRORS_REPORTED:
                report.errors.append(f"payment {payment.id}: {answer}")
    report.checked = len(payments)
    if dry_run:
        return report
    with engine.begin() as connection:
        written = record_outcomes(connection, outcomes, now)
    report.written, report.unchanged = written, report.checked - written
    note_done(**report.counts())
    return report


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
    log: LogLine | None = None,
    **options,
) -> CheckReport:
    """`payment_status_sweep`: every pending payment, in id order, `batch_size` at a time;
    each batch checked by `check_payments` with `options`."""
    report, after = CheckReport(), 0
    while batch := _pending_after(engine, after, batch_size):
        report.merge(check_payments(engine, provider, batch, **options))
        after = batch[-1].id
        if log:
            log(f"swept {report.checked} pending payments so far (up to id {after})")
    return report
