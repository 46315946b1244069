"""Payment checks per second against a local HTTP provider.

Creates `--payments` pending payments on SQLite and/or Postgres, serves the payment
simulator over HTTP on a free local port (`serve_simulator`, a ThreadingHTTPServer with
keep-alive), and checks every pending payment once with `sweep_pending` — the rule behind
`payment_status_sweep` and `payment_status_check` — for each `--concurrency` level: each
check is one HTTP request plus its share of the batched outcome writes. A raw loop of
provider requests (no database) gives the HTTP ceiling of this machine.

    .venv/bin/python -m benchmarks.payments [--payments 2000] [--concurrency 1,8] [--databases sqlite,postgres]

The Postgres schema and the SQLite file are its own and are removed at the end.
Client, server and database share the machine, so the figures are a floor.
"""

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, delete, func, insert, select, text, update
from tabulate import tabulate

from benchmarks import BENCH_POSTGRES_URL
from ops_platform.db import schema
from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    drop_schemas,
    make_engine,
    psycopg_url,
    schema_url,
    utcnow,
)
from ops_platform.db.migrate import upgrade
from ops_platform.jobs._payment_checks import sweep_pending
from ops_platform.resources.payments import PaymentProvider, serve_simulator


def fill(engine, count: int) -> None:
    created = utcnow() - timedelta(minutes=5)
    rows = [
        {
            "id": i,
            "provider_ref": f"bench_{i}",
            "user_id": i,
            "amount_cents": 1999,
            "status": "pending",
            "created_at": created,
            "check_count": 0,
        }
        for i in range(1, count + 1)
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.payments), rows)


def reset(engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(schema.payments).values(
                status="pending",
                check_count=0,
                next_check_at=None,
                last_checked_at=None,
                settled_at=None,
            )
        )
        connection.execute(delete(schema.payment_check_errors))


def http_ceiling(provider: PaymentProvider, count: int, concurrency: int) -> float:
    refs = [f"ceiling_{i}" for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(provider.get_status, refs))
    return count / (time.perf_counter() - started)


def _database(name: str):
    if name == "postgres":
        schema_name = f"bench_payments_{uuid.uuid4().hex[:8]}"
        admin = create_engine(psycopg_url(BENCH_POSTGRES_URL))
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema_name}"'))
        base = psycopg_url(BENCH_POSTGRES_URL)
        url = schema_url(base, schema_name)

        def cleanup():
            with admin.begin() as connection:
                drop_schemas(connection, schema_name)
            admin.dispose()

        return url, cleanup
    folder = tempfile.TemporaryDirectory(prefix="bench_payments_")
    return f"sqlite:///{Path(folder.name) / 'app.db'}", folder.cleanup


def bench_database(
    name: str, count: int, levels: list[int], provider: PaymentProvider, batch_size: int
) -> list[tuple]:
    url, cleanup = _database(name)
    rows = []
    try:
        upgrade(url)
        engine = make_engine(url, statement_timeout_s=LONG_STATEMENT_TIMEOUT_S)
        fill(engine, count)
        for concurrency in levels:
            reset(engine)
            started = time.perf_counter()
            report = sweep_pending(engine, provider, batch_size=batch_size, concurrency=concurrency)
            seconds = time.perf_counter() - started
            with engine.connect() as connection:
                unchecked = connection.execute(
                    select(func.count())
                    .select_from(schema.payments)
                    .where(schema.payments.c.check_count == 0)
                ).scalar_one()
            rows.append(
                (
                    name,
                    count,
                    concurrency,
                    batch_size,
                    report.checked,
                    report.written,
                    unchecked,
                    dict(report.outcomes).get("succeeded", 0),
                    f"{seconds:.2f}",
                    f"{report.checked / seconds:,.0f}",
                )
            )
            print(f"  {name}, concurrency {concurrency}: {report.checked / seconds:,.0f} checks/s")
        engine.dispose()
    finally:
        cleanup()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated thread counts")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",")]

    server = serve_simulator()
    provider = PaymentProvider(url=server.url, max_connections=max(levels))
    rows = []
    try:
        ceilings = {
            level: http_ceiling(provider, min(args.payments, 1000), level) for level in levels
        }
        for name in args.databases.split(","):
            rows += bench_database(name.strip(), args.payments, levels, provider, args.batch_size)
    finally:
        provider.close()
        server.shutdown()
        server.server_close()
    print(
        tabulate(
            rows,
            headers=(
                "database",
                "payments",
                "threads",
                "batch",
                "checked",
                "written",
                "left unchecked",
                "succeeded",
                "seconds",
                "checks/s",
            ),
            tablefmt="github",
        )
    )
    print(
        "HTTP ceiling (provider requests only, no database): "
        + ", ".join(f"{level} threads {rate:,.0f} req/s" for level, rate in ceilings.items())
    )
    ok = all(row[4] == row[1] and row[6] == 0 for row in rows)
    print(f"every pending payment checked exactly once per sweep: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
