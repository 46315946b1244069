"""secret_rotation: expiry boundary, grace period, retirement, bad rows, dry run, second
run, crash half way, concurrent runs, encryption at rest and values never logged."""

import logging
import threading
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select

from ops_platform.db import schema
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.jobs import _secret_rotation as rotation_rules
from ops_platform.jobs._secret_cipher import SecretCipher, load_cipher
from ops_platform.jobs._secret_rotation import rotate_secrets
from ops_platform.jobs.secrets import secret_rotation
from ops_platform.resources.folders import Folders
from ops_platform.settings import SettingsError
from tests.jobs.cleanup_helpers import lose_the_lock_connection_once, output_metadata

KEY = Fernet.generate_key().decode()


def _secret(id, name, *, version=1, status="active", expires=None, rotated=None, retire_after=None):
    # Ids are left to the database (explicit ids would not advance the Postgres sequence).
    return {
        "name": name,
        "version": version,
        "value_ciphertext": "old-ciphertext",
        "status": status,
        "created_at": utcnow() - timedelta(days=100),
        "expires_at": expires,
        "rotated_at": rotated,
        "retire_after": retire_after,  # the project's own record, inserted by _insert
    }


def _insert(connection, rows):
    """The app's secret rows, and the end of the grace period the project recorded."""
    for row in rows:
        retire_after = row.pop("retire_after", None)
        new_id = connection.execute(
            insert(schema.secrets).values(row).returning(schema.secrets.c.id)
        ).scalar_one()
        if retire_after is not None:
            connection.execute(
                insert(schema.secret_retirements).values(
                    secret_id=new_id, retire_after=retire_after
                )
            )


@pytest.fixture
def secrets_rows(engine):
    now = utcnow()
    rows = [
        _secret(1, "api_key", expires=now - timedelta(minutes=1)),  # rotate
        _secret(2, "db_password", expires=now + timedelta(hours=1)),  # keep
        _secret(
            3,
            "old_token",
            status="retiring",
            rotated=now - timedelta(days=2),
            retire_after=now - timedelta(minutes=1),
        ),  # retire
        _secret(
            4,
            "grace_token",
            status="retiring",
            rotated=now - timedelta(hours=1),
            retire_after=now + timedelta(hours=1),
        ),  # keep
        _secret(
            5, "legacy", status="retiring", rotated=now - timedelta(hours=25)
        ),  # retire (fallback)
        _secret(6, "legacy_recent", status="retiring", rotated=now - timedelta(hours=1)),  # keep
        _secret(7, "weird", status="disabled", expires=now - timedelta(days=1)),  # bad: status
        _secret(8, "no_expiry", expires=None),  # bad: NULL expiry
        _secret(9, "orphan_retiring", status="retiring"),  # bad: no dates
        _secret(10, "multi", version=1, expires=now - timedelta(days=2)),  # superseded
        _secret(11, "multi", version=2, expires=now - timedelta(days=1)),  # rotate → v3
        _secret(12, "retired_one", status="retired", expires=now - timedelta(days=9)),  # keep
    ]
    with engine.begin() as connection:
        _insert(connection, rows)
    return engine


def _state(engine):
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                schema.secrets.c.name,
                schema.secrets.c.version,
                schema.secrets.c.status,
                schema.secrets.c.value_ciphertext,
                schema.secrets.c.rotated_at,
                schema.secret_retirements.c.retire_after,
                schema.secrets.c.expires_at,
            ).outerjoin(
                schema.secret_retirements,
                schema.secret_retirements.c.secret_id == schema.secrets.c.id,
            )
        ).all()
    return {(r.name, r.version): r for r in rows}


def _statuses(engine):
    return {key: row.status for key, row in _state(engine).items()}


def _run(database, **config):
    # The key is in the environment; no data folder is needed.
    folders = Folders(data_dir="/nonexistent", log_dir="/nonexistent", log_patterns=["*.log"])
    return secret_rotation.execute_in_process(
        run_config={"ops": {"rotate_expired_secrets": {"config": config}}},
        resources={"database": database, "folders": folders},
        raise_on_error=False,
    )


