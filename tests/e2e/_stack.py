"""The production topology of an end-to-end test, on a Postgres-backed instance.

`running_stack` starts a gRPC code server (`dagster api grpc`), `dagster-daemon` and
`dagster-webserver`, with `deploy/dagster.yaml` and `deploy/workspace.yaml` used as they are
(only the environment points them at a fresh Postgres database). The app tables live in a
schema `app` of that database; every group's schedules and sensors are off by default
(`OPS_ENABLE_<GROUP>=false`) and a test starts the ones it exercises through GraphQL, as an
operator would in the UI. `Stack` drives and reads them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorType
from dagster_graphql import DagsterGraphQLClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ops_platform.db.migrate import upgrade
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES, postgres_available
from tests.e2e._processes import (
    BIN,
    REPO,
    Process,
    base_env,
    free_port,
    grpc_ok,
    http_ok,
    keep_logs,
    wait_for,
)

LOCATION = "ops_platform"
REPOSITORY = "__repository__"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

START_SCHEDULE = """
mutation($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""

STOP_SCHEDULE = """
mutation($origin: String!, $selector: String!) {
  stopRunningSchedule(scheduleOriginId: $origin, scheduleSelectorId: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""

START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""


def _psycopg(url) -> str:
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@dataclass
class Stack:
    instance: dg.DagsterInstance
    app_url: str
    data_dir: Path
    env: dict
    workspace: Path
    web_port: int
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.web_port, timeout=60)

    @property
    def app(self):
        return create_engine(self.app_url)

    def diagnostics(self) -> str:
        return "\n".join(process.tail() for process in self.processes.values())

    # -- processes ---------------------------------------------------------------------------
    def start_daemon(self) -> None:
        started = time.time()
        self.processes["daemon"] = Process(
            "dagster-daemon",
            [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)],
            self.env,
            self.log_dir / "daemon.log",
        ).start()
        wait_for(
            "the daemon's heartbeats",
            lambda: self._daemon_beating_since(started),
            180,
            interval_s=1,
            diagnostics=self.diagnostics,
        )

    def _daemon_beating_since(self, started: float) -> bool:
        beats = self.instance.get_daemon_heartbeats()
        needed = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"}
        return needed <= {kind for kind, beat in beats.items() if beat.timestamp >= started}

    def kill_daemon(self) -> None:
        self.processes["daemon"].kill()

    # -- GraphQL ----------------------------------------------------------------------------
    def start_schedule(self, name: str) -> None:
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "scheduleName": name,
        }
        result = self.client._execute(START_SCHEDULE, {"selector": selector})["startSchedule"]
        assert result.get("scheduleState", {}).get("status") == "RUNNING", result

    def start_sensor(self, name: str) -> None:
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": name,
        }
        result = self.client._execute(START_SENSOR, {"selector": selector})["startSensor"]
        assert result.get("sensorState", {}).get("status") == "RUNNING", result

    def stop_schedule(self, name: str) -> None:
        state = self.instigator_state(InstigatorType.SCHEDULE, name)
        variables = {"origin": state.instigator_origin_id, "selector": state.selector_id}
        result = self.client._execute(STOP_SCHEDULE, variables)["stopRunningSchedule"]
        assert result.get("scheduleState", {}).get("status") == "STOPPED", result

    def submit(
        self, job_name: str, run_config: dict | None = None, tags: dict | None = None
    ) -> str:
        return self.client.submit_job_execution(
            job_name,
            repository_location_name=LOCATION,
            repository_name=REPOSITORY,
            run_config=run_config or {},
            tags=tags or {},
        )

    # -- instance ---------------------------------------------------------------------------
    def record(self, run_id: str) -> dg.RunRecord:
        return self.instance.get_run_records(dg.RunsFilter(run_ids=[run_id]))[0]

    def wait_finished(self, run_id: str, timeout_s: float = 360) -> dg.RunRecord:
        record = wait_for(
            f"run {run_id} to finish",
            lambda: (r := self.record(run_id)).dagster_run.status in FINISHED and r,
            timeout_s,
            interval_s=1,
            diagnostics=self.diagnostics,
        )
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, (
            f"run {run_id} of {record.dagster_run.job_name} ended {record.dagster_run.status}:\n"
            + self.run_errors(run_id)
            + "\n"
            + self.diagnostics()
        )
        return record

    def run_errors(self, run_id: str) -> str:
        lines = []
        for entry in self.instance.all_logs(run_id):
            event = entry.dagster_event
            if event is not None and event.is_failure:
                lines.append(str(event.event_specific_data)[:2000])
        return "\n".join(lines)

    def runs(self, **filters) -> list[dg.RunRecord]:
        return list(self.instance.get_run_records(dg.RunsFilter(**filters)))

    def instigator_state(self, kind: InstigatorType, name: str):
        return next(
            s
            for s in self.instance.all_instigator_state(instigator_type=kind)
            if s.instigator_name == name
        )

    def ticks(self, kind: InstigatorType, name: str):
        state = self.instigator_state(kind, name)
        return list(self.instance.get_ticks(state.instigator_origin_id, state.selector_id))

    def instigator_cursor(self, name: str) -> str | None:
        return self.instigator_state(InstigatorType.SENSOR, name).instigator_data.cursor


def _prepare_database(admin_url) -> tuple[str, object]:
    """A fresh database for the instance, with the app tables in its `app` schema."""
    name = f"dagster_e2e_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_psycopg(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    database_url = admin_url.set(database=name)
    engine = create_engine(_psycopg(database_url))
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA app"))
    engine.dispose()
    return name, database_url


def _drop_database(admin_url, name: str) -> None:
    admin = create_engine(_psycopg(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def running_stack(
    tmp_path_factory, folder: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """Start the stack (a module fixture's body: `yield from running_stack(...)`); its logs
    are kept under test-artifacts/<folder>. `extra_env` adds to every process' environment."""
    reason = postgres_available()
    if reason is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"OPS_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)

    tmp = tmp_path_factory.mktemp(folder)
    admin_url = make_url(POSTGRES_URL)
    db_name, database_url = _prepare_database(admin_url)
    app_url = _psycopg(database_url) + "?options=-csearch_path%3Dapp"
    upgrade(app_url)

    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    workspace = tmp / "workspace.yaml"
    shutil.copy(REPO / "deploy" / "workspace.yaml", workspace)
    log_dir = tmp / "logs"
    log_dir.mkdir()
    grpc_port, web_port = free_port(), free_port()
    instance_env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": database_url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(database_url.port or 5432),
        "DAGSTER_PG_USER": database_url.username or "postgres",
        "DAGSTER_PG_PASSWORD": database_url.password or "",
        "DAGSTER_PG_DB": db_name,
    }
    env = base_env(
        home,
        tmp / "data",
        app_url,
        {
            **instance_env,
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(grpc_port),
            **(extra_env or {}),
        },
    )

    stack = None
    with pytest.MonkeyPatch.context() as patch:
        for key, value in instance_env.items():
            patch.setenv(key, value)
        try:
            instance = dg.DagsterInstance.from_config(str(home))
            # Create the instance tables once, before three processes race to do it.
            instance.get_runs_count()
            instance.all_instigator_state()
            instance.get_daemon_heartbeats()
            stack = Stack(instance, app_url, tmp / "data", env, workspace, web_port, log_dir)

            stack.processes["code_server"] = Process(
                "code-server",
                [
                    str(BIN / "dagster"),
                    "api",
                    "grpc",
                    "-m",
                    "ops_platform.definitions",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(grpc_port),
                ],
                env,
                log_dir / "code_server.log",
            ).start()
            wait_for(
                "the gRPC code server",
                lambda: grpc_ok(grpc_port),
                180,
                interval_s=1,
                diagnostics=stack.diagnostics,
            )
            stack.processes["webserver"] = Process(
                "dagster-webserver",
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    str(workspace),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(web_port),
                ],
                env,
                log_dir / "webserver.log",
            ).start()
            stack.start_daemon()
            wait_for(
                "the webserver",
                lambda: http_ok(f"http://127.0.0.1:{web_port}/server_info"),
                180,
                interval_s=1,
                diagnostics=stack.diagnostics,
            )
            yield stack
        finally:
            if stack is not None:
                for process in stack.processes.values():
                    process.stop()
                keep_logs(list(stack.processes.values()), folder)
                stack.instance.dispose()
            _drop_database(admin_url, db_name)
