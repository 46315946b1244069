"""The local instance of make demo / make dev: no telemetry banner, the project's run queue;
an operator's own dagster.yaml is never overwritten."""

import dagster as dg

from ops_platform.held_runs import queue_holds_runs
from ops_platform.local_instance import ensure_local_instance
from ops_platform.run_coordinator import ProjectTagsRunCoordinator


def test_written_once_and_loaded_by_dagster(tmp_path):
    config = ensure_local_instance(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert isinstance(instance.run_coordinator, ProjectTagsRunCoordinator)
        assert instance.telemetry_enabled is False
        assert queue_holds_runs(instance)
    config.write_text("telemetry:\n  enabled: true\n")
    ensure_local_instance(tmp_path / "home")
    assert config.read_text() == "telemetry:\n  enabled: true\n"
