"""Permanent database faults fail a run at once with one line naming the setting; faults
that may pass (refused or reset connections, serialization failures) are retried."""

import os
import time
import uuid

import dagster as dg
import pytest
from sqlalchemy import text

from ops_platform.db.engine import make_engine
from ops_platform.db.faults import permanent_database_fault
from ops_platform.jobs.sessions import session_cleanup
from ops_platform.resources.database import Database
from ops_platform.retries import is_transient
from tests.conftest import POSTGRES_URL
from tests.platform_env import run_dagster


def _error(url: str, sql: str = "SELECT 1"):
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text(sql))
    except Exception as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("no error")


@pytest.fixture
def server():
    from tests.conftest import _need_postgres

    _need_postgres()


def test_an_unresolvable_host_is_permanent():
    error = _error("postgresql://nope.invalid:1/x")
    assert permanent_database_fault(error) == "the host name does not resolve"
    assert not is_transient(error)


def test_unknown_database_role_and_table_are_permanent(server):
    base = POSTGRES_URL.rsplit("/", 1)[0]
    unknown_db = _error(f"{base}/db_{uuid.uuid4().hex[:8]}")
    assert permanent_database_fault(unknown_db) == "the database does not exist"
    unknown_role = _error(base.replace("postgres@", "nobody_x@") + "/postgres")
    assert permanent_database_fault(unknown_role) == "the database refused the login"
    missing = _error(POSTGRES_URL, "SELECT * FROM no_such_table_x")
    assert permanent_database_fault(missing) == "a table is missing"
    assert not any(is_transient(e) for e in (unknown_db, unknown_role, missing))


def test_a_missing_sqlite_table_is_permanent(tmp_path):
    error = _error(f"sqlite:///{tmp_path / 'a.db'}", "SELECT * FROM no_such_table_x")
    assert permanent_database_fault(error) == "a table is missing" and not is_transient(error)


def test_refused_connections_and_serialization_failures_stay_transient(server):
    refused = _error("postgresql://postgres@127.0.0.1:1/postgres")
    assert permanent_database_fault(refused) is None and is_transient(refused)
    serialization = _error(
        POSTGRES_URL, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"
    )
    assert permanent_database_fault(serialization) is None and is_transient(serialization)


def test_a_run_on_an_unresolvable_host_fails_at_once_in_one_line():
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        result = session_cleanup.execute_in_process(
            resources={"database": Database(url="postgresql://nope.invalid:1/x")},
            instance=instance,
            raise_on_error=False,
        )
        retries = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert not result.success and retries == []
    # Whether the resource's start-up check or the step meets it first, the error says it.
    errors = [
        event.event_specific_data.error
        for event in result.all_events
        if event.event_type_value in ("STEP_FAILURE", "RESOURCE_INIT_FAILURE")
    ]
    messages = [error.message.strip() for error in errors if error is not None]
    assert messages, [e.event_type_value for e in result.all_events]
    first = messages[0].splitlines()[0]
    assert "app database: the host name does not resolve" in first
    assert "check OPS_DATABASE_URL (not retried)" in first
    assert time.perf_counter() - started < 20


def test_the_command_line_names_the_setting(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env["OPS_DATABASE_URL"] = "postgresql://nope.invalid:1/x"
    started = time.perf_counter()
    result = run_dagster("job execute", "-j", "session_cleanup", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "the host name does not resolve — check OPS_DATABASE_URL" in result.stderr
    assert "RETRY" not in result.stderr
    assert time.perf_counter() - started < 60


def test_an_unresolvable_object_store_endpoint_is_permanent(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    from ops_platform.resources.object_store import ObjectStoreError, TransientObjectStoreError
    from ops_platform.resources.s3_object_store import S3ObjectStore

    store = S3ObjectStore(
        bucket="b", endpoint_url="http://nope.invalid:1", region_name="us-east-1", max_attempts=1
    )
    started = time.perf_counter()
    with pytest.raises(ObjectStoreError, match="check OPS_S3_ENDPOINT_URL") as raised:
        store.put_bytes("uploads/x", b"x")
    assert not isinstance(raised.value, TransientObjectStoreError)
    assert time.perf_counter() - started < 20
