"""`email_queue_due_sensor`: start `email_queue` as soon as mail is due, between the
every-minute schedule's ticks — never a second run while one is queued or running."""

import dagster as dg

from ops_platform.db.engine import utcnow
from ops_platform.jobs._email_queue import count_due
from ops_platform.jobs.email import email_queue
from ops_platform.resources.database import Database
from ops_platform.sensors._common import job_sensor, request_when_due
from ops_platform.settings import Settings

INTERVAL_SECONDS = 20


def email_queue_due(context: dg.SensorEvaluationContext, database: Database):
    """Requests an email_queue run when a batch is due and none is queued or running."""

    def due_run_key() -> str | None:
        now = utcnow()
        if not count_due(database.engine, now, cap=1):
            return None
        # One request per time bucket: a re-evaluated tick cannot launch a second run.
        return f"email_queue_due:{int(now.timestamp()) // INTERVAL_SECONDS}"

    return request_when_due(context, email_queue, due_run_key, "no email batch is due")


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    sensor = job_sensor(
        settings,
        email_queue_due,
        email_queue,
        INTERVAL_SECONDS,
        "email",
        name="email_queue_due_sensor",
    )
    return [sensor]
