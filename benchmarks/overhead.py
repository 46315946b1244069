"""What a run of ours costs on top of Dagster itself: process start, imports, definitions.

In one run, alternating, `--runs` rounds of three commands, each a process of its own on the
same fresh Dagster instance (SQLite storage) and an empty SQLite app database:

- (a) `dagster job execute` of a light op job of ours (`throne_expiry`: one UPDATE on an
  empty table);
- (b) `dagster asset materialize` of a light asset of ours (`stream_rankings`, no streams);
- (c) a bare Dagster job with one no-op op and the same in-process executor.

Prints the median wall time and peak RSS of each, (a) and (b) against (c), and the import
time of `ops_platform.definitions` against `import dagster` (medians of `--runs` fresh
interpreters each, alternating). Targets: a light run <= 1.25 x the bare run's wall time and
<= its peak RSS + 40 MiB; the definitions import <= `import dagster` + 0.5 s.

Needs no server. `.venv/bin/python -m benchmarks.overhead [--runs N]`
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RUN_RATIO = 1.25
TARGET_EXTRA_RSS_MIB = 40.0
TARGET_EXTRA_IMPORT_S = 0.5

BARE_JOB = """
import dagster as dg


@dg.op
def noop():
    pass


@dg.job(executor_def=dg.in_process_executor)
def bare_noop():
    noop()


defs = dg.Definitions(jobs=[bare_noop])
"""

IMPORT_PROBE = (
    "import time; started = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - started)"
)


def _dagster(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dagster")), *args]


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and stdout of one child process run to its end."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, output


def _environment(workdir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPS_")}
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(
        DAGSTER_HOME=str(home),
        OPS_DATA_DIR=str(workdir / "ops"),
        OPS_DATABASE_URL=f"sqlite:///{workdir / 'app.db'}",
        PYTHONWARNINGS="ignore",
    )
    return env


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="paired rounds (and imports)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as tmp:
        workdir = Path(tmp)
        env = _environment(workdir)
        (workdir / "bare_noop.py").write_text(BARE_JOB)
        subprocess.run(
            [sys.executable, "-m", "ops_platform.cli", "db", "upgrade"],
            env=env,
            check=True,
            capture_output=True,
        )
        commands = {
            "job execute throne_expiry": _dagster(
                "job", "execute", "-m", "ops_platform.definitions", "-j", "throne_expiry"
            ),
            "asset materialize stream_rankings": _dagster(
                "asset",
                "materialize",
                "-m",
                "ops_platform.definitions",
                "--select",
                "stream_rankings",
            ),
            "bare no-op job": _dagster(
                "job", "execute", "-f", str(workdir / "bare_noop.py"), "-j", "bare_noop"
            ),
        }
        # One untimed round first: .pyc files and the instance's storage get created.
        for command in commands.values():
            timed_process(command, env)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, list[float]] = {name: [] for name in commands}
        imports: dict[str, list[float]] = {"dagster": [], "ops_platform.definitions": []}
        for round_number in range(args.runs):
            for name, command in commands.items():
                seconds, peak, _ = timed_process(command, env)
                walls[name].append(seconds)
                rss[name].append(peak)
            for module in imports:
                _, _, output = timed_process(
                    [sys.executable, "-c", IMPORT_PROBE.format(module=module)], env
                )
                imports[module].append(float(output.strip().splitlines()[-1]))
            print(
                f"  round {round_number + 1}: "
                + " | ".join(f"{name} {walls[name][-1]:.2f}s" for name in commands)
            )

    bare = "bare no-op job"
    bare_wall, bare_rss = _median(walls[bare]), _median(rss[bare])
    failures = 0
    print(f"\n  {args.runs} paired runs, medians (in-process executor, SQLite instance):")
    for name in commands:
        wall, peak = _median(walls[name]), _median(rss[name])
        line = f"  {name:<36} {wall:6.2f}s  peak RSS {peak:6.0f} MiB"
        if name != bare:
            ratio, extra = wall / bare_wall, peak - bare_rss
            ok = ratio <= TARGET_RUN_RATIO and extra <= TARGET_EXTRA_RSS_MIB
            failures += not ok
            line += (
                f"  | {ratio:.2f}x the bare run [target <= {TARGET_RUN_RATIO}x], "
                f"{extra:+.0f} MiB [target <= +{TARGET_EXTRA_RSS_MIB:.0f}]"
                f"  {'meets' if ok else 'MISSES'}"
            )
        print(line)
    dagster_import = _median(imports["dagster"])
    ours_import = _median(imports["ops_platform.definitions"])
    ok = ours_import <= dagster_import + TARGET_EXTRA_IMPORT_S
    failures += not ok
    print(
        f"  import dagster {dagster_import:.2f}s | import ops_platform.definitions "
        f"{ours_import:.2f}s ({ours_import - dagster_import:+.2f}s) "
        f"[target <= +{TARGET_EXTRA_IMPORT_S}s]  {'meets' if ok else 'MISSES'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
