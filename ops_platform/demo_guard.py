"""What `ops-platform seed` and `ops-platform demo` may overwrite.

Both replace the app database's data (the seed empties every app table first) and the demo
then runs every destructive job and writes demo objects. So they act only on targets that
are theirs: the embedded defaults under `OPS_DATA_DIR`, or a database / object store they
created themselves (it had no app tables / no objects) and marked as a demo target. Anything
else — a shell where `OPS_DATABASE_URL` or `OPS_S3_BUCKET` still names production — is
refused, unless the operator repeats the target's name (`--reset-database NAME`,
`--reset-object-store NAME`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from ops_platform.db import schema
from ops_platform.db.engine import make_engine, state_schema, state_table
from ops_platform.settings import Settings, redact_url

# The marker row (in the project's own `app_state`) of a database the seed created and filled.
DATABASE_MARKER_KEY = "ops_platform.demo_database"
# The marker object of an object store the demo created and filled itself (outside the
# uploads and trash prefixes, so the file jobs never list it).
STORE_MARKER_KEY = "ops-platform-demo-store.json"


class DemoTargetRefused(RuntimeError):
    """The database or object store is not one the seed/demo may overwrite."""


@dataclass(frozen=True)
class Verdict:
    """May the seed/demo act on the target, and must it mark the target afterwards?"""

    allowed: bool
    mark: bool
    why: str


# --- app database ---------------------------------------------------------------------
def database_name(url: str) -> str:
    """The name an operator repeats to override: the Postgres database, or the SQLite file name."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return Path(parsed.database or "").name
    return parsed.database or ""


def describe_database(url: str) -> str:
    """The database as messages may show it: a SQLite path in full, a server URL redacted."""
    if make_url(url).get_backend_name() == "sqlite":
        return url
    return redact_url(url)


def _has_marker(connection) -> bool:
    if "app_state" not in inspect(connection).get_table_names(schema=state_schema(connection)):
        return False
    found = connection.execute(
        text(f"SELECT 1 FROM {state_table(connection, 'app_state')} WHERE key = :key"),
        {"key": DATABASE_MARKER_KEY},
    )
    return found.first() is not None


def database_verdict(settings: Settings, reset_database: str | None = None) -> Verdict:
    url = settings.app_database_url
    if settings.embedded_database:
        return Verdict(True, False, "the embedded default")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return Verdict(True, True, "a new database")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            if not present & set(schema.CONTRACT_TABLES):
                return Verdict(True, True, "a new database (no app tables yet)")
            if _has_marker(connection):
                return Verdict(True, True, "a demo database created by ops-platform")
    finally:
        engine.dispose()
    if reset_database is not None and reset_database == database_name(url):
        return Verdict(True, True, f"--reset-database {reset_database}")
    return Verdict(False, False, "")


def check_demo_database(
    settings: Settings, command: str, reset_database: str | None = None
) -> Verdict:
    """Raise `DemoTargetRefused` unless `command` may empty and refill the app database."""
    verdict = database_verdict(settings, reset_database)
    if verdict.allowed:
        return verdict
    name = database_name(settings.database_url)
    wrong = f" (--reset-database {reset_database!r} does not name it)" if reset_database else ""
    raise DemoTargetRefused(
        f"refusing to empty the app database {describe_database(settings.database_url)} (OPS_DATABASE_URL): "
        f"it has app tables and was not created by `ops-platform seed`/`demo`{wrong}. "
        f"Unset OPS_DATABASE_URL to use the embedded default, or, to erase this database's "
        f"data: ops-platform {command} --reset-database {name}"
    )


def mark_demo_database(url: str) -> None:
    """Mark the (seeded) database as a demo target, so the next seed or demo may reuse it."""
    value = json.dumps({"marked_at": datetime.now(UTC).isoformat(), "by": "ops-platform"})
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            table = state_table(connection, "app_state")
            connection.execute(
                text(f"DELETE FROM {table} WHERE key = :key"), {"key": DATABASE_MARKER_KEY}
            )
            connection.execute(
                text(f"INSERT INTO {table} (key, value, updated_at) VALUES (:key, :value, :now)"),
                {"key": DATABASE_MARKER_KEY, "value": value, "now": datetime.now(UTC)},
            )
    finally:
        engine.dispose()


# --- object store ---------------------------------------------------------------------
def store_name(settings: Settings) -> str:
    """The name an operator repeats to override: the bucket, or the local folder."""
    return settings.s3_bucket or str(settings.local_object_store_dir)


def is_embedded_store(settings: Settings) -> bool:
    return not settings.s3_bucket and settings.local_object_store_dir == (
        settings.data_dir / "object_store"
    )


def store_verdict(settings: Settings, store, reset_object_store: str | None = None) -> Verdict:
    if is_embedded_store(settings):
        return Verdict(True, False, "the embedded default")
    if store.exists(STORE_MARKER_KEY):
        return Verdict(True, True, "a demo store created by ops-platform")
    if next(iter(store.list_pages("", page_size=1)), None) is None:
        return Verdict(True, True, "a new, empty store")
    if reset_object_store is not None and reset_object_store == store_name(settings):
        return Verdict(True, True, f"--reset-object-store {reset_object_store}")
    return Verdict(False, False, "")


def check_demo_object_store(
    settings: Settings, store, reset_object_store: str | None = None
) -> Verdict:
    """Raise `DemoTargetRefused` unless the demo may write demo files into the object store
    and run the file jobs on it."""
    verdict = store_verdict(settings, store, reset_object_store)
    if verdict.allowed:
        return verdict
    variable = "OPS_S3_BUCKET" if settings.s3_bucket else "OPS_OBJECT_STORE_DIR"
    raise DemoTargetRefused(
        f"refusing to run the demo on the object store {store.describe()} ({variable}): it holds "
        "objects and was not created by `ops-platform demo` (the demo moves every upload its "
        f"seeded database does not know to the trash). Unset {variable} to use the embedded "
        "default, or, to let the demo act on it anyway: "
        f"ops-platform demo --reset-object-store {store_name(settings)}"
    )


def mark_demo_object_store(store) -> None:
    store.put_bytes(
        STORE_MARKER_KEY,
        json.dumps({"marked_at": datetime.now(UTC).isoformat(), "by": "ops-platform"}).encode(),
        content_type="application/json",
    )
