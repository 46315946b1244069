"""`email_queue_due_sensor`: start `email_queue` as soon as mail is due, between the
every-minute schedule's ticks — never a second run while one is queued or running."""

import dagster as dg

from ops_platform.db.engine import utcnow
from ops_platform.jobs.email import count_due, email_queue
from ops_platform.resources.database import Database
from ops_platform.schedules.build import default_sensor_status
from ops_platform.sensors._common import job_run_active
from ops_platform.settings import Settings

INTERVAL_SECONDS = 20


def email_queue_due(context: dg.SensorEvaluationContext, database: Database):
    if job_run_active(context.instance, email_queue.name):
        return dg.SkipReason("an email_queue run is already queued or running")
    now = utcnow()
    if not count_due(database.engine, now, cap=1):
        return dg.SkipReason("no email batch is due")
    # One request per time bucket: a re-evaluated tick cannot launch a second run.
    bucket = int(now.timestamp()) // INTERVAL_SECONDS
    return dg.RunRequest(run_key=f"email_queue_due:{bucket}")


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    return [
        dg.sensor(
            name="email_queue_due_sensor",
            job=email_queue,
            minimum_interval_seconds=INTERVAL_SECONDS,
            default_status=default_sensor_status(settings, "email"),
            description="Requests an email_queue run when a batch is due and none is queued or running.",
        )(email_queue_due)
    ]
