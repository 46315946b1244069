"""Runs in containers: the project's image, built without a registry, serves the code
location (and passes its health check); the daemon's DockerRunLauncher, talking to Podman's
Docker-compatible socket, starts a queued run in a fresh container of the same image, which
works on the host's Postgres and succeeds.

Rootful Podman here uses runc and lowered ulimits (deploy/image/containers.conf). Containers
share the host's network, so 127.0.0.1 is the host's Postgres in each of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta

import dagster as dg
import pytest
import yaml
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.db.migrate import upgrade
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES, postgres_available
from tests.e2e._processes import BIN, REPO, Process, base_env, free_port, keep_logs, wait_for

pytestmark = pytest.mark.e2e

IMAGE = f"localhost/ops-platform:e2e-{uuid.uuid4().hex[:8]}"
CONTAINERS_CONF = REPO / "deploy" / "image" / "containers.conf"
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def image():
    if os.environ.get("OPS_TEST_IMAGE"):  # an image built beforehand (make image), to iterate
        yield os.environ["OPS_TEST_IMAGE"]
        return
    for tool in ("podman", "mmdebstrap", "runc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: the container tests need podman, runc, mmdebstrap")
    build = subprocess.run(
        [str(REPO / "deploy" / "image" / "build.sh"), IMAGE],
        env={**PODMAN_ENV, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(build.stdout.strip().splitlines()[-1])  # "built … in N s, M bytes"
    yield IMAGE
    podman("rmi", "-f", IMAGE, check=False)


@pytest.fixture(scope="module")
def instance_database():
    reason = postgres_available()
    if reason is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"OPS_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    name = f"dagster_docker_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA app"))
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _healthy(container: str, port: int) -> bool:
    check = ["exec", container, "dagster", "api", "grpc-health-check", "-p", str(port)]
    return subprocess.run(["podman", *check], env=PODMAN_ENV, capture_output=True).returncode == 0


def test_image_serves_the_code_location_and_passes_its_health_check(image):
    inspect = json.loads(podman("image", "inspect", image))[0]
    assert inspect["Healthcheck"]["Test"] == [
        "CMD", "dagster", "api", "grpc-health-check", "-p", "3030",
    ]  # fmt: skip
    assert inspect["Config"]["Cmd"][:3] == ["dagster", "api", "grpc"]
    assert inspect["Config"]["User"] == "10001:10001"
    # The default command on the host's network would take port 3030: the same command on a
    # free port, and the health check against it.
    port = free_port()
    name = f"ops-e2e-health-{uuid.uuid4().hex[:6]}"
    podman(
        "run", "-d", "--name", name, "--network", "host", image,
        "dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(port), "-m", "ops_platform.definitions",
    )  # fmt: skip
    try:
        wait_for(
            "the code server's health check",
            lambda: _healthy(name, port),
            timeout_s=180,
            interval_s=3,
            diagnostics=lambda: podman("logs", name, check=False),
        )
        assert podman("exec", name, "id", "-u").strip() == "10001"  # not root
    finally:
        podman("rm", "-f", name, check=False)


@pytest.fixture
def docker_stack(image, instance_database, tmp_path):
    socket = tmp_path / "podman.sock"
    service = Process(
        "podman-service",
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        PODMAN_ENV,
        tmp_path / "podman-service.log",
    ).start()
    wait_for("podman's socket", socket.exists, 60)

    app_url = instance_database.render_as_string(hide_password=False)
    app_url += "?options=-csearch_path%3Dapp"
    upgrade(app_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO / "deploy" / "docker" / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    grpc_port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "grpc_server": {
                            "host": "127.0.0.1",
                            "port": grpc_port,
                            "location_name": "ops_platform",
                        }
                    }
                ]
            }
        )
    )
    instance_env = {
        "DAGSTER_PG_HOST": instance_database.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(instance_database.port or 5432),
        "DAGSTER_PG_USER": instance_database.username or "postgres",
        "DAGSTER_PG_PASSWORD": instance_database.password or "",
        "DAGSTER_PG_DB": instance_database.database,
    }
    env = base_env(
        home,
        tmp_path / "data",
        app_url,
        {
            **instance_env,
            "DOCKER_HOST": f"unix://{socket}",
            "OPS_DOCKER_NETWORK": "host",
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
        },
    )
    # The launcher passes these from the daemon's environment; unused settings are empty.
    for name in config["run_launcher"]["config"]["env_vars"]:
        env.setdefault(name, "")
    code_server = f"ops-e2e-cs-{uuid.uuid4().hex[:6]}"
    container_env = [
        item
        for key, value in {
            **instance_env,
            **{k: v for k, v in env.items() if k.startswith("OPS_ENABLE_")},
            "OPS_DATABASE_URL": app_url,
            "DAGSTER_CURRENT_IMAGE": image,
        }.items()
        for item in ("-e", f"{key}={value}")
    ]
    podman(
        "run", "-d", "--name", code_server, "--network", "host", *container_env, image,
        "dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(grpc_port), "-m", "ops_platform.definitions",
    )  # fmt: skip
    daemon = None
    with pytest.MonkeyPatch.context() as patch:
        for key, value in instance_env.items():
            patch.setenv(key, value)
        instance = dg.DagsterInstance.from_config(str(home))
        instance.get_runs_count()  # create the instance tables before the daemon does
        try:
            wait_for(
                "the containerized code server",
                lambda: (
                    subprocess.run(
                        [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(grpc_port)],
                        capture_output=True,
                    ).returncode
                    == 0
                ),
                timeout_s=180,
                interval_s=3,
                diagnostics=lambda: podman("logs", code_server, check=False),
            )
            daemon = Process(
                "daemon",
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                env,
                tmp_path / "daemon.log",
            ).start()
            yield instance, env, workspace, app_url, daemon
        finally:
            if daemon is not None:
                daemon.stop()
            keep_logs([p for p in (daemon, service) if p], f"docker-{tmp_path.name}")
            podman("rm", "-f", code_server, check=False)
            for container in podman(
                "ps", "-aq", "--filter", "label=dagster/run_id", check=False
            ).split():
                podman("rm", "-f", container, check=False)
            service.stop()
            instance.dispose()


def test_daemon_launches_a_queued_run_in_a_fresh_container(docker_stack, image):
    instance, env, workspace, app_url, daemon = docker_stack
    engine = create_engine(app_url)
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            insert(schema.thrones),
            [
                {"id": 1, "stream_id": 1, "holder_id": 1, "total_coins": 5,
                 "started_at": now - timedelta(hours=2), "expires_at": now - timedelta(minutes=1), "is_active": True},
                {"id": 2, "stream_id": 2, "holder_id": 2, "total_coins": 5,
                 "started_at": now, "expires_at": now + timedelta(hours=1), "is_active": True},
            ],
        )  # fmt: skip
    launch = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-w", str(workspace), "-j", "throne_expiry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert launch.returncode == 0, launch.stdout + launch.stderr
    [record] = instance.get_run_records(dg.RunsFilter(job_name="throne_expiry"))
    run_id = record.dagster_run.run_id

    def finished():
        run = instance.get_run_by_id(run_id)
        return run if run.is_finished else None

    run = wait_for(
        "the run in its container",
        finished,
        timeout_s=420,
        interval_s=2,
        diagnostics=lambda: daemon.tail(60),
    )
    container = run.tags.get("docker/container_id")
    if run.status != dg.DagsterRunStatus.SUCCESS:
        events = instance.all_logs(run_id)
        errors = [
            str(getattr(e.dagster_event.event_specific_data, "error", None) or e.message)
            for e in events
            if e.is_dagster_event
            and (e.dagster_event.is_failure or e.dagster_event.event_type_value == "ENGINE_EVENT")
        ]
        logs = podman("logs", container, check=False) if container else "(no container)"
        raise AssertionError(f"run {run.status}: {errors}\n--- container ---\n{logs[-4000:]}")
    state = json.loads(podman("inspect", container))[0]["State"]
    assert state["ExitCode"] == 0
    assert json.loads(podman("inspect", container))[0]["ImageName"] == image
    with engine.connect() as connection:
        active = (
            connection.execute(select(schema.thrones.c.id).where(schema.thrones.c.is_active))
            .scalars()
            .all()
        )
    assert active == [2]
    engine.dispose()
