"""Seeding 1,000,000 users (and their related rows) into Postgres.

Creates a schema of its own on OPS_BENCH_POSTGRES_URL, upgrades it, runs `seed_database`
— what `ops-platform seed --users N` runs — with its per-table progress, and prints the
total time and rows/s. Target: well under 5 minutes for 1,000,000 users on 2 cores.

    .venv/bin/python -m benchmarks.seed [--users 1000000] [--seed 42] [--keep]

The schema is dropped at the end (unless --keep, which prints its URL).
"""

import argparse
import time
import uuid

from sqlalchemy import create_engine, text

from benchmarks import BENCH_POSTGRES_URL
from ops_platform.db.engine import drop_schemas, psycopg_url, schema_url
from ops_platform.db.migrate import upgrade
from ops_platform.db.seed import seed_database

TARGET_SECONDS = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.seed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the schema for a look afterwards")
    args = parser.parse_args(argv)

    base = psycopg_url(BENCH_POSTGRES_URL)
    schema = f"bench_seed_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = schema_url(base, schema)
    try:
        upgrade(url)
        started = time.perf_counter()
        counts = seed_database(url, users=args.users, seed=args.seed, progress=print)
        seconds = time.perf_counter() - started
        rows = sum(counts.values())
        verdict = "within" if seconds < TARGET_SECONDS else "OVER"
        print(
            f"\nseed: {args.users:,} users, {rows:,} rows in {len(counts)} tables: {seconds:.1f}s, "
            f"{rows / seconds:,.0f} rows/s ({verdict} the {TARGET_SECONDS}s target)"
        )
        if args.keep:
            print(f"kept: {url}")
        return 0 if seconds < TARGET_SECONDS else 1
    finally:
        if not args.keep:
            with admin.begin() as connection:
                drop_schemas(connection, schema)
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
