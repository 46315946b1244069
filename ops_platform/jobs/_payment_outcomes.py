"""What one provider check of a pending payment records, and when the next check is due.

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
checks record one check. The outcomes are written with one statement per kind of outcome.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, text

from ops_platform.db import schema
from ops_platform.db.engine import upsert
from ops_platform.resources.payments import (
    FINAL_STATUSES,
    PaymentNotFound,
    ProviderError,
    ProviderStatus,
)

# Seconds after creation of the first checks; then one every STEADY_INTERVAL_S.
FIRST_CHECKS_S = (5, 10, 15, 20, 30)
STEADY_INTERVAL_S = 60
FIRST_CHECK_DELAY = timedelta(seconds=FIRST_CHECKS_S[0])
DEFAULT_EXPIRE_MINUTES = 30

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


# --- the outcome of one check ----------------------------------------------------------------


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


# --- recording the outcomes ------------------------------------------------------------------


def record_outcomes(connection: Connection, outcomes: list[dict], now: datetime) -> int:
    """Write the outcomes `decide` gave (checked at `now`); returns how many payments they
    changed: the guards leave a payment another writer changed first as it is."""
    settle = [o for o in outcomes if "next_check_at" not in o]
    reschedule = [o for o in outcomes if "next_check_at" in o]
    written = connection.execute(_SETTLE, settle).rowcount if settle else 0
    written += connection.execute(_RESCHEDULE, reschedule).rowcount if reschedule else 0
    _record_errors(connection, settle + reschedule, now)
    return written


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
