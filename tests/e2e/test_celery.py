"""OPS_EXECUTOR=celery on the real RabbitMQ: two `ops-platform worker` processes, steps
routed by queue, and a worker killed with SIGKILL mid-step whose step another worker finishes.

Each test gets a RabbitMQ virtual host of its own (made with rabbitmqctl), so queues of
parallel test runs never meet. The Dagster instance is a throw-away folder shared by the run
process and the workers, as one host's processes share it.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, insert, select

from ops_platform.db import schema
from ops_platform.db.engine import make_engine, utcnow
from tests.e2e._processes import BIN, Process, base_env, keep_logs, wait_for

pytestmark = pytest.mark.e2e

RABBIT = "127.0.0.1:5672"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def vhost():
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl not found: the Celery tests need the local RabbitMQ")
    name = f"ops_test_{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=60)


class CeleryStack:
    def __init__(self, tmp: Path, vhost: str, app_url: str):
        self.home = tmp / "dagster_home"
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.marks = tmp / "marks"
        self.marks.mkdir()
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.env = base_env(
            self.home,
            tmp / "data",
            app_url,
            {
                "OPS_EXECUTOR": "celery",
                "OPS_CELERY_BROKER_URL": f"pyamqp://guest:guest@{RABBIT}/{vhost}",
                "OPS_TEST_MARKS_DIR": str(self.marks),
            },
        )
        self.workers: dict[str, Process] = {}

    def start_worker(self, label: str, queues: str) -> Process:
        worker = Process(
            f"worker-{label}",
            [str(BIN / "ops-platform"), "worker", "--queues", queues, "--name", label]
            + ["--concurrency", "1"],
            {**self.env, "OPS_TEST_WORKER_LABEL": label},
            self.logs / f"worker-{label}.log",
        ).start()
        self.workers[label] = worker

        def ready() -> bool:
            assert worker.running, f"worker {label} exited\n{worker.tail()}"
            return "ready" in worker.log_path.read_text(errors="replace")

        wait_for(
            f"worker {label} ready",
            ready,
            timeout_s=120,
            diagnostics=lambda: worker.tail(),
        )
        return worker

    def launch(self, args: list[str], name: str) -> Process:
        return Process(name, args, self.env, self.logs / f"{name}.log").start()

    def marks_of(self, step: str) -> list[str]:
        """Worker labels of each execution attempt of `step`."""
        return [p.name.split(".")[1] for p in self.marks.glob(f"{step}.*.*")]

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


@pytest.fixture
def celery_stack(tmp_path, vhost, db_url):
    stack = CeleryStack(tmp_path, vhost, db_url)
    yield stack
    stack.stop()
    keep_logs(list(stack.workers.values()), f"celery-{tmp_path.name}")


def _finished(run: Process, timeout_s: float) -> int:
    wait_for(f"{run.name} to finish", lambda: not run.running, timeout_s, diagnostics=run.tail)
    return run.popen.returncode


def _execute(stack: CeleryStack, job: str) -> Process:
    return stack.launch(
        [str(BIN / "dagster"), "job", "execute", "-m", "tests.e2e.celery_defs", "-j", job],
        f"run-{job}",
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_steps_spread_over_workers_and_heavy_goes_to_heavy(celery_stack):
    celery_stack.start_worker("a", "light")
    celery_stack.start_worker("b", "light,heavy")
    run = _execute(celery_stack, "fan_out")
    assert _finished(run, 240) == 0, run.tail(80)
    light = [label for i in range(4) for label in celery_stack.marks_of(f"light_{i}")]
    assert sorted(set(light)) == ["a", "b"], light
    assert celery_stack.marks_of("heavy_step") == ["b"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_step_of_a_killed_worker_is_redelivered_and_the_run_succeeds(celery_stack):
    worker_a = celery_stack.start_worker("a", "light")
    run = _execute(celery_stack, "killable")
    wait_for("the step on worker a", lambda: celery_stack.marks_of("waits_for_release"), 180)
    celery_stack.start_worker("b", "light")
    worker_a.kill()  # SIGKILL of the worker and its pool: nothing acknowledged the step
    wait_for(
        "the step redelivered to worker b",
        lambda: "b" in celery_stack.marks_of("waits_for_release"),
        180,
        diagnostics=lambda: celery_stack.workers["b"].tail(),
    )
    (celery_stack.marks / "release.b").write_text("go")
    assert _finished(run, 240) == 0, run.tail(80)
    assert sorted(celery_stack.marks_of("waits_for_release")) == ["a", "b"]


OG_USERS = 1_500


def _seed_og_users(url: str) -> None:
    engine = make_engine(url)
    later = utcnow() + timedelta(days=10)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.og_tiers),
            [{"id": 1, "level": 1, "price_coins": 1000, "duration_days": 30}],
        )
        connection.execute(
            insert(schema.users),
            [
                {
                    "id": i,
                    "email": f"u{i}@example.com",
                    "og_level": 1,
                    "og_tier_id": 1,
                    "og_expires_at": later,
                    "bonus_balance": 0,
                }
                for i in range(1, OG_USERS + 1)
            ],
        )
    engine.dispose()


def _credits(url: str) -> tuple[int, int, int]:
    """(ledger rows, distinct users in the ledger, sum of bonus balances)."""
    engine = make_engine(url)
    with engine.connect() as connection:
        rows, users = connection.execute(
            select(func.count(), func.count(schema.coin_transactions.c.user_id.distinct()))
        ).one()
        balance = connection.execute(select(func.sum(schema.users.c.bonus_balance))).scalar_one()
    engine.dispose()
    return rows, users, balance


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_og_bonus_with_a_worker_killed_mid_credit_credits_each_user_once(celery_stack, db_url):
    _seed_og_users(db_url)
    config = celery_stack.logs / "bonus.yaml"
    # One user per transaction: the credit takes long enough to kill the worker half way.
    config.write_text(yaml.safe_dump({"ops": {"og_daily_bonus": {"config": {"batch_size": 1}}}}))
    day = datetime.now(ZoneInfo("Australia/Sydney")).date().isoformat()
    # Both queues: the asset step goes to `heavy`, its check steps to the default `light`.
    worker_a = celery_stack.start_worker("a", "light,heavy")
    run = celery_stack.launch(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "ops_platform.definitions"]
        + ["--select", "og_daily_bonus", "--partition", day, "-c", str(config)],
        "run-og-bonus",
    )
    wait_for("the first credits", lambda: _credits(db_url)[0] >= 50, 240, diagnostics=run.tail)
    celery_stack.start_worker("b", "light,heavy")
    worker_a.kill()
    partial = _credits(db_url)[0]
    assert 0 < partial < OG_USERS, "the kill must land mid-credit"
    assert _finished(run, 300) == 0, run.tail(80)
    rows, users, balance = _credits(db_url)
    amount = 1000 * 6 // 10 // 30  # floor(price * 0.6 / days)
    assert (rows, users, balance) == (OG_USERS, OG_USERS, OG_USERS * amount)
