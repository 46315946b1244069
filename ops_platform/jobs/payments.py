"""`payment_status_check` (sensor-driven) and `payment_status_sweep` (every 30 min).

Both ask the provider about pending payments and record each outcome: what a check records
and when the next one is due is in `ops_platform.jobs._payment_outcomes`, how payments are
picked and checked batch by batch in `ops_platform.jobs._payment_checks`. The sensor that
launches `payment_status_check` for the due payments is `ops_platform.sensors.payments`.
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.jobs._common import (
    DestructiveJobConfig,
    add_earlier_counts,
    job_op,
    one_op_job,
)
from ops_platform.jobs._payment_checks import CheckReport, check_due_payments, sweep_pending
from ops_platform.jobs._payment_outcomes import DEFAULT_EXPIRE_MINUTES
from ops_platform.resources.database import Database
from ops_platform.resources.payments import PaymentProvider


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


def _options(context: dg.OpExecutionContext, config: PaymentCheckOptions) -> dict:
    """What both jobs pass to the checks from their run config."""
    return {
        "batch_size": config.batch_size,
        "expire_after": timedelta(minutes=config.expire_after_minutes),
        "concurrency": config.concurrency,
        "dry_run": config.dry_run,
        "log": context.log.info,
    }


def _checks_metadata(
    context: dg.OpExecutionContext,
    config: PaymentCheckOptions,
    database: Database,
    report: CheckReport,
) -> dict:
    """Output metadata of a run's checks, earlier attempts' included; logs the errors."""
    retried = add_earlier_counts(context, report)
    for message in report.errors:
        context.log.warning(message)
    return report.metadata() | {
        "dry_run": config.dry_run,
        **job_bad_rows(context, database.engine),
        **retried,
    }


@job_op(
    "payment_status_check",
    "Ask the provider about due (or given) pending payments and record each outcome.",
    alone=False,  # the sensor launches runs side by side; the guarded updates keep them apart
)
def check_payment_status(
    context: dg.OpExecutionContext,
    config: PaymentCheckConfig,
    database: Database,
    payments: PaymentProvider,
) -> dg.Output[int]:
    report = check_due_payments(
        database.engine,
        payments,
        payment_ids=config.payment_ids,
        max_payments=config.max_payments,
        **_options(context, config),
    )
    metadata = _checks_metadata(context, config, database, report)
    context.log.info(
        f"payment_status_check: {dict(report.outcomes) or 'nothing due'}"
        f"{' (dry run, nothing written)' if config.dry_run else ''}"
    )
    return dg.Output(report.written, metadata=metadata)


@job_op(
    "payment_status_sweep",
    "Check every pending payment with the provider, in batches.",
    when_lock_held={"rows_changed": 0},
    lock_held_reason="another sweep holds the lock",
)
def sweep_pending_payments(
    context: dg.OpExecutionContext,
    config: PaymentSweepConfig,
    database: Database,
    payments: PaymentProvider,
) -> dg.Output[int]:
    report = sweep_pending(database.engine, payments, **_options(context, config))
    metadata = _checks_metadata(context, config, database, report)
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
