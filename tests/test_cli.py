"""`ops-platform db upgrade` and `ops-platform seed` through the command line entry point."""

import pytest
from sqlalchemy import inspect, text

from ops_platform.cli import main
from ops_platform.db import schema
from ops_platform.db.engine import make_engine


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OPS_DATABASE_URL", raising=False)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_creates_every_contract_table(empty_url, monkeypatch, capsys):
    monkeypatch.setenv("OPS_DATABASE_URL", empty_url)
    assert main(["db", "upgrade"]) == 0
    assert set(schema.CONTRACT_TABLES) <= _tables(empty_url)
    assert "at head" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0  # a second upgrade is a no-op


def test_db_upgrade_defaults_to_a_sqlite_file_under_the_data_dir(tmp_path):
    assert main(["db", "upgrade"]) == 0
    database = tmp_path / "data" / "app.db"
    assert database.exists()
    assert set(schema.CONTRACT_TABLES) <= _tables(f"sqlite:///{database}")


def test_seed_fills_the_database(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("OPS_DATABASE_URL", url)
    assert main(["seed", "--users", "25", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "users" in out and "seeded" in out
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 25
    engine.dispose()


@pytest.mark.parametrize("users", ["0", "-3"])
def test_seed_rejects_a_user_count_below_one(users, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPS_DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    assert main(["seed", "--users", users]) == 2
    assert "--users must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "app.db").exists()  # nothing touched
