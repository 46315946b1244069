"""What the sensors share."""

import json

import dagster as dg

# Statuses of a run that has been launched and not yet finished.
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def job_run_active(instance: dg.DagsterInstance, job_name: str) -> bool:
    """Is a run of `job_name` queued or running? Sensors then skip, so a job never overlaps."""
    return bool(
        instance.get_run_records(
            dg.RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES), limit=1
        )
    )


def open_incidents(cursor: str | None) -> dict[str, dict]:
    """The open incidents an alerting sensor keeps in its cursor (`{"open": {...}}`)."""
    try:
        return dict(json.loads(cursor)["open"]) if cursor else {}
    except (ValueError, KeyError, TypeError):
        return {}
