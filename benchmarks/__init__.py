"""Scale benchmarks on Postgres: `python -m benchmarks [name ...]` runs them (all by default);
`python -m benchmarks.<name>` runs one with its own options. They print figures; they are
not tests. Each uses a schema of its own on OPS_BENCH_POSTGRES_URL and drops it at the end.
"""

import importlib
import os

from sqlalchemy import text

BENCH_POSTGRES_URL = os.environ.get(
    "OPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# name → module; each module has `main(argv: list[str] | None = None) -> int`.
BENCHMARKS = {
    "seed": "benchmarks.seed",
    "session_cleanup": "benchmarks.session_cleanup",
    "payments": "benchmarks.payments",
    "bonus": "benchmarks.bonus",
    "email": "benchmarks.email",
    "assets": "benchmarks.assets",
    "orphaned_files": "benchmarks.orphaned_files",
    "scale_out": "benchmarks.scale_out",
    "metrics": "benchmarks.metrics",
    "overhead": "benchmarks.overhead",
}


def vacuum(engine, *tables: str) -> None:
    """VACUUM (ANALYZE) between load and measurement, so every timing starts from fresh stats."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            connection.execute(text(f"VACUUM (ANALYZE) {table}"))


def run(names: list[str] | None = None) -> int:
    failures = 0
    for name in names or list(BENCHMARKS):
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        print(f"=== {name}")
        failures += bool(importlib.import_module(BENCHMARKS[name]).main([]))
    return 1 if failures else 0
