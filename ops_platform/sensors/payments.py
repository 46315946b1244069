"""`payment_status_check_sensor`: launch `payment_status_check` runs for due payments.

Every few seconds it finds pending payments whose `next_check_at` has come (never
scheduled: 5 s after creation) and requests runs of up to `PAYMENTS_PER_RUN` payments.
A check is identified by (payment id, check_count): the cursor remembers the checks already
launched, so a payment whose check is queued or running is not launched again, and every
run key is made of the checks it carries (a re-evaluated tick cannot launch a duplicate).
Once a check is recorded the payment's check_count moves on and its next check is new.
A launched check that never got recorded (its run crashed) is relaunched after
`RELAUNCH_AFTER_S`; the 30-minute sweep covers anything else.
"""

import json
from datetime import datetime

import dagster as dg

from ops_platform.db.engine import utcnow
from ops_platform.jobs._payment_checks import load_due
from ops_platform.jobs._payment_outcomes import PendingPayment
from ops_platform.jobs.payments import payment_status_check
from ops_platform.resources.database import Database
from ops_platform.sensors._common import job_sensor
from ops_platform.settings import Settings

INTERVAL_SECONDS = 5
PAYMENTS_PER_RUN = 20
RUNS_PER_TICK = 10
RELAUNCH_AFTER_S = 600  # twice the job's max runtime


def _read_cursor(cursor: str | None) -> dict[int, tuple[int, float]]:
    """{payment id: (check_count launched, when)} from the cursor; a bad cursor starts afresh."""
    try:
        launched = json.loads(cursor or "{}").get("launched", {})
        return {int(pid): (int(count), float(at)) for pid, (count, at) in launched.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def _write_cursor(launched: dict[int, tuple[int, float]]) -> str:
    return json.dumps(
        {"launched": {str(pid): [count, at] for pid, (count, at) in sorted(launched.items())}}
    )


def plan_checks(
    due: list[PendingPayment],
    launched: dict[int, tuple[int, float]],
    now: datetime,
    truncated: bool,
    per_run: int = PAYMENTS_PER_RUN,
    max_runs: int = RUNS_PER_TICK,
) -> tuple[list[dg.RunRequest], dict[int, tuple[int, float]]]:
    """Run requests for the due checks not launched yet, and the cursor's new content."""
    stamp = now.timestamp()

    def in_flight(payment: PendingPayment) -> bool:
        previous = launched.get(payment.id)
        return (
            previous is not None
            and previous[0] == payment.check_count
            and stamp - previous[1] < RELAUNCH_AFTER_S
        )

    fresh = [payment for payment in due if not in_flight(payment)][: per_run * max_runs]
    requests = []
    for start in range(0, len(fresh), per_run):
        group = fresh[start : start + per_run]
        checks = ",".join(f"{p.id}@{p.check_count}" for p in group)
        requests.append(
            dg.RunRequest(
                run_key=f"payment_checks:{checks}",
                run_config={
                    "ops": {
                        "check_payment_status": {"config": {"payment_ids": [p.id for p in group]}}
                    }
                },
                tags={"ops/payment_checks": str(len(group))},
            )
        )

    # Keep what is still in flight: launched checks of payments still due with the same
    # count. When the due list was cut short, a launched payment may just be beyond it.
    due_counts = {p.id: p.check_count for p in due}
    kept = {
        pid: entry
        for pid, entry in launched.items()
        if stamp - entry[1] < RELAUNCH_AFTER_S
        and (due_counts.get(pid) == entry[0] or (truncated and pid not in due_counts))
    }
    kept.update({p.id: (p.check_count, stamp) for p in fresh})
    return requests, kept


def payment_checks_due(context: dg.SensorEvaluationContext, database: Database):
    """Launches payment_status_check runs for pending payments whose next check is due."""
    now = utcnow()
    launched = _read_cursor(context.cursor)
    limit = PAYMENTS_PER_RUN * RUNS_PER_TICK + len(launched)
    due = load_due(database.engine, now, limit)
    requests, kept = plan_checks(due, launched, now, truncated=len(due) == limit)
    cursor = _write_cursor(kept)
    if not requests:
        reason = "no payment check is due" if not due else f"{len(due)} due checks already launched"
        return dg.SensorResult(skip_reason=reason, cursor=cursor)
    context.log.info(
        f"launching {sum(len(r.run_config['ops']['check_payment_status']['config']['payment_ids']) for r in requests)} "
        f"payment checks in {len(requests)} runs"
    )
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    return [
        job_sensor(settings, payment_checks_due, payment_status_check, INTERVAL_SECONDS, "payments")
    ]
