"""Secret-bearing settings never reach what the UI, GraphQL or the instance show.

With every secret-bearing variable set (database URL with a password, payments API key,
SMTP URL with a password, Redis URL with a password, a webhook URL whose path is its
token, the Fernet key), the repository snapshot the webserver serves, and every run's
config, tags, job snapshot, execution plan, event log and captured output on a real
instance, hold none of the secrets — while the runs themselves read them and work.
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from ops_platform.db import schema
from ops_platform.db.engine import make_engine, utcnow
from ops_platform.db.migrate import upgrade
from ops_platform.settings import load_settings
from tests.payment_provider import ScriptedProvider

API_KEY = "sk_live_51HxSecretPaymentsKey"
SMTP_PASSWORD = "smtp-hunter3"
REDIS_PASSWORD = "redis-hunter4"
WEBHOOK_TOKEN = "XoXbWebhookToken5"


@pytest.fixture
def secret_environment(monkeypatch, postgres_schema_url, tmp_path):
    """Every secret-bearing variable set; yields (secrets, the provider, the app database URL)."""
    from cryptography.fernet import Fernet

    upgrade(postgres_schema_url)
    url = make_url(postgres_schema_url)
    # The test server trusts local connections, so any password is accepted; one that the
    # URL already carries is the secret to look for.
    db_password = url.password or "hunter2"
    db_url = url.set(drivername="postgresql", password=db_password).render_as_string(
        hide_password=False
    )
    secrets_key = Fernet.generate_key().decode()
    with ScriptedProvider(default="succeeded") as provider:
        env = {
            "OPS_DATA_DIR": str(tmp_path / "data"),
            "OPS_DATABASE_URL": db_url,
            "OPS_PAYMENTS_URL": provider.url,
            "OPS_PAYMENTS_API_KEY": API_KEY,
            "OPS_SMTP_URL": f"smtp://ops:{SMTP_PASSWORD}@127.0.0.1:2525",
            "OPS_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
            "OPS_ALERT_WEBHOOK_URL": f"http://127.0.0.1:9/services/T0/B0/{WEBHOOK_TOKEN}",
            "OPS_SECRETS_KEY": secrets_key,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        secrets = [db_password, API_KEY, SMTP_PASSWORD, REDIS_PASSWORD, WEBHOOK_TOKEN, secrets_key]
        yield secrets, provider, postgres_schema_url


def leaked(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


def instance_contents(instance: dg.DagsterInstance) -> str:
    """Everything the instance holds about its runs, as the UI and GraphQL read it, plus
    every file under its folder (event log database, captured stdout/stderr)."""
    parts = []
    for run in instance.get_runs():
        parts.append(serialize_value(run))  # run config and tags
        parts.append(serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
        if run.execution_plan_snapshot_id:
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            parts.append(serialize_value(plan))
        for record in instance.get_records_for_run(run.run_id, limit=100_000).records:
            parts.append(serialize_value(record.event_log_entry))
    for path in Path(instance.root_directory).rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_repository_snapshot_shows_variable_names_not_secrets(secret_environment):
    from ops_platform.definitions import build_definitions

    secrets, _, _ = secret_environment
    repo = build_definitions(load_settings()).get_repository_def()
    snapshot = RepositorySnap.from_def(repo)
    assert leaked(serialize_value(snapshot), secrets) == []
    shown = {resource.name: resource.configured_values for resource in snapshot.resources}
    assert shown["database"]["url"].name == "OPS_DATABASE_URL"
    assert shown["payments"]["api_key"].name == "OPS_PAYMENTS_API_KEY"
    assert shown["mailer"]["smtp_url"].name == "OPS_SMTP_URL"
    assert shown["alerts"]["webhook_url"].name == "OPS_ALERT_WEBHOOK_URL"
    assert shown["realtime"]["url"].name == "OPS_REDIS_URL"


def test_runs_read_secrets_at_run_time_and_store_none(secret_environment, tmp_path):
    from ops_platform.definitions import build_definitions

    secrets, provider, app_url = secret_environment
    engine = make_engine(app_url)
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            insert(schema.payments),
            {
                "id": 1,
                "provider_ref": "pay_1",
                "user_id": 1,
                "amount_cents": 500,
                "currency": "USD",
                "status": "pending",
                "created_at": now - timedelta(minutes=5),
                "check_count": 0,
            },
        )
        connection.execute(
            insert(schema.secrets),
            {
                "name": "api_signing",
                "version": 1,
                "value_ciphertext": "x",
                "status": "active",
                "created_at": now - timedelta(days=100),
                "expires_at": now - timedelta(days=1),
            },
        )
    defs = build_definitions(load_settings())
    (tmp_path / "instance").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "instance")) as instance:
        results = {
            name: defs.resolve_job_def(name).execute_in_process(
                instance=instance, raise_on_error=False
            )
            for name in (
                "payment_status_sweep",
                "secret_rotation",
                "session_cleanup",
                "realtime_publish",
            )
        }
        stored = instance_contents(instance)
    for name in ("payment_status_sweep", "secret_rotation", "session_cleanup"):
        assert results[name].success, name
    # The values were read when the runs started: the provider got the key, the database
    # (reached with the password) now holds the outcome.
    assert provider.authorizations[f"Bearer {API_KEY}"] >= 1
    with engine.connect() as connection:
        assert connection.execute(select(schema.payments.c.status)).scalar_one() == "succeeded"
    engine.dispose()
    assert leaked(stored, secrets) == []
