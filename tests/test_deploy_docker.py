"""deploy/docker: the Compose file and the DockerRunLauncher instance, checked offline.
(tests/e2e/test_docker_launcher.py runs a real container per run through Podman.)"""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
INSTANCE = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
EXAMPLE_ENV = {
    line.split("=", 1)[0]
    for line in (DOCKER / "ops-platform.example.env").read_text().splitlines()
    if line and not line.startswith("#")
}


def test_instance_is_the_production_one_with_the_docker_launcher():
    production = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    assert INSTANCE["run_launcher"]["class"] == "DockerRunLauncher"
    differing = {
        key
        for key in production.keys() | INSTANCE.keys()
        if production.get(key) != INSTANCE.get(key)
    }
    assert differing == {"run_launcher", "compute_logs"}


def test_every_variable_the_launcher_passes_is_in_the_env_file_or_compose():
    compose_env = set(COMPOSE["x-ops-image"]["environment"])
    passed = set(INSTANCE["run_launcher"]["config"]["env_vars"])
    assert passed - EXAMPLE_ENV - compose_env == set()


def test_every_dagster_role_runs_the_one_image():
    image = COMPOSE["x-ops-image"]["image"]
    roles = ["code-server", "daemon", "webserver", "worker-light", "worker-heavy"]
    commands = {role: COMPOSE["services"][role]["command"][0] for role in roles}
    assert commands == {
        "code-server": "dagster",
        "daemon": "dagster-daemon",
        "webserver": "dagster-webserver",
        "worker-light": "ops-platform",
        "worker-heavy": "ops-platform",
    }
    assert "ops-platform:" in image
    assert COMPOSE["services"]["code-server"]["environment"]["DAGSTER_CURRENT_IMAGE"] == image
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "code-server"
