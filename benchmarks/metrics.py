"""One Prometheus scrape (`ops-platform metrics`) at 1,000,000 users and 100,000 runs.

Seeds the app database (a Postgres schema of its own) with `--users` users — email queue,
payments and outbox at the seed's proportions — and a Dagster instance with `--runs`
finished runs spread over the code location's jobs (95 % success, 4 % failure, 1 %
canceled, over 90 days; inserted in bulk into the run storage's `runs` table, each with a
real serialized run body). The instance is Postgres (a database of its own, as in
production) and, for comparison, SQLite (`dagster dev`). Then it times `--rounds` full
scrapes — every family, exposition text included — and prints min / median / max with the
app database's share. The first scrape of a process also reads the events of each job's
newest success (rows changed, then cached by run id: a finished run never changes); it is
reported apart. Target: one scrape <= 1 s.

    .venv/bin/python -m benchmarks.metrics [--users 1000000] [--runs 100000] [--rounds 5]

The schema, the instance database and the SQLite instance are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._serdes import serialize_value
from sqlalchemy import create_engine, text
from tabulate import tabulate

from benchmarks import BENCH_POSTGRES_URL, vacuum
from ops_platform.db.engine import drop_schemas, make_engine, psycopg_url, schema_url
from ops_platform.db.migrate import upgrade
from ops_platform.db.seed import seed_database

TARGET_SECONDS = 1.0
STATUSES = (
    (dg.DagsterRunStatus.SUCCESS, 0.95),
    (dg.DagsterRunStatus.FAILURE, 0.04),
    (dg.DagsterRunStatus.CANCELED, 0.01),
)
INSERT_CHUNK = 10_000


def synthetic_runs(jobs: list[str], count: int, now: datetime, seed: int = 7) -> list[dict]:
    """`count` finished runs (rows of Dagster's `runs` table), oldest first, with run bodies
    serialized from real `DagsterRun`s (one template per job and status)."""
    rng = random.Random(seed)
    templates = {
        (job, status): serialize_value(
            dg.DagsterRun(job_name=job, run_id="RUN-ID-PLACEHOLDER", status=status)
        )
        for job in jobs
        for status, _ in STATUSES
    }
    statuses = [status for status, _ in STATUSES]
    weights = [weight for _, weight in STATUSES]
    span = timedelta(days=90).total_seconds()
    start = now.timestamp() - span
    rows = []
    for i in range(count):
        job = jobs[i % len(jobs)]
        status = rng.choices(statuses, weights)[0]
        run_id = str(uuid.UUID(int=rng.getrandbits(128)))
        started = start + span * i / count
        ended = started + rng.uniform(0.5, 120)
        created = datetime.fromtimestamp(started - 1, UTC).replace(tzinfo=None)
        rows.append(
            {
                "run_id": run_id,
                "pipeline_name": job,
                "status": status.value,
                "run_body": templates[(job, status)].replace("RUN-ID-PLACEHOLDER", run_id),
                "create_timestamp": created,
                "update_timestamp": created,
                "start_time": started,
                "end_time": ended,
            }
        )
    return rows


def load_runs(instance: dg.DagsterInstance, rows: list[dict]) -> float:
    from dagster._core.storage.runs.schema import RunsTable

    started = time.perf_counter()
    with instance.run_storage.connect() as connection:
        for offset in range(0, len(rows), INSERT_CHUNK):
            connection.execute(RunsTable.insert(), rows[offset : offset + INSERT_CHUNK])
        if hasattr(connection, "commit"):
            connection.commit()
    return time.perf_counter() - started


def time_scrapes(instance, defs, engine, rounds: int) -> dict:
    """Full scrapes (every family + exposition), and each source on its own."""
    from ops_platform.metrics import OpsCollector, exposition, queue_families, registry_for

    collector = OpsCollector(instance, defs, engine)
    registry = registry_for(collector)
    started = time.perf_counter()
    exposition(registry)  # the first scrape also reads each job's newest success's events
    cold = time.perf_counter() - started
    totals, app_db, size = [], [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        size = len(exposition(registry))
        totals.append(time.perf_counter() - started)
        started = time.perf_counter()
        list(queue_families(engine, collector.clock()))
        app_db.append(time.perf_counter() - started)
    return {"cold": cold, "totals": totals, "app_db": app_db, "bytes": size}


def _instance_yaml(directory: Path, postgres_url: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    storage = f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n" if postgres_url else ""
    (directory / "dagster.yaml").write_text(storage + "telemetry:\n  enabled: false\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.metrics", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    base = psycopg_url(BENCH_POSTGRES_URL)
    tag = uuid.uuid4().hex[:8]
    schema, instance_db = f"bench_metrics_{tag}", f"bench_metrics_instance_{tag}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(text(f'CREATE DATABASE "{instance_db}"'))
    url = schema_url(base, schema)
    instance_url = (
        BENCH_POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
        + f"/{instance_db}"
    )
    results, failed = [], False
    try:
        upgrade(url)
        started = time.perf_counter()
        counts = seed_database(url, users=args.users, seed=42)
        print(
            f"app database: {args.users:,} users, {sum(counts.values()):,} rows in "
            f"{time.perf_counter() - started:.0f}s (email queue {counts.get('notification_email_queue', 0):,}, "
            f"payments {counts.get('payments', 0):,}, outbox {counts.get('realtime_events', 0):,})"
        )
        engine = make_engine(url)
        vacuum(engine, "notification_email_queue", "payments", "realtime_events")
        os.environ["OPS_DATABASE_URL"] = url
        from ops_platform.definitions import build_definitions
        from ops_platform.instance_metrics import job_names
        from ops_platform.settings import load_settings

        defs = build_definitions(load_settings())
        now = datetime.now(UTC)
        runs = synthetic_runs(job_names(defs), args.runs, now)
        with tempfile.TemporaryDirectory() as tmp:
            for label, storage_url in (("postgres", instance_url), ("sqlite", None)):
                home = Path(tmp) / label
                _instance_yaml(home, storage_url)
                with dg.DagsterInstance.from_config(str(home)) as instance:
                    load_s = load_runs(instance, runs)
                    if storage_url:
                        with (
                            create_engine(instance_url)
                            .connect()
                            .execution_options(isolation_level="AUTOCOMMIT") as connection
                        ):
                            connection.execute(text("VACUUM (ANALYZE) runs"))
                    timing = time_scrapes(instance, defs, engine, args.rounds)
                totals = timing["totals"]
                median = statistics.median(totals)
                failed |= median > TARGET_SECONDS
                results.append(
                    [
                        f"{label} instance",
                        f"{args.runs:,} runs loaded in {load_s:.1f}s",
                        f"{timing['cold']:.3f}",
                        f"{min(totals):.3f}",
                        f"{median:.3f}",
                        f"{max(totals):.3f}",
                        f"{statistics.median(timing['app_db']):.3f}",
                        f"{timing['bytes']:,}",
                    ]
                )
        engine.dispose()
    finally:
        with admin.connect() as connection:
            drop_schemas(connection, schema)
            connection.execute(text(f'DROP DATABASE IF EXISTS "{instance_db}" WITH (FORCE)'))
        admin.dispose()
    print(
        tabulate(
            results,
            headers=[
                "Dagster instance",
                "runs",
                "first scrape s",
                "then min s",
                "median s",
                "max s",
                "of which app db s",
                "exposition bytes",
            ],
        )
    )
    verdict = "over" if failed else "within"
    print(
        f"\nmetrics: one scrape {verdict} the {TARGET_SECONDS:.0f}s target at {args.users:,} users"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