@pytest.fixture(autouse=True)
def secrets_key(monkeypatch):
    monkeypatch.setenv("OPS_SECRETS_KEY", KEY)


def test_rotation_grace_and_retirement(secrets_rows, database):
    before = utcnow()
    result = _run(database)
    assert result.success
    state = _state(secrets_rows)
    assert {key: row.status for key, row in state.items()} == {
        ("api_key", 1): "retiring",
        ("api_key", 2): "active",
        ("db_password", 1): "active",
        ("old_token", 1): "retired",
        ("grace_token", 1): "retiring",
        ("legacy", 1): "retired",
        ("legacy_recent", 1): "retiring",
        ("weird", 1): "disabled",
        ("no_expiry", 1): "active",
        ("orphan_retiring", 1): "retiring",
        ("multi", 1): "retiring",
        ("multi", 2): "retiring",
        ("multi", 3): "active",
        ("retired_one", 1): "retired",
    }
    old = state[("api_key", 1)]
    assert before <= as_utc(old.rotated_at) <= utcnow()
    assert abs(
        as_utc(old.retire_after) - (as_utc(old.rotated_at) + timedelta(hours=24))
    ) < timedelta(seconds=1)
    new = state[("api_key", 2)]
    assert timedelta(days=89) < as_utc(new.expires_at) - before < timedelta(days=91)
    value = Fernet(KEY).decrypt(new.value_ciphertext.encode()).decode()
    assert len(value) >= 40 and value != new.value_ciphertext
    assert state[("multi", 3)].value_ciphertext != new.value_ciphertext

    metadata = output_metadata(result)
    assert metadata["secrets_rotated"] == 2 and metadata["new_versions"] == 2
    assert metadata["superseded_to_retiring"] == 1 and metadata["retired"] == 2
    assert metadata["rows_changed"] == 7
    assert (
        metadata["skipped_unknown_status"],
        metadata["skipped_null_expiry"],
        metadata["skipped_retiring_without_dates"],
    ) == (1, 1, 1)
    assert metadata["key_source"] == "OPS_SECRETS_KEY"


def test_expiry_boundary_is_inclusive(engine):
    now = utcnow()
    with engine.begin() as connection:
        _insert(
            connection,
            [
                _secret(1, "at_now", expires=now),
                _secret(2, "just_after", expires=now + timedelta(microseconds=1000)),
            ],
        )
    cipher = SecretCipher(load_cipher({"OPS_SECRETS_KEY": KEY}).fernet, "test")
    result = rotate_secrets(engine, now, cipher=cipher)
    assert result.rotated == 1
    assert _statuses(engine) == {
        ("at_now", 1): "retiring",
        ("at_now", 2): "active",
        ("just_after", 1): "active",
    }
    # The grace period ends exactly at retire_after.
    later = now + timedelta(hours=24)
    assert rotate_secrets(engine, later - timedelta(microseconds=1000), cipher=cipher).retired == 0
    assert rotate_secrets(engine, later, cipher=cipher).retired == 1


def test_dry_run_changes_nothing_and_reports_what_it_would(secrets_rows, database):
    before = _state(secrets_rows)
    result = _run(database, dry_run=True)
    assert result.success
    assert _state(secrets_rows) == before
    metadata = output_metadata(result)
    assert (
        metadata["secrets_rotated"],
        metadata["superseded_to_retiring"],
        metadata["retired"],
    ) == (2, 1, 2)
    assert metadata["rows_changed"] == 0 and metadata["rows_matched"] == 7
    assert metadata["names_rotated"] == "api_key, multi"


def test_second_run_changes_nothing(secrets_rows, database):
    assert output_metadata(_run(database))["rows_changed"] == 7
    before = _state(secrets_rows)
    assert output_metadata(_run(database))["rows_changed"] == 0
    assert _state(secrets_rows) == before


