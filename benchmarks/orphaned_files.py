"""orphaned_file_cleanup at scale: listing, set-based reference check, move to trash.

Loads `stored_files` in a Postgres schema of its own with `--references` rows, puts
`--objects` uploads in a local-folder object store (half of them referenced, all past the
grace period) and optionally `--s3-objects` in moto's S3 server, runs `clean_orphaned_files`
(the rule behind `orphaned_file_cleanup`) and prints objects/s and the cost of the
reference check: one query per 1,000-key page against the same page checked key by key.

    .venv/bin/python -m benchmarks.orphaned_files [--references N] [--objects N] [--s3-objects N]

The schema and the temporary folders are removed at the end.
"""

import argparse
import os
import shutil
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from benchmarks import BENCH_POSTGRES_URL
from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    drop_schemas,
    make_engine,
    psycopg_url,
    schema_url,
    utcnow,
)
from ops_platform.db.migrate import upgrade
from ops_platform.jobs import files as files_job
from ops_platform.jobs.files import clean_orphaned_files
from ops_platform.resources.object_store import LocalObjectStore


def _key(n: int) -> str:
    return f"uploads/{n % 97:02d}/file-{n:08d}.bin"


def load_references(engine, references: int, objects: int) -> None:
    """stored_files: every even object number below `objects`, then filler up to `references`."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO stored_files (s3_key, owner_id, created_at) "
                "SELECT 'uploads/' || lpad((g % 97)::text, 2, '0') || '/file-' || lpad(g::text, 8, '0') || '.bin', "
                "g % 1000, now() FROM generate_series(0, :objects - 1, 2) g"
            ),
            {"objects": objects},
        )
        connection.execute(
            text(
                "INSERT INTO stored_files (s3_key, owner_id, created_at) "
                "SELECT 'uploads/other/' || g || '.bin', g % 1000, now() FROM generate_series(1, :filler) g"
            ),
            {"filler": max(0, references - objects // 2)},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE) stored_files"))


def fill_local(root: Path, objects: int, age_days: float) -> None:
    stamp = time.time() - age_days * 86400
    for n in range(objects):
        path = root / _key(n)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 64)
        os.utime(path, (stamp, stamp))


def timed_reference_check():
    """Wrap the page reference check to add up its time."""
    spent = {"seconds": 0.0, "queries": 0}
    real = files_job.referenced_keys

    def timed(engine, keys):
        started = time.perf_counter()
        try:
            return real(engine, keys)
        finally:
            spent["seconds"] += time.perf_counter() - started
            spent["queries"] += 1

    files_job.referenced_keys = timed
    return spent, lambda: setattr(files_job, "referenced_keys", real)


def run_store(label: str, engine, store, objects: int, now) -> None:
    spent, restore = timed_reference_check()
    started = time.perf_counter()
    try:
        result = clean_orphaned_files(engine, store, now)
    finally:
        restore()
    seconds = time.perf_counter() - started
    expected = objects - (objects + 1) // 2
    if result.moved != expected or result.referenced != (objects + 1) // 2:
        raise SystemExit(
            f"{label}: wrong result: moved {result.moved}, referenced {result.referenced}"
        )
    print(
        f"  {label}: {objects:,} uploads in {seconds:.2f}s = {objects / seconds:,.0f} objects/s; "
        f"moved {result.moved:,} to trash; {spent['queries']} reference queries, "
        f"{spent['seconds'] / max(spent['queries'], 1) * 1000:.1f} ms each "
        f"({spent['seconds'] / seconds:.0%} of the run)"
    )


def per_key_baseline(engine, page: list[str]) -> tuple[float, float]:
    """Seconds for one page: one IN query vs one query per key."""
    started = time.perf_counter()
    files_job.referenced_keys(engine, page)
    one_query = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect() as connection:
        for key in page:
            connection.execute(
                text("SELECT 1 FROM stored_files WHERE s3_key = :k LIMIT 1"), {"k": key}
            ).first()
    return one_query, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks.orphaned_files", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--references", type=int, default=1_000_000, help="stored_files rows")
    parser.add_argument(
        "--objects", type=int, default=20_000, help="uploads in the local folder store"
    )
    parser.add_argument(
        "--s3-objects", type=int, default=1_000, help="uploads in moto's S3 (0: skip)"
    )
    args = parser.parse_args(argv)

    schema = f"bench_files_{uuid.uuid4().hex[:8]}"
    admin = make_engine(psycopg_url(BENCH_POSTGRES_URL))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = psycopg_url(BENCH_POSTGRES_URL)
    url = schema_url(base, schema)
    folder = Path(tempfile.mkdtemp(prefix="bench-files-"))
    try:
        upgrade(url)
        engine = make_engine(url, statement_timeout_s=LONG_STATEMENT_TIMEOUT_S)
        started = time.perf_counter()
        load_references(engine, args.references, max(args.objects, args.s3_objects))
        print(
            f"  stored_files: {args.references:,} rows loaded in {time.perf_counter() - started:.1f}s"
        )

        one, per_key = per_key_baseline(engine, [_key(n) for n in range(1000)])
        print(
            f"  reference check of a 1,000-key page: one query {one * 1000:.1f} ms, "
            f"key by key {per_key * 1000:.0f} ms ({per_key / one:.0f}x)"
        )

        started = time.perf_counter()
        fill_local(folder / "store", args.objects, age_days=10)
        print(
            f"  local folder: {args.objects:,} uploads written in {time.perf_counter() - started:.1f}s"
        )
        run_store(
            "local folder",
            engine,
            LocalObjectStore(root=str(folder / "store")),
            args.objects,
            utcnow(),
        )

        if args.s3_objects:
            from concurrent.futures import ThreadPoolExecutor

            from tests.s3_server import make_bucket, moto_server, s3_store

            with moto_server() as endpoint:
                store = s3_store(endpoint, make_bucket(endpoint))
                started = time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    list(
                        pool.map(
                            lambda n: store.put_bytes(_key(n), b"x" * 64), range(args.s3_objects)
                        )
                    )
                print(
                    f"  moto S3: {args.s3_objects:,} uploads written in {time.perf_counter() - started:.1f}s"
                )
                # Uploads were just written: look from 8 days ahead so all are past the grace period.
                run_store(
                    "moto S3 (HTTP)", engine, store, args.s3_objects, utcnow() + timedelta(days=8)
                )
        engine.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with admin.begin() as connection:
            drop_schemas(connection, schema)
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
