"""Runs launched by hand (UI Materialize, backfills) get the project's tags from the run
queue, and `ops-platform status` counts them with the asset's job."""

from pathlib import Path

import dagster as dg
import yaml
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ops_platform.definitions import defs
from ops_platform.run_coordinator import ProjectTagsRunCoordinator
from ops_platform.schedules.catalog import job_tags
from ops_platform.status import run_records

REPO = defs.get_repository_def()
COORDINATOR = {
    "module": "ops_platform.run_coordinator",
    "class": "ProjectTagsRunCoordinator",
    "config": {"dequeue_interval_seconds": 2},
}
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _origin(job_name: str) -> RemoteJobOrigin:
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="ops_platform.definitions")
    )
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def _submit(instance, assets: list[str], tags=None):
    """A run as the UI's Materialize button creates it, handed to the run queue."""
    keys = [dg.AssetKey(name) for name in assets]
    job = REPO.get_implicit_job_def_for_assets(keys)
    run = instance.create_run_for_job(
        job_def=job,
        asset_selection=frozenset(keys),
        tags=tags or {},
        remote_job_origin=_origin(job.name),
    )
    assert job.name == "__ASSET_JOB" and "dagster/priority" not in run.tags
    return instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))


def test_a_materialize_by_hand_gets_the_asset_jobs_tags_and_counts_in_status():
    with dg.instance_for_test(overrides={"run_coordinator": COORDINATOR}) as instance:
        assert isinstance(instance.run_coordinator, ProjectTagsRunCoordinator)
        run = _submit(instance, ["user_trust_scores"])
        assert run.status == dg.DagsterRunStatus.QUEUED
        for key, value in job_tags("user_trust_scores").items():
            assert run.tags[key] == value
        assert [
            r.dagster_run.run_id for r in run_records(instance, "user_trust_scores_job", 5)
        ] == [run.run_id]


def test_tags_given_at_launch_are_kept_and_several_assets_get_the_strictest():
    with dg.instance_for_test(overrides={"run_coordinator": COORDINATOR}) as instance:
        run = _submit(instance, ["user_trust_scores"], tags={"dagster/max_runtime": "60"})
        assert run.tags["dagster/max_runtime"] == "60"
        both = _submit(instance, ["stream_rankings", "user_trust_scores"])
        assert both.tags["dagster/priority"] == job_tags("stream_rankings")["dagster/priority"]
        assert int(both.tags["dagster/max_runtime"]) == sum(
            int(job_tags(name)["dagster/max_runtime"])
            for name in ("stream_rankings", "user_trust_scores")
        )


def test_every_production_instance_uses_it():
    for name in ("dagster.yaml", "dagster.s3-logs.yaml", "docker/dagster.yaml"):
        config = yaml.safe_load((DEPLOY / name).read_text())["run_coordinator"]
        assert (config["module"], config["class"]) == (COORDINATOR["module"], COORDINATOR["class"])
