"""The local Dagster instance of `make demo` and `make dev` (`DAGSTER_HOME`, default `.dagster/`).

Written once, when `dagster.yaml` is missing or empty (an operator's own file is left alone):
no telemetry (and no telemetry banner on every command), and the run queue that gives runs
launched by hand their asset job's tags and holds the queued runs of a maintenance window's
groups, as in production (deploy/dagster.yaml).
`python -m ops_platform.local_instance` writes it for `$DAGSTER_HOME`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LOCAL_INSTANCE_YAML = """\
# The local Dagster instance of make demo / make dev (written once by ops_platform; edit freely).
telemetry:
  enabled: false
run_coordinator:
  module: ops_platform.run_coordinator
  class: ProjectTagsRunCoordinator
concurrency:
  runs:
    tag_concurrency_limits:
      # Queued runs a maintenance window holds wait here until it ends (ops-platform pause).
      - key: ops/held
        value: maintenance
        limit: 0
"""


def ensure_local_instance(home: Path) -> Path:
    """`home`/dagster.yaml, written with the local defaults when missing or empty."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        config.write_text(LOCAL_INSTANCE_YAML)
    return config


if __name__ == "__main__":
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster").resolve()
    print(f"Dagster instance: {ensure_local_instance(home)}", file=sys.stderr)
