"""Scale-out: 20 light runs queued at once through the daemon, side by side in one run:

- `default`: the DefaultRunLauncher (each run a subprocess of the code server), in-process steps;
- `celery`:  the same launcher, OPS_EXECUTOR=celery, two `ops-platform worker`s on RabbitMQ;
- `docker`:  the DockerRunLauncher through Podman's Docker-compatible socket, each run a
  container of the project's image (OPS_BENCH_IMAGE, default localhost/ops-platform:latest;
  `make image` builds it). Left out, with the reason, when Podman or the image is missing.

Each mode gets a fresh instance database, its own code server, daemon and webserver; runs
are submitted over GraphQL as fast as it answers. Printed per mode: runs per minute (first
submission to last run end), start latency (run created → run started: queue, launch and
process start), and peak memory per run (run process; the worker's step process for Celery;
the container for Docker). The queue allows 4 runs at once and no singleton limit, so the
launchers, not the project's job limits, are measured.

    python -m benchmarks.scale_out [--runs 20] [--modes default,celery,docker]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks import BENCH_POSTGRES_URL
from ops_platform.db.migrate import upgrade
from tests.e2e._processes import BIN, REPO, Process, base_env, free_port, grpc_ok, http_ok, wait_for

JOB = "throne_expiry"  # light: one short query on an empty table
MODES = ("default", "celery", "docker")
CONTAINERS_CONF = REPO / "deploy" / "image" / "containers.conf"
IMAGE = os.environ.get("OPS_BENCH_IMAGE", "localhost/ops-platform:latest")


def _instance_config(mode: str) -> dict:
    source = REPO / "deploy" / ("docker/dagster.yaml" if mode == "docker" else "dagster.yaml")
    config = yaml.safe_load(source.read_text())
    config["concurrency"]["runs"] = {"max_concurrent_runs": 4}
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    return config


class MemorySampler(threading.Thread):
    """Peak RSS per process (or per container) of the runs, sampled every 0.25 s."""

    def __init__(self, mode: str, code_server_pid: int | None):
        super().__init__(daemon=True)
        self.mode, self.code_server_pid = mode, code_server_pid
        self.peaks: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.wait(0.25 if self.mode != "docker" else 1.0):
            try:
                if self.mode == "docker":
                    self._sample_containers()
                else:
                    for proc in psutil.Process(self.code_server_pid).children(recursive=True):
                        self._sample(proc, "run")
                    if self.mode == "celery":
                        for proc in psutil.process_iter(["cmdline"]):
                            cmdline = " ".join(proc.info["cmdline"] or [])
                            if "celery" in cmdline and "worker" in cmdline:
                                self._sample(proc, "step")
            except (psutil.Error, subprocess.SubprocessError, ValueError):
                continue

    def _sample(self, proc, kind: str) -> None:
        import psutil

        try:
            rss = proc.memory_info().rss / 2**20
        except psutil.Error:
            return
        key = f"{kind}:{proc.pid}"
        self.peaks[key] = max(self.peaks.get(key, 0.0), rss)

    def _sample_containers(self) -> None:
        out = subprocess.run(
            ["podman", "stats", "--no-stream", "--format", "json"],
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for item in json.loads(out or "[]"):
            usage = item.get("mem_usage", "0B / 0B").split("/")[0].strip()
            number, unit = float(usage.rstrip("kKMGB")), usage.lstrip("0123456789.")
            scale = {"B": 1 / 2**20, "kB": 1 / 1024, "KB": 1 / 1024, "MB": 1, "GB": 1024}
            key = f"container:{item.get('name') or item.get('id')}"
            mib = number * scale.get(unit, 1)
            self.peaks[key] = max(self.peaks.get(key, 0.0), mib)

    def median_peak(self, kind: str) -> float | None:
        values = [v for k, v in self.peaks.items() if k.startswith(kind + ":") and v > 20]
        return statistics.median(values) if values else None


def _database() -> tuple[str, object]:
    admin_url = make_url(BENCH_POSTGRES_URL).set(drivername="postgresql+psycopg")
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.set(database=name)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA app"))
    engine.dispose()
    return name, url


def _drop(name: str) -> None:
    admin_url = make_url(BENCH_POSTGRES_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _podman(*args: str, check: bool = True) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    done = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=120)
    if check and done.returncode:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def docker_unavailable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed"
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0:
        return f"image {IMAGE} not built (make image)"
    return None


def measure(mode: str, runs: int, tmp: Path) -> dict:
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    db_name, url = _database()
    processes: list[Process] = []
    containers: list[str] = []
    vhost = None
    try:
        app_url = url.render_as_string(hide_password=False) + "?options=-csearch_path%3Dapp"
        upgrade(app_url)
        home = tmp / mode / "home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_config(mode)))
        instance_env = {
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": db_name,
        }
        extra = dict(instance_env)
        if mode == "celery":
            vhost = f"bench_{uuid.uuid4().hex[:8]}"
            subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
            subprocess.run(
                ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                check=True,
                capture_output=True,
            )
            extra |= {
                "OPS_EXECUTOR": "celery",
                "OPS_CELERY_BROKER_URL": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
            }
        socket = tmp / mode / "podman.sock"
        if mode == "docker":
            extra |= {
                "DOCKER_HOST": f"unix://{socket}",
                "OPS_DOCKER_NETWORK": "host",
                "CONTAINERS_CONF": str(CONTAINERS_CONF),
            }
        env = base_env(home, tmp / mode / "data", app_url, extra)
        for name in _instance_config(mode)["run_launcher"].get("config", {}).get("env_vars", []):
            env.setdefault(name, "")
        logs = tmp / mode
        grpc_port, web_port = free_port(), free_port()
        workspace = logs / "workspace.yaml"
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
        with_env = os.environ.copy()
        os.environ.update(instance_env)
        instance = dg.DagsterInstance.from_config(str(home))
        instance.get_runs_count()
        code_server_pid = None
        serve = ["dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(grpc_port)]
        serve += ["-m", "ops_platform.definitions"]
        if mode == "docker":
            processes.append(
                Process(
                    "podman",
                    ["podman", "system", "service", "--time=0", f"unix://{socket}"],
                    {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
                    logs / "podman.log",
                ).start()
            )
            name = f"ops-bench-cs-{uuid.uuid4().hex[:6]}"
            flags = [
                f"--env={k}={v}"
                for k, v in {
                    **instance_env,
                    "OPS_DATABASE_URL": app_url,
                    "DAGSTER_CURRENT_IMAGE": IMAGE,
                }.items()
            ]
            _podman("run", "-d", "--name", name, "--network", "host", *flags, IMAGE, *serve)
            containers.append(name)
        else:
            server = Process("code-server", [str(BIN / serve[0]), *serve[1:]], env, logs / "cs.log")
            processes.append(server.start())
            code_server_pid = server.popen.pid
        wait_for("the code server", lambda: grpc_ok(grpc_port), 240, interval_s=1)
        if mode == "celery":
            for label in ("a", "b"):
                worker = [str(BIN / "ops-platform"), "worker", "--queues", "light,heavy"]
                worker += ["--name", label, "--concurrency", "2"]
                processes.append(
                    Process(f"worker-{label}", worker, env, logs / f"w{label}.log").start()
                )
        processes.append(
            Process(
                "daemon",
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                env,
                logs / "daemon.log",
            ).start()
        )
        web = [
            str(BIN / "dagster-webserver"),
            "-w",
            str(workspace),
            "-h",
            "127.0.0.1",
            "-p",
            str(web_port),
        ]
        processes.append(Process("webserver", web, env, logs / "web.log").start())
        wait_for("the webserver", lambda: http_ok(f"http://127.0.0.1:{web_port}/server_info"), 240)
        time.sleep(5 if mode != "celery" else 20)  # daemon and workers up

        sampler = MemorySampler(mode, code_server_pid)
        sampler.start()
        client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
        started = time.time()
        run_ids = [
            client.submit_job_execution(
                JOB, repository_location_name="ops_platform", repository_name="__repository__"
            )
            for _ in range(runs)
        ]
        submitted = time.time() - started

        def all_finished() -> bool:
            return all(instance.get_run_by_id(r).is_finished for r in run_ids)

        wait_for(f"{runs} runs ({mode})", all_finished, 1800, interval_s=1)
        sampler.stopped.set()
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        ok = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        latency = [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]
        last_end = max(r.end_time for r in records if r.end_time)
        kind = {"default": "run", "celery": "run", "docker": "container"}[mode]
        result = {
            "mode": mode,
            "succeeded": f"{ok}/{runs}",
            "submit_s": round(submitted, 1),
            "runs_per_min": round(runs / (last_end - started) * 60, 1),
            "latency_median_s": round(statistics.median(latency), 1),
            "latency_max_s": round(max(latency), 1),
            "peak_mib_per_run": sampler.median_peak(kind),
            "peak_mib_per_step": sampler.median_peak("step") if mode == "celery" else None,
        }
        instance.dispose()
        os.environ.clear()
        os.environ.update(with_env)
        return result
    finally:
        for process in reversed(processes):
            process.stop()
        for name in containers:
            _podman("rm", "-f", name, check=False)
        if mode == "docker":
            for container in _podman(
                "ps", "-aq", "--filter", "label=dagster/run_id", check=False
            ).split():
                _podman("rm", "-f", container, check=False)
        if vhost:
            subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)
        _drop(db_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    results = []
    with TemporaryDirectory(prefix="ops-scale-out-") as folder:
        for mode in args.modes.split(","):
            reason = docker_unavailable() if mode == "docker" else None
            if reason:
                print(f"{mode}: left out: {reason}")
                continue
            print(f"{mode}: {args.runs} runs of {JOB} …", flush=True)
            results.append(measure(mode, args.runs, Path(folder)))
            print("  " + json.dumps(results[-1]), flush=True)
    if not results:
        return 1
    base = results[0]
    print(f"\n{'mode':<8} {'ok':>6} {'runs/min':>9} {'vs default':>10} {'latency p50':>12} "
          f"{'max':>6} {'MiB/run':>8} {'MiB/step':>9}")  # fmt: skip
    for r in results:
        ratio = r["runs_per_min"] / base["runs_per_min"] if base["runs_per_min"] else 0
        per_run = f"{r['peak_mib_per_run']:.0f}" if r["peak_mib_per_run"] else "-"
        per_step = f"{r['peak_mib_per_step']:.0f}" if r["peak_mib_per_step"] else "-"
        print(
            f"{r['mode']:<8} {r['succeeded']:>6} {r['runs_per_min']:>9.1f} {ratio:>9.2f}x "
            f"{r['latency_median_s']:>11.1f}s {r['latency_max_s']:>5.1f}s {per_run:>8} {per_step:>9}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
