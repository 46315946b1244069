"""`realtime_publish_sensor`: start `realtime_publish` as soon as events wait in the outbox.

Every few seconds: when unpublished `realtime_events` exist and no realtime_publish run is
queued or running, request one run keyed by the highest unpublished id (a re-evaluated
tick, or events that were already requested, launch nothing new). With no Redis
configured the events stay in the outbox and the sensor skips, saying why.
"""

import dagster as dg

from ops_platform.jobs.realtime import max_unpublished_id, realtime_publish
from ops_platform.resources.database import Database
from ops_platform.resources.realtime import RealtimePublisher
from ops_platform.schedules.build import default_sensor_status
from ops_platform.schedules.catalog import row_for
from ops_platform.sensors._common import job_run_active
from ops_platform.settings import Settings

INTERVAL_SECONDS = 3


def realtime_events_waiting(
    context: dg.SensorEvaluationContext, database: Database, realtime: RealtimePublisher
):
    if not realtime.enabled:
        return dg.SkipReason(
            "no Redis configured (OPS_REDIS_URL is not set): realtime events stay in the outbox"
        )
    newest = max_unpublished_id(database.engine)
    if newest is None:
        return dg.SkipReason("no unpublished realtime event")
    if job_run_active(context.instance, realtime_publish.name):
        return dg.SkipReason("a realtime_publish run is already queued or running")
    return dg.RunRequest(run_key=f"realtime_publish:{newest}")


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    return [
        dg.sensor(
            name="realtime_publish_sensor",
            job=realtime_publish,
            minimum_interval_seconds=INTERVAL_SECONDS,
            default_status=default_sensor_status(settings, row_for("realtime_publish").group),
            description="Requests a realtime_publish run when events wait in the outbox and none is queued or running.",
        )(realtime_events_waiting)
    ]
