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
from ops_platform.schedules.catalog import row_for
from ops_platform.sensors._common import job_sensor, request_when_due
from ops_platform.settings import Settings

INTERVAL_SECONDS = 3


def realtime_events_waiting(
    context: dg.SensorEvaluationContext, database: Database, realtime: RealtimePublisher
):
    """Requests a realtime_publish run when events wait in the outbox and none is queued or
    running."""
    if not realtime.enabled:
        return dg.SkipReason(
            "no Redis configured (OPS_REDIS_URL is not set): realtime events stay in the outbox"
        )

    def newest_run_key() -> str | None:
        newest = max_unpublished_id(database.engine)
        return None if newest is None else f"realtime_publish:{newest}"

    return request_when_due(
        context, realtime_publish, newest_run_key, "no unpublished realtime event"
    )


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    group = row_for("realtime_publish").group
    return [
        job_sensor(settings, realtime_events_waiting, realtime_publish, INTERVAL_SECONDS, group)
    ]
