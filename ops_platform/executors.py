"""The executor of every job, picked by `OPS_EXECUTOR`.

- `in_process` (default): each run's steps run one after another in the run's own process.
  Almost every job is one step whose work happens inside the database, so a process per
  step would only add start-up time (one import of the definitions per step).
- `multiprocess`: a child process per step, on the run's host.
- `celery`: steps go to Celery workers over the broker (`OPS_CELERY_BROKER_URL`), each to
  the queue its schedule-table row names (`light` or `heavy`); start workers with
  `ops-platform worker`.
- `docker`: a container per step, from the image the Docker run launcher started the run in.
- `k8s`: a Kubernetes Job per step, configured like the K8s run launcher.

The Celery, Docker and Kubernetes libraries are imported only when their executor is chosen.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import dagster as dg

from ops_platform.settings import EXECUTORS, Settings, SettingsError

# Celery must not lose a step whose worker dies: the message is acknowledged only once the
# step has finished (acks_late) and is handed back to the broker when the worker process is
# lost (reject_on_worker_lost), so another worker runs it. That is safe because every step is
# idempotent (money moves under unique ledger keys). One message at a time per worker process.
CELERY_CONFIG_SOURCE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_default_queue": "light",
    "broker_connection_timeout": 10,
    "broker_connection_retry_on_startup": True,
}


def celery_executor_config(backend_set: bool) -> dict:
    """The Celery executor's config: the same for the runs and for `ops-platform worker`.
    Broker and backend URLs (they hold passwords) are read from the environment at run time,
    so they never appear in the run config the UI shows."""
    config = {
        "broker": {"env": "OPS_CELERY_BROKER_URL"},
        "config_source": dict(CELERY_CONFIG_SOURCE),
    }
    if backend_set:
        config["backend"] = {"env": "OPS_CELERY_BACKEND_URL"}
    return config


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor definition the settings pick (`OPS_EXECUTOR`, validated at load)."""
    name = settings.executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            celery_executor_config(settings.celery_backend_set), name="celery"
        )
    if name == "docker":
        from dagster_docker import docker_executor

        # Image, network and env come from the Docker run launcher of the instance.
        return docker_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        # Image, namespace, env config maps and secrets come from the K8s run launcher.
        return k8s_job_executor
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


QUEUES = ("light", "heavy")


def worker_command(
    settings: Settings, queues: list[str], name: str | None, concurrency: int | None
) -> list[str]:
    """`dagster-celery worker start` with the project's executor config: the same broker,
    backend and delivery settings (acks late, redelivery of a lost worker's step) as the runs."""
    if settings.executor != "celery":
        raise SettingsError("ops-platform worker needs OPS_EXECUTOR=celery (and its broker URL)")
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise SettingsError(
            f"unknown queue(s) {', '.join(unknown)}; queues are {', '.join(QUEUES)}"
        )
    import yaml

    config = {"execution": {"config": celery_executor_config(settings.celery_backend_set)}}
    folder = Path(tempfile.mkdtemp(prefix="ops-platform-worker-"))
    config_path = folder / "celery.yaml"
    config_path.write_text(yaml.safe_dump(config))  # env references only: no secret in it
    command = [
        str(Path(sys.executable).with_name("dagster-celery")),
        *("worker", "start", "-A", "dagster_celery.app", "-y", str(config_path)),
    ]
    # One comma-separated -Q: celery keeps only the last of several -Q options.
    command += ["-q", ",".join(queues)]
    if name:
        command += ["-n", name]
    if concurrency:
        command += ["--", "--concurrency", str(concurrency)]
    return command


def start_worker(
    settings: Settings, queues: list[str], name: str | None, concurrency: int | None
) -> int:
    """Replace this process by the worker, so signals (and a kill) reach it directly."""
    command = worker_command(settings, queues, name, concurrency)
    print(f"ops-platform worker: queues {', '.join(queues)}", file=sys.stderr, flush=True)
    # dagster-celery starts `celery` by name: the one installed beside this Python.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    os.execve(command[0], command, env)
    return 0  # not reached
