"""deploy/helm: values for the official Dagster chart, checked offline (no cluster, no helm).

- the values parse and use the chart's keys for what the code location needs;
- every setting the code reads comes from the ConfigMap or the Secret, none inline, and the
  secret-bearing ones only from the Secret;
- the instance config the chart renders for the K8sRunLauncher loads in Dagster with
  dagster-k8s (a throw-away kubeconfig, no cluster), and a typo in it is rejected;
- with OPS_EXECUTOR=k8s every job takes k8s_job_executor's run config, and rejects a typo.
"""

import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ops_platform.settings import GROUPS, SECRET_VARIABLES

REPO = Path(__file__).resolve().parents[1]
HELM = REPO / "deploy" / "helm"
VALUES = yaml.safe_load((HELM / "values.yaml").read_text())
CONFIGMAP = yaml.safe_load((HELM / "ops-platform-env.configmap.yaml").read_text())
SECRET_KEYS = {
    line.split("=", 1)[0]
    for line in (HELM / "ops-platform-secrets.example.env").read_text().splitlines()
    if line and not line.startswith("#")
}
# Settings a Kubernetes deployment leaves unset, and why.
NOT_ON_KUBERNETES = {
    "OPS_OBJECT_STORE_DIR": "the local folder standing in for S3 (S3 is configured)",
    "OPS_OUTBOX_DIR": "the local mail outbox standing in for SMTP (SMTP is configured)",
    "OPS_S3_ENDPOINT_URL": "only for S3-compatible stores other than AWS",
    "OPS_CELERY_BROKER_URL": "only with OPS_EXECUTOR=celery",
    "OPS_CELERY_BACKEND_URL": "only with OPS_EXECUTOR=celery",
    "OPS_OPERATOR": "names the operator of a CLI command, not of a pod",
}


def settings_read_by_the_code() -> set[str]:
    names = set()
    for path in (REPO / "ops_platform").rglob("*.py"):
        names |= set(re.findall(r"\bOPS_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    names.discard("OPS_ENABLE")  # the prefix of OPS_ENABLE_<GROUP>, one per group:
    return names | {f"OPS_ENABLE_{group.upper()}" for group in GROUPS}


def test_user_code_deployment_serves_the_code_location():
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "ops_platform.definitions"]
    assert deployment["port"] == 3030
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = VALUES["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "CustomRunCoordinator"
    assert coordinator["config"]["customRunCoordinator"]["class"] == "ProjectTagsRunCoordinator"
    assert VALUES["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in VALUES["postgresql"]
    assert VALUES["global"]["postgresqlSecretName"]
    assert VALUES["generatePostgresqlPasswordSecret"] is False


def test_every_setting_comes_from_the_configmap_or_the_secret():
    provided = set(CONFIGMAP["data"]) | SECRET_KEYS
    missing = settings_read_by_the_code() - provided - set(NOT_ON_KUBERNETES)
    assert not missing, f"deploy/helm provides no value for {sorted(missing)}"
    unknown = provided - settings_read_by_the_code()
    assert not unknown, f"deploy/helm sets {sorted(unknown)}, which the code never reads"


def test_secrets_only_in_the_secret_and_nothing_inline():
    assert not set(SECRET_VARIABLES) & set(CONFIGMAP["data"])
    assert {"OPS_DATABASE_URL", "OPS_PAYMENTS_API_KEY", "OPS_SECRETS_KEY"} <= SECRET_KEYS
    text = (HELM / "values.yaml").read_text()
    assert not re.search(r"^\s*OPS_[A-Z_]+\s*:", text, re.M), "an OPS_* setting inline in values"
    pods = [
        VALUES["dagsterWebserver"],
        VALUES["dagsterDaemon"],
        VALUES["runLauncher"]["config"]["k8sRunLauncher"],
        *VALUES["dagster-user-deployments"]["deployments"],
    ]
    for pod in pods:
        assert {"name": "ops-platform-env"} in pod["envConfigMaps"]
        assert {"name": "ops-platform-secrets"} in pod["envSecrets"]
        assert "env" not in pod


def test_queue_limits_and_pools_match_the_single_vm_instance():
    instance = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["concurrency"]
    helm = VALUES["concurrency"]
    assert helm["enabled"] is True
    assert helm["pools"] == {
        "defaultLimit": instance["pools"]["default_limit"],
        "granularity": instance["pools"]["granularity"],
    }
    assert helm["runs"]["tagConcurrencyLimits"] == instance["runs"]["tag_concurrency_limits"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def k8s_instance_yaml(kubeconfig: Path, launcher: dict) -> dict:
    """The run launcher block the chart renders from `runLauncher.config.k8sRunLauncher`."""
    run_k8s_config = {_snake(k): v for k, v in launcher.get("runK8sConfig", {}).items()}
    return {
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "load_incluster_config": False,  # no cluster here: a throw-away kubeconfig
                "kubeconfig_file": str(kubeconfig),
                "job_namespace": launcher.get("jobNamespace") or "dagster",
                "image_pull_policy": launcher["imagePullPolicy"],
                "service_account_name": "dagster",
                "instance_config_map": "dagster-instance",
                "postgres_password_secret": VALUES["global"]["postgresqlSecretName"],
                "dagster_home": VALUES["global"]["dagsterHome"],
                "env_config_maps": [c["name"] for c in launcher["envConfigMaps"]],
                "env_secrets": [s["name"] for s in launcher["envSecrets"]],
                "run_k8s_config": {
                    "container_config": run_k8s_config.get("container_config", {}),
                },
                "fail_pod_on_run_failure": launcher.get("failPodOnRunFailure", False),
            },
        },
        "telemetry": {"enabled": False},
    }


@pytest.fixture
def kubeconfig(tmp_path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "throw-away"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def _instance(tmp_path: Path, config: dict) -> dg.DagsterInstance:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home))


def test_k8s_run_launcher_config_loads_in_dagster(tmp_path, kubeconfig):
    from dagster_k8s import K8sRunLauncher

    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    instance = _instance(tmp_path, k8s_instance_yaml(kubeconfig, launcher))
    run_launcher = instance.run_launcher
    assert isinstance(run_launcher, K8sRunLauncher)
    assert run_launcher.env_config_maps == ["ops-platform-env"]
    assert run_launcher.env_secrets == ["ops-platform-secrets"]


def test_a_typo_in_the_launcher_config_is_rejected(tmp_path, kubeconfig):
    from dagster._core.errors import DagsterInvalidConfigError

    config = k8s_instance_yaml(kubeconfig, VALUES["runLauncher"]["config"]["k8sRunLauncher"])
    config["run_launcher"]["config"]["env_secret"] = ["ops-platform-secrets"]  # not a key
    with pytest.raises(DagsterInvalidConfigError, match="env_secret"):
        _instance(tmp_path, config).run_launcher  # noqa: B018 (loading it is the test)


def test_k8s_executor_takes_its_run_config_and_rejects_a_typo():
    from ops_platform.definitions import build_definitions
    from ops_platform.settings import load_settings

    defs = build_definitions(load_settings({"OPS_EXECUTOR": "k8s"}))
    job = defs.get_job_def("session_cleanup")
    good = {
        "execution": {"config": {"job_namespace": "ops", "env_secrets": ["ops-platform-secrets"]}}
    }
    assert dg.validate_run_config(job, good)
    with pytest.raises(dg.DagsterInvalidConfigError, match="job_namepsace"):
        dg.validate_run_config(job, {"execution": {"config": {"job_namepsace": "ops"}}})
