"""`ops-platform seed` and `demo` act only on their own targets: the embedded defaults, or a
database / object store they created and marked; anything else needs its name repeated."""

import pytest
from sqlalchemy import text

from ops_platform.cli import main
from ops_platform.db.engine import make_engine, state_table
from ops_platform.db.migrate import upgrade
from ops_platform.demo_guard import (
    DATABASE_MARKER_KEY,
    STORE_MARKER_KEY,
    DemoTargetRefused,
    check_demo_object_store,
    database_name,
)
from ops_platform.resources.object_store import LocalObjectStore
from ops_platform.settings import load_settings
from tests.s3_server import CREDENTIALS, REGION, make_bucket, s3_store


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "OPS_DATABASE_URL",
        "OPS_S3_BUCKET",
        "OPS_S3_ENDPOINT_URL",
        "OPS_OBJECT_STORE_DIR",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["sqlite", "postgres"])
def production_url(request, tmp_path):
    """An app database with app tables and data that no seed created (like production).
    The Postgres URL carries a password, which no message may show."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'prod.db'}"
    else:
        url = request.getfixturevalue("postgres_schema_url").replace(
            "postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:hunter2secret@"
        )
    upgrade(url)
    _execute(url, "INSERT INTO users (id, email, created_at) VALUES (1, 'real@x.io', :now)")
    return url


def _execute(url: str, sql: str):
    from datetime import UTC, datetime

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(sql), {"now": datetime.now(UTC)})
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def _users(url: str) -> list:
    return [row[0] for row in _execute(url, "SELECT email FROM users ORDER BY id")]


@pytest.mark.parametrize("command", [["seed", "--users", "5"], ["demo", "--users", "5"]])
def test_an_unmarked_database_with_app_tables_is_refused(
    command, production_url, monkeypatch, capsys
):
    monkeypatch.setenv("OPS_DATABASE_URL", production_url)
    assert main(command) == 2
    err = capsys.readouterr().err
    name = database_name(production_url)
    assert "refusing to empty the app database" in err
    assert f"--reset-database {name}" in err and command[0] in err
    assert "hunter2secret" not in err
    assert _users(production_url) == ["real@x.io"]  # nothing touched


def test_a_wrong_name_is_refused_and_the_right_one_resets_and_marks(
    production_url, monkeypatch, capsys
):
    monkeypatch.setenv("OPS_DATABASE_URL", production_url)
    assert main(["seed", "--users", "5", "--reset-database", "not-this-one"]) == 2
    assert "does not name it" in capsys.readouterr().err
    assert _users(production_url) == ["real@x.io"]

    name = database_name(production_url)
    assert main(["seed", "--users", "5", "--reset-database", name]) == 0
    assert "real@x.io" not in _users(production_url) and len(_users(production_url)) == 5
    engine = make_engine(production_url)
    with engine.connect() as connection:
        table = state_table(connection, "app_state")
        marker = connection.execute(
            text(f"SELECT value FROM {table} WHERE key = :key"), {"key": DATABASE_MARKER_KEY}
        )
        assert marker.first() is not None
    engine.dispose()
    # Marked: the next seed needs no override.
    assert main(["seed", "--users", "6"]) == 0
    assert len(_users(production_url)) == 6


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_new_database_is_created_marked_and_reseeded(kind, tmp_path, monkeypatch, request):
    url = (
        f"sqlite:///{tmp_path / 'new.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_schema_url")
    )
    monkeypatch.setenv("OPS_DATABASE_URL", url)
    assert main(["seed", "--users", "5"]) == 0
    assert main(["seed", "--users", "7"]) == 0  # its own marker lets it reseed
    assert len(_users(url)) == 7


def test_the_embedded_default_needs_no_override(tmp_path):
    assert main(["seed", "--users", "5"]) == 0
    assert main(["seed", "--users", "5"]) == 0
    assert (tmp_path / "data" / "app.db").exists()


# --- object store ---------------------------------------------------------------------
def test_the_demo_refuses_a_bucket_holding_objects_before_touching_anything(
    s3_endpoint, tmp_path, monkeypatch, capsys
):
    bucket = make_bucket(s3_endpoint)
    production = s3_store(s3_endpoint, bucket)
    production.put_bytes("uploads/customer/contract.pdf", b"real")
    monkeypatch.setenv("OPS_S3_BUCKET", bucket)
    monkeypatch.setenv("OPS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    assert main(["demo", "--users", "5"]) == 2
    err = capsys.readouterr().err
    assert f"refusing to run the demo on the object store s3://{bucket}" in err
    assert f"--reset-object-store {bucket}" in err
    assert [o.key for o in production.list_objects("")] == ["uploads/customer/contract.pdf"]
    assert not (tmp_path / "data" / "app.db").exists()  # refused before the seed


def test_store_verdicts(s3_endpoint, tmp_path, monkeypatch):
    bucket = make_bucket(s3_endpoint)
    settings = load_settings({"OPS_DATA_DIR": str(tmp_path / "data"), "OPS_S3_BUCKET": bucket})
    store = s3_store(s3_endpoint, bucket)
    assert check_demo_object_store(settings, store).mark  # empty: the demo's own from now on
    store.put_bytes("uploads/a.bin", b"x")
    with pytest.raises(DemoTargetRefused):
        check_demo_object_store(settings, store)
    with pytest.raises(DemoTargetRefused):
        check_demo_object_store(settings, store, reset_object_store="other-bucket")
    assert check_demo_object_store(settings, store, reset_object_store=bucket).allowed
    store.put_bytes(STORE_MARKER_KEY, b"{}")
    assert check_demo_object_store(settings, store).allowed


def test_a_local_store_outside_the_data_dir_is_guarded_too(tmp_path):
    folder = tmp_path / "uploads-share"
    settings = load_settings(
        {"OPS_DATA_DIR": str(tmp_path / "data"), "OPS_OBJECT_STORE_DIR": str(folder)}
    )
    store = LocalObjectStore(root=str(folder))
    store.put_bytes("uploads/x.bin", b"x")
    with pytest.raises(DemoTargetRefused, match="OPS_OBJECT_STORE_DIR"):
        check_demo_object_store(settings, store)
    embedded = load_settings({"OPS_DATA_DIR": str(tmp_path / "data")})
    LocalObjectStore(root=str(tmp_path / "data" / "object_store")).put_bytes("uploads/y", b"y")
    assert not check_demo_object_store(embedded, store).mark


def test_the_demo_skips_jobs_that_need_run_config():
    from ops_platform.definitions import defs
    from ops_platform.demo import needs_run_config

    repo = defs.get_repository_def()
    assert needs_run_config(repo.get_job("replay_dead_items"))
    assert not needs_run_config(repo.get_job("session_cleanup"))
