"""A code location for the Celery tests: jobs whose steps say which worker ran them.

Its executor is the project's own (`build_executor` from the settings), so the steps travel
exactly as the project's do: same broker config, acks late, queue by tag.
"""

import os
import time
from pathlib import Path

import dagster as dg

from ops_platform.executors import build_executor
from ops_platform.schedules.catalog import CELERY_QUEUE_TAG
from ops_platform.settings import load_settings

MARKS = Path(os.environ.get("OPS_TEST_MARKS_DIR", "/tmp"))


def _mark(step: str) -> None:
    """One file per execution attempt: step name, worker label and pid."""
    label = os.environ.get("OPS_TEST_WORKER_LABEL", "?")
    (MARKS / f"{step}.{label}.{os.getpid()}").write_text(str(time.time()))


def _light(name: str) -> dg.OpDefinition:
    @dg.op(name=name, tags={CELERY_QUEUE_TAG: "light"})
    def light_step() -> int:
        _mark(name)
        time.sleep(1.5)  # long enough that one worker cannot take every step alone
        return 1

    return light_step


LIGHT_STEPS = [_light(f"light_{i}") for i in range(4)]


@dg.op(tags={CELERY_QUEUE_TAG: "heavy"})
def heavy_step(counts: list[int]) -> int:
    _mark("heavy_step")
    return sum(counts)


@dg.job
def fan_out():
    heavy_step([step() for step in LIGHT_STEPS])


@dg.op(tags={CELERY_QUEUE_TAG: "light"})
def waits_for_release() -> None:
    """Runs until the test drops a release file: long enough to kill its worker mid-step."""
    _mark("waits_for_release")
    label = os.environ.get("OPS_TEST_WORKER_LABEL", "?")
    deadline = time.monotonic() + 120
    while not (MARKS / f"release.{label}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("never released")
        time.sleep(0.2)


@dg.job
def killable():
    waits_for_release()


defs = dg.Definitions(jobs=[fan_out, killable], executor=build_executor(load_settings()))
