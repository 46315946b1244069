"""Throw-away Postgres clusters for tests that need a server of their own: a primary started
with initdb/pg_ctl on a free port under a temporary folder, and a streaming replica made
from it with pg_basebackup -R. Never the shared server. As root, the server programs run
as the `postgres` user (initdb refuses root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text


def _bindir() -> Path | None:
    initdb = shutil.which("initdb") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)), None
    )
    return Path(os.path.realpath(initdb)).parent if initdb else None


BINDIR = _bindir()


def missing() -> str | None:
    """None when clusters can be started here, else why not."""
    if BINDIR is None:
        return "no initdb (Debian package postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(*args: str) -> None:
    command = [str(BINDIR / args[0]), *args[1:]]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")


class Cluster:
    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def configure(self, **settings) -> None:
        with (self.folder / "postgresql.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(
                    f"{name} = {value!r}\n" if isinstance(value, str) else f"{name} = {value}\n"
                )

    def start(self) -> None:
        _run("pg_ctl", "-D", str(self.folder), "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # already down
            _run("pg_ctl", "-D", str(self.folder), "-m", "immediate", "-w", "stop")


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@contextlib.contextmanager
def cluster_folder():
    """A folder the server user can reach (pytest's own tmp folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="ops-platform-pg-"))
    _own(root)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_primary(root: Path) -> Cluster:
    cluster = Cluster(root / "primary", free_port())
    _run("initdb", "-D", str(cluster.folder), "-U", "postgres", "--auth=trust", "--no-sync")
    cluster.configure(
        port=cluster.port,
        listen_addresses="127.0.0.1",
        unix_socket_directories=str(root),
        wal_level="replica",
        max_wal_senders=4,
        fsync="off",
        full_page_writes="off",
        synchronous_commit="off",
        shared_buffers="32MB",
    )
    cluster.start()
    return cluster


def start_replica(primary: Cluster, root: Path) -> Cluster:
    replica = Cluster(root / "replica", free_port())
    _run(
        "pg_basebackup",
        "-h", "127.0.0.1",
        "-p", str(primary.port),
        "-U", "postgres",
        "-D", str(replica.folder),
        "-R",
        "-X", "stream",
    )  # fmt: skip
    # Replies every second so the primary's replay_lag follows the replica closely.
    replica.configure(port=replica.port, hot_standby="on", wal_receiver_status_interval="1s")
    replica.start()
    engine = create_engine(primary.url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                streaming = connection.execute(
                    text("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                ).scalar_one()
            if streaming:
                return replica
            time.sleep(0.2)
        raise RuntimeError("replica did not start streaming within 60 s")
    finally:
        engine.dispose()
