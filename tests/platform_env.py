"""The code location's real definitions and a Dagster instance directory, both pointed at a
test's app database and folders through the environment — what `ops-platform` commands
started as subprocesses see too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg


def platform_env(monkeypatch, tmp_path: Path, db_url: str, **env: str) -> dict[str, str]:
    """Set DAGSTER_HOME (an empty dagster.yaml: SQLite storage under it) and OPS_* for the
    test; returns the variables set, for subprocesses."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").touch()
    variables = {
        "DAGSTER_HOME": str(home),
        "OPS_DATABASE_URL": db_url,
        "OPS_DATA_DIR": str(tmp_path / "ops_data"),
        "OPS_LOG_DIR": str(tmp_path / "logs"),
        **env,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


def platform_defs() -> dg.Definitions:
    """The code location's definitions, built from the environment set above."""
    from ops_platform.definitions import build_definitions
    from ops_platform.settings import load_settings

    return build_definitions(load_settings())


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, run_config=None):
    """One real in-process run of `job` with the definitions' resources."""
    return defs.get_job_def(job).execute_in_process(
        run_config=run_config or {}, instance=instance, raise_on_error=False
    )


def run_dagster(
    command: str, *options: str, env: dict, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """`dagster <command> -m ops_platform.definitions <options>` from this Python
    environment, its output captured as text."""
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.run(
        [str(dagster), *command.split(), "-m", "ops_platform.definitions", *options],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
