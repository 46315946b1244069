"""The run queue of the production instance: hand-launched runs get the project's tags, and
runs a schedule or sensor submits during a maintenance window are held.

A run launched from the UI's "Materialize" button, a UI backfill or GraphQL runs as the
implicit `__ASSET_JOB` with none of the tags the schedule table gives the asset's own job:
no `dagster/priority` for the queue, no `dagster/max_runtime` for run monitoring, no
`ops/singleton` for the singleton limit and `ops-platform status`. This coordinator is
Dagster's `QueuedRunCoordinator` that first adds those tags (never overriding one the run
already has), so every run of an asset is queued, bounded and counted like a scheduled one.

A run a schedule, a sensor or an automation-condition sensor submits while a window covers
its group (`ops/group`) also gets `ops/held=maintenance` before it is queued, so it never
starts during the window, even before `maintenance_window_alert_sensor`'s next minute
(ops_platform.held_runs releases it when the window ends). The windows are read from the
app database of the settings; when they cannot be read the run is queued unheld and a
warning logged: a submit never fails because of a window lookup.
"""

from __future__ import annotations

import logging

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from ops_platform.held_runs import HELD, HELD_TAG, SWITCH_JOB, is_held, requested_automatically
from ops_platform.maintenance import GROUP_TAG, window_over
from ops_platform.schedules.catalog import manual_run_tags

logger = logging.getLogger(__name__)


def missing_project_tags(run) -> dict[str, str]:
    """The project's tags a run of assets lacks (empty for a run of a job with its tags)."""
    if not run.asset_selection:
        return {}
    names = sorted(key.to_user_string() for key in run.asset_selection)
    return {key: value for key, value in manual_run_tags(names).items() if key not in run.tags}


def window_holding(run, settings):
    """The active window that must hold `run` at submit (None: queue it as it is). A run
    launched by hand is the operator's choice; the `maintenance_window` job ends windows."""
    if settings is None or run.job_name == SWITCH_JOB or is_held(run):
        return None
    if not requested_automatically(run):
        return None
    return window_over(settings, run.tags.get(GROUP_TAG))


def settings_or_none():
    """The process's settings; None (nothing held at submit) when they do not load, so the
    daemon and the webserver still start and queue runs."""
    from ops_platform.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as error:
        logger.warning("settings do not load (%s): runs are not held at submit", error)
        return None


class ProjectTagsRunCoordinator(QueuedRunCoordinator):
    """`QueuedRunCoordinator` (same config) that tags hand-launched asset runs first and
    holds the runs a schedule or sensor submits during a maintenance window."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._settings = settings_or_none()

    def submit_run(self, context: SubmitRunContext):
        run = context.dagster_run
        tags = missing_project_tags(run)
        window = window_holding(run.with_tags({**run.tags, **tags}), self._settings)
        if window is not None:
            tags[HELD_TAG] = HELD
        if tags:
            self._instance.add_run_tags(run.run_id, tags)
            run = self._instance.get_run_by_id(run.run_id)
            context = SubmitRunContext(run, context.workspace)
        if window is not None:
            self._instance.report_engine_event(
                f"held in the run queue until it ends: {window.describe()}", run
            )
        return super().submit_run(context)
