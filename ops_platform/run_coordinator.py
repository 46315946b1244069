"""The run queue of the production instance, giving hand-launched runs the project's tags.

A run launched from the UI's "Materialize" button, a UI backfill or GraphQL runs as the
implicit `__ASSET_JOB` with none of the tags the schedule table gives the asset's own job:
no `dagster/priority` for the queue, no `dagster/max_runtime` for run monitoring, no
`ops/singleton` for the singleton limit and `ops-platform status`. This coordinator is
Dagster's `QueuedRunCoordinator` that first adds those tags (never overriding one the run
already has), so every run of an asset is queued, bounded and counted like a scheduled one.
"""

from __future__ import annotations

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from ops_platform.schedules.catalog import manual_run_tags


def missing_project_tags(run) -> dict[str, str]:
    """The project's tags a run of assets lacks (empty for a run of a job with its tags)."""
    if not run.asset_selection:
        return {}
    names = sorted(key.to_user_string() for key in run.asset_selection)
    return {key: value for key, value in manual_run_tags(names).items() if key not in run.tags}


class ProjectTagsRunCoordinator(QueuedRunCoordinator):
    """`QueuedRunCoordinator` (same config) that tags hand-launched asset runs first."""

    def submit_run(self, context: SubmitRunContext):
        run = context.dagster_run
        tags = missing_project_tags(run)
        if tags:
            self._instance.add_run_tags(run.run_id, tags)
            run = self._instance.get_run_by_id(run.run_id)
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
