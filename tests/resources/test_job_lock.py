"""The singleton job lock: one holder per job and app schema; deployments sharing one
Postgres database in different schemas never block each other."""

import uuid

import pytest
from sqlalchemy import create_engine, text

from ops_platform.db.engine import schema_url
from ops_platform.resources.database import Database, JobAlreadyRunning


@pytest.fixture
def two_schemas(postgres_schema_url):
    """Two `database` resources on one Postgres database, each on a schema of its own."""
    base = postgres_schema_url.split("?")[0]
    other = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{other}"'))
    first, second = Database(url=postgres_schema_url), Database(url=schema_url(base, other))
    yield first, second
    for database in (first, second):
        database.engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{other}" CASCADE'))
    admin.dispose()


def test_same_job_on_two_schemas_runs_at_once(two_schemas):
    first, second = two_schemas
    with first.job_lock("session_cleanup"), second.job_lock("session_cleanup"):
        pass


def test_same_job_on_one_schema_is_refused(two_schemas):
    first, _ = two_schemas
    twin = Database(url=first.url)
    try:
        with first.job_lock("session_cleanup"):
            with pytest.raises(JobAlreadyRunning, match="session_cleanup is already running"):
                with twin.job_lock("session_cleanup"):
                    pass
            with twin.job_lock("token_cleanup"):  # another job is not blocked
                pass
        with twin.job_lock("session_cleanup"):  # released on exit
            pass
    finally:
        twin.engine.dispose()