def test_values_are_never_logged_or_in_metadata(secrets_rows, database, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    result = _run(database)
    state = _state(secrets_rows)
    plaintexts = [
        Fernet(KEY).decrypt(state[key].value_ciphertext.encode()).decode()
        for key in [("api_key", 2), ("multi", 3)]
    ]
    captured = capsys.readouterr()
    haystack = (
        caplog.text
        + captured.out
        + captured.err
        + "".join(repr(event) for event in result.all_events)
    )
    assert "secret_rotation rotated 2 secrets" in haystack
    for plaintext in plaintexts:
        assert plaintext not in haystack
        assert plaintext not in state[("api_key", 2)].value_ciphertext


def test_crash_half_way_then_rerun_completes(engine, database, monkeypatch):
    now = utcnow()
    with engine.begin() as connection:
        _insert(
            connection,
            [_secret(i, f"s{i:02d}", expires=now - timedelta(minutes=i)) for i in range(1, 11)],
        )
    real = rotation_rules.secrets_module.token_urlsafe
    calls = {"n": 0}

    def dies_on_fifth(n):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed")
        return real(n)

    monkeypatch.setattr(rotation_rules.secrets_module, "token_urlsafe", dies_on_fifth)
    # Batches pinned at 2 (max_batch_size): adaptive sizing would grow the second one.
    assert not _run(database, batch_size=2, max_batch_size=2).success
    statuses = _statuses(engine)
    assert (
        sum(1 for (name, v), s in statuses.items() if v == 2) == 4
    )  # two batches committed, third rolled back
    monkeypatch.setattr(rotation_rules.secrets_module, "token_urlsafe", real)
    assert _run(database, batch_size=2).success
    statuses = _statuses(engine)
    for i in range(1, 11):
        assert statuses[(f"s{i:02d}", 1)] == "retiring" and statuses[(f"s{i:02d}", 2)] == "active"
    assert len(statuses) == 20


def test_concurrent_run_does_not_act(secrets_rows, database):
    before = _state(secrets_rows)
    with database.job_lock("secret_rotation"):
        result = _run(database)
    assert result.success and output_metadata(result)["rows_changed"] == 0
    assert _state(secrets_rows) == before


def test_two_unlocked_rotations_at_once_rotate_each_secret_once(engine):
    now = utcnow()
    with engine.begin() as connection:
        _insert(
            connection,
            [_secret(i, f"s{i:02d}", expires=now - timedelta(minutes=1)) for i in range(1, 41)],
        )
    cipher = SecretCipher(load_cipher({"OPS_SECRETS_KEY": KEY}).fernet, "test")
    results, errors = [], []

    def rotate():
        try:
            results.append(rotate_secrets(engine, now, cipher=cipher, batch_size=3))
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.rotated for r in results) == 40
    statuses = _statuses(engine)
    assert len(statuses) == 80
    assert all(statuses[(f"s{i:02d}", 2)] == "active" for i in range(1, 41))


def test_embedded_key_file_is_private_and_reused(tmp_path):
    first = load_cipher({}, data_dir=tmp_path)
    key_file = tmp_path / "secrets.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.source == f"key file {key_file}"
    token = first.encrypt("value")
    assert load_cipher({}, data_dir=tmp_path).decrypt(token) == "value"


def test_bad_key_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="OPS_SECRETS_KEY: key #1 is not a Fernet key"):
        load_cipher({"OPS_SECRETS_KEY": "not-a-key"}, data_dir=tmp_path)


def test_a_retried_run_reports_what_every_attempt_rotated(secrets_rows, database, monkeypatch):
    lose_the_lock_connection_once(monkeypatch)
    result = _run(database)
    assert result.success
    metadata = output_metadata(result)
    assert metadata["secrets_rotated"] == 2 and metadata["new_versions"] == 2
    assert metadata["superseded_to_retiring"] == 1 and metadata["retired"] == 2
    assert metadata["rows_changed"] == 7 and metadata["attempts"] == 2
    assert output_metadata(_run(database))["rows_changed"] == 0
