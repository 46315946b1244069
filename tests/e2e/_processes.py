"""Start, watch and stop the Dagster processes of an end-to-end test.

Each process runs in a session (process group) of its own, writes to a log file, and is
stopped with its whole group: nothing outlives the test, whatever happens in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts"
GROUPS = (
    "cleanup",
    "email",
    "payments",
    "analytics",
    "games",
    "engagement",
    "security",
    "maintenance",
)

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    name: str
    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child process owns it until stop)
        self.popen = subprocess.Popen(
            self.args,
            env=dict(self.env),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, no chance to clean up."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, grace_s: float = 10) -> None:
        if self.popen is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)
        self._signal_group(signal.SIGKILL)  # children that ignored SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(text[-lines:])


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.5,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # the peer is not up yet
            last_error = error
        time.sleep(interval_s)
    detail = f" (last error: {last_error!r})" if last_error else ""
    extra = f"\n{diagnostics()}" if diagnostics else ""
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}{extra}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def grpc_ok(port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    return DagsterGrpcClient(port=port, host="127.0.0.1").ping("e2e") is not None


def base_env(
    dagster_home: Path, data_dir: Path, app_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment of every process: the instance, the app database, embedded peers, and
    every group's schedules and sensors off by default (the tests start what they need)."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("OPS_", "DAGSTER_"))
    }
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            "OPS_DATABASE_URL": app_url,
            "OPS_DATA_DIR": str(data_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            **{f"OPS_ENABLE_{group.upper()}": "false" for group in GROUPS},
        }
    )
    env.update(extra or {})
    return env


def keep_logs(processes: list[Process], folder: str) -> None:
    """Copy the process logs next to the screenshots, for a failed CI run."""
    target = ARTIFACTS / folder
    target.mkdir(parents=True, exist_ok=True)
    for process in processes:
        if process.log_path.exists():
            shutil.copy(process.log_path, target / process.log_path.name)
