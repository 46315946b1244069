"""`ops-platform demo`: the embedded default, end to end.

Creates the SQLite app database, seeds a small data set, then runs every op job and
materializes every scheduled asset (its latest partition) in-process against the local
Dagster instance (`DAGSTER_HOME`, default `.dagster/`), and prints what each did.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from tabulate import tabulate

# Metadata keys worth a column in the summary, most telling first.
SUMMARY_KEYS = (
    "rows_changed",
    "row_count",
    "rows_written",
    "sent",
    "published",
    "credited",
    "findings",
    "rows_matched",
)


# The demo prints one line per run; Dagster's per-event DEBUG log stays in the instance
# (the UI shows it), not on the terminal.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def needs_run_config(job) -> bool:
    """A job whose run config has required entries (no defaults for them)."""
    import dagster as dg

    try:
        dg.validate_run_config(job, QUIET_RUN_CONFIG)
    except dg.DagsterInvalidConfigError:
        return True
    return False


def _instance():
    import dagster as dg

    from ops_platform.local_instance import ensure_local_instance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    ensure_local_instance(home)
    return dg.DagsterInstance.get()


def _summary(result) -> str:
    """Sum the telling metadata of the run: from its materializations if it made any (an
    asset's output carries the same metadata again), else from its op outputs."""
    events = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    if not events:
        events = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    found: dict[str, float] = {}
    for event in events:
        data = event.event_specific_data
        metadata = (
            data.materialization.metadata if hasattr(data, "materialization") else data.metadata
        )
        for key, value in (metadata or {}).items():
            if key in SUMMARY_KEYS and isinstance(getattr(value, "value", None), (int, float)):
                found[key] = found.get(key, 0) + value.value
    return (
        ", ".join(f"{k}={int(v) if float(v).is_integer() else v}" for k, v in found.items()) or "-"
    )


def _demo_runs(defs, now: datetime):
    """(label, job, partition_key) for every asset job's latest partitions, then every op job."""
    from ops_platform.schedules.build import last_partition_keys
    from ops_platform.schedules.catalog import SCHEDULES

    repo = defs.get_repository_def()
    job_names = {job.name for job in repo.get_all_jobs()}
    asset_job_names = []
    for row in SCHEDULES:
        if (
            row.kind == "asset"
            and row.job_name in job_names
            and row.job_name not in asset_job_names
        ):
            asset_job_names.append(row.job_name)
    for name in asset_job_names:
        job = repo.get_job(name)
        if job.partitions_def is None:
            yield name, job, None
        else:
            for key in last_partition_keys(job.partitions_def, now):
                yield f"{name} [{key}]", job, key
    op_job_names = []
    for row in SCHEDULES:
        if row.kind == "job" and row.target in job_names and row.target not in op_job_names:
            op_job_names.append(row.target)
    others = sorted(
        n for n in job_names - set(asset_job_names) - set(op_job_names) if not n.startswith("__")
    )
    for name in op_job_names + others:
        yield name, repo.get_job(name), None


def run_demo(
    users: int = 300,
    seed: int = 42,
    reset_database: str | None = None,
    reset_object_store: str | None = None,
) -> int:
    from ops_platform.db.migrate import upgrade
    from ops_platform.db.seed import seed_database
    from ops_platform.demo_guard import (
        check_demo_database,
        check_demo_object_store,
        describe_database,
        mark_demo_database,
        mark_demo_object_store,
    )
    from ops_platform.resources.object_store import build_object_store
    from ops_platform.settings import load_settings

    settings = load_settings()
    # Both checks come before anything is written: a refused demo changes nothing.
    database = check_demo_database(settings, "demo", reset_database)
    store = build_object_store(settings)
    store_verdict = check_demo_object_store(settings, store, reset_object_store)
    print(f"app database: {describe_database(settings.database_url)} ({database.why})")
    print(f"object store: {store.describe()} ({store_verdict.why})")
    upgrade(settings.app_database_url)
    counts = seed_database(settings.app_database_url, users=users, seed=seed, progress=None)
    if database.mark:
        mark_demo_database(settings.app_database_url)
    print(f"seeded {sum(counts.values()):,} rows for {users} users")
    _prepare_demo_files(settings, store)
    if store_verdict.mark:
        mark_demo_object_store(store)

    from ops_platform.definitions import defs

    instance = _instance()
    now = datetime.now(UTC)
    rows, failures = [], 0
    for label, job, partition_key in _demo_runs(defs, now):
        if needs_run_config(job):
            # A job only an operator launches, with config naming what to act on.
            rows.append((label, "SKIPPED", "-", "launched by hand with its run config"))
            print(f"  {'SKIPPED':<8} {label} (needs run config)", flush=True)
            continue
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            raise_on_error=False,
            run_config=QUIET_RUN_CONFIG,
        )
        seconds = time.perf_counter() - started
        status = "SUCCESS" if result.success else "FAILURE"
        failures += not result.success
        detail = _summary(result) if result.success else _failure_message(result)
        rows.append((label, status, f"{seconds:.2f}s", detail))
        print(f"  {status:<8} {label} ({seconds:.2f}s)", flush=True)
    print()
    print(
        tabulate(rows, headers=("job / asset", "status", "time", "what it did"), tablefmt="github")
    )
    ran = sum(1 for row in rows if row[1] != "SKIPPED")
    print(
        f"\n{ran - failures} of {ran} runs succeeded; Dagster instance at {os.environ['DAGSTER_HOME']}"
    )
    print("Open the UI on this instance with: make dev")
    return 1 if failures else 0


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


def _prepare_demo_files(settings, store) -> None:
    """Give the file jobs work: log files of several ages in the log folder, and upload
    objects (referenced, orphaned, old trash) in the object store the guard accepted. A
    local store gets them backdated; S3 cannot backdate, so there they are all fresh."""
    from sqlalchemy import text

    from ops_platform.db.engine import make_engine

    logs = settings.log_dir
    logs.mkdir(parents=True, exist_ok=True)
    for name, days in (
        ("app.log", 0),
        ("app.log.1", 2),
        ("app-2020-01-01.log", 40),
        ("worker.log", 2),
    ):
        path = logs / name
        path.write_text(f"demo log line for {name}\n" * 200)
        _age(path, days)
    engine = make_engine(settings.app_database_url)
    with engine.connect() as connection:
        referenced = (
            connection.execute(text("SELECT s3_key FROM stored_files ORDER BY id LIMIT 5"))
            .scalars()
            .all()
        )
    engine.dispose()
    objects = [(key, 10) for key in referenced]
    objects += [(f"{settings.s3_uploads_prefix}demo/orphan-{i}.bin", 10) for i in range(5)]
    objects += [(f"{settings.s3_uploads_prefix}demo/fresh-orphan.bin", 0)]
    objects += [(f"{settings.s3_trash_prefix}{settings.s3_uploads_prefix}demo/long-gone.bin", 40)]
    local = not settings.s3_bucket
    for key, days in objects:
        store.put_bytes(key, b"demo object " + key.encode())
        if local:
            _age(settings.local_object_store_dir.joinpath(*key.split("/")), days)
    print(f"demo files: {len(objects)} objects in {store.describe()}, 4 log files under {logs}")


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure or event.event_type_value == "RUN_FAILURE":
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                return error.message.strip().splitlines()[0][:120]
    return "failed"
