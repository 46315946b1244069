"""The production instance and workspace files are valid Dagster configuration, and every
job of the code location carries the tags the run queue's limits rely on. Fast: no
process is started (the end-to-end tests next to this file run the real thing)."""

import copy
import re
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

from ops_platform.definitions import defs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "ops-dagster-logs",
}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture
def instance_env(monkeypatch):
    for key, value in INSTANCE_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.s3-logs.yaml"])
def test_instance_files_are_valid(name, tmp_path, instance_env):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / name).read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "ProjectTagsRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_retries"] == {
        "enabled": True,
        "max_retries": 0,
        "retry_on_asset_or_op_failure": False,
    }
    assert config["telemetry"]["enabled"] is False


def test_postgres_connection_comes_from_the_environment(instance_env):
    from dagster._core.storage.config import pg_config
    from dagster_postgres.utils import pg_url_from_config

    storage = process_config(pg_config(), load("dagster.yaml")["storage"]["postgres"])
    assert storage.success, storage.errors
    url = pg_url_from_config(storage.value)
    assert url == "postgresql+psycopg2://dagster:secret@db.internal:5432/dagster"


def test_s3_variant_differs_only_by_compute_logs(instance_env):
    base, variant = load("dagster.yaml"), load("dagster.s3-logs.yaml")
    logs = variant.pop("compute_logs")
    assert variant == base and "compute_logs" not in base
    assert (logs["module"], logs["class"]) == (
        "dagster_aws.s3.compute_log_manager",
        "S3ComputeLogManager",
    )
    result = process_config(S3ComputeLogManager.config_type(), logs["config"])
    assert result.success, result.errors
    assert result.value["bucket"] == "ops-dagster-logs"


def test_queue_limits():
    concurrency = load("dagster.yaml")["concurrency"]
    limits = concurrency["runs"]["tag_concurrency_limits"]
    assert {
        "key": "ops/singleton",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits
    capped = {limit["value"]: limit["limit"] for limit in limits if limit["key"] == "ops/group"}
    assert capped["analytics"] == 2 and capped["maintenance"] == 1
    # UI materializations carry no job tags: one slot per asset pool keeps them single.
    assert concurrency["pools"] == {"default_limit": 1, "granularity": "run"}


def test_every_job_carries_the_tags_the_queue_relies_on():
    """A job without them would escape the singleton limit, priority or max runtime."""
    for job in defs.get_repository_def().get_all_jobs():
        if job.name.startswith("__"):  # Dagster's implicit asset job (UI materializations)
            continue
        assert job.tags.get("ops/singleton") == job.name, job.name
        assert int(job.tags["dagster/priority"]) > 0, job.name
        assert int(job.tags["dagster/max_runtime"]) > 0, job.name
        assert job.tags.get("ops/group"), job.name


def test_workspace_loads_the_code_location_from_a_grpc_server(monkeypatch):
    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "code-server.internal")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", "4266")
    workspace = load("workspace.yaml")
    result = process_workspace_config(copy.deepcopy(workspace))
    assert result.success, result.errors
    [entry] = workspace["load_from"]
    assert entry["grpc_server"]["location_name"] == "ops_platform"
    assert result.value["load_from"][0]["grpc_server"]["host"] == "code-server.internal"
    assert result.value["load_from"][0]["grpc_server"]["port"] == 4266


def _grpc_hosts(text: str) -> set[str]:
    """The `-h` of every `dagster api grpc` command written in `text`."""
    return set(re.findall(r"dagster api grpc\b[^\n`]*?-h (\S+)", text))


def test_the_code_server_binds_one_address_everywhere_it_is_documented():
    """The gRPC code server has no authentication: on a host it listens on 127.0.0.1 (or a
    private address), in a container on the container's own network with its port never
    published to the host."""
    workspace_comment = (DEPLOY / "workspace.yaml").read_text()
    deploy_readme = (DEPLOY / "README.md").read_text()
    readme = (DEPLOY.parent / "README.md").read_text()
    assert _grpc_hosts(workspace_comment) == {"127.0.0.1"}
    assert _grpc_hosts(deploy_readme) == {"127.0.0.1"}
    assert _grpc_hosts(readme) <= {"127.0.0.1"}
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    code_server = compose["services"]["code-server"]
    assert "ports" not in code_server  # reachable on the container network only
    for service in compose["services"].values():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), mapping
