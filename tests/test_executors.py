"""OPS_EXECUTOR picks the executor of every job; steps carry the Celery queue of their row."""

import dagster as dg
import pytest

from ops_platform.definitions import build_definitions
from ops_platform.executors import CELERY_CONFIG_SOURCE
from ops_platform.schedules.catalog import CELERY_QUEUE_TAG, SCHEDULES, step_queue
from ops_platform.settings import SettingsError, load_settings

BROKER = "pyamqp://guest:s3cret-broker@127.0.0.1:5672//"


# Its two steps share the job's lock, so they always run one after the other, in-process.
PINNED_IN_PROCESS = {"database_maintenance"}


def _jobs(defs: dg.Definitions) -> list[dg.JobDefinition]:
    return list(defs.get_repository_def().get_all_jobs())


def _executors(defs: dg.Definitions) -> set[str]:
    return {job.executor_def.name for job in _jobs(defs) if job.name not in PINNED_IN_PROCESS}


@pytest.mark.parametrize(
    ("name", "executor"),
    [
        ("in_process", "in_process"),
        ("multiprocess", "multiprocess"),
        ("celery", "celery"),
        ("docker", "docker"),
        ("k8s", "k8s"),
    ],
)
def test_every_job_runs_on_the_chosen_executor(name, executor):
    env = {"OPS_EXECUTOR": name, "OPS_CELERY_BROKER_URL": BROKER}
    defs = build_definitions(load_settings(env))
    assert _executors(defs) == {executor}
    assert defs.get_job_def("database_maintenance").executor_def.name == "in_process"


def test_default_is_in_process():
    defs = build_definitions(load_settings({}))
    assert _executors(defs) == {"in_process"}


def test_celery_config_keeps_the_broker_secret_and_redelivers_lost_steps():
    defs = build_definitions(
        load_settings({"OPS_EXECUTOR": "celery", "OPS_CELERY_BROKER_URL": BROKER})
    )
    job = defs.get_job_def("session_cleanup")
    # The broker URL is an environment reference, resolved in the run, never a value.
    assert "s3cret-broker" not in repr(job.executor_def.__dict__)
    assert CELERY_CONFIG_SOURCE["task_acks_late"] is True
    assert CELERY_CONFIG_SOURCE["task_reject_on_worker_lost"] is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPS_EXECUTOR": "spark"}, "OPS_EXECUTOR='spark' is unknown"),
        ({"OPS_EXECUTOR": "celery"}, "OPS_EXECUTOR=celery needs OPS_CELERY_BROKER_URL"),
        (
            {"OPS_EXECUTOR": "celery", "OPS_CELERY_BROKER_URL": "http://x"},
            "OPS_CELERY_BROKER_URL is not a broker URL",
        ),
    ],
)
def test_bad_executor_settings_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_every_step_carries_its_queue():
    defs = build_definitions(load_settings({}))
    for row in SCHEDULES:
        job = defs.get_job_def(row.job_name)
        tagged = [n for n in job.graph.node_dict.values() if CELERY_QUEUE_TAG in n.tags]
        assert tagged, row.job_name
        for node in tagged:
            assert node.tags[CELERY_QUEUE_TAG] == step_queue(row.target), (row.job_name, node.name)
    # Untagged steps (asset checks) go to Celery's default queue, the light one.
    assert CELERY_CONFIG_SOURCE["task_default_queue"] == "light"
    assert step_queue("email_queue") == "light"
    assert step_queue("og_daily_bonus") == "heavy"
    assert step_queue("database_maintenance") == "heavy"
