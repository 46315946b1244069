"""Every bad setting is found when the definitions load, all at once, and the first line a
user sees names the variable and what is wrong with it — on `dagster job execute`,
`dagster asset materialize` and `ops-platform` alike, without a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops_platform.settings import SettingsError, load_settings

BIN = Path(sys.executable).parent

BAD = {
    "secrets key": ({"OPS_SECRETS_KEY": "not-a-fernet-key"}, "OPS_SECRETS_KEY"),
    "empty prefix": ({"OPS_S3_UPLOADS_PREFIX": ""}, "OPS_S3_UPLOADS_PREFIX"),
    "overlapping prefixes": (
        {"OPS_S3_UPLOADS_PREFIX": "uploads", "OPS_S3_TRASH_PREFIX": "uploads/trash"},
        "OPS_S3_UPLOADS_PREFIX",
    ),
    "smtp timeout": ({"OPS_SMTP_URL": "smtp://mail.example.com:587?timeout=abc"}, "OPS_SMTP_URL"),
    "smtp port": ({"OPS_SMTP_URL": "smtp://mail.example.com:mail"}, "OPS_SMTP_URL"),
    "database scheme": ({"OPS_DATABASE_URL": "mysql://app:hunter2@db/app"}, "OPS_DATABASE_URL"),
    "redis scheme": ({"OPS_REDIS_URL": "http://cache:6379"}, "OPS_REDIS_URL"),
    "webhook": ({"OPS_ALERT_WEBHOOK_URL": "hooks.slack.com/T0/B0/x"}, "OPS_ALERT_WEBHOOK_URL"),
    "boolean": ({"OPS_ENABLE_EMAIL": "maybe"}, "OPS_ENABLE_EMAIL"),
}


def error_block(stderr: str) -> list[str]:
    """stderr without the Python warnings Dagster's own command line prints first."""
    lines = stderr.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.strip() and "Warning:" not in line and not line.startswith(" ")
        ),
        len(lines),
    )
    return lines[start:]


def run(command: list[str], env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    return subprocess.run(
        command,
        env={**clean, "DAGSTER_HOME": str(home), "OPS_DATA_DIR": str(tmp_path / "data"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_job_execute_names_the_variable_on_its_first_line(case, tmp_path):
    env, variable = BAD[case]
    result = run(
        [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "ops_platform.definitions",
            "-j",
            "session_cleanup",
        ],
        env,
        tmp_path,
    )
    assert result.returncode != 0
    block = error_block(result.stderr)
    assert block and block[0].startswith(variable), result.stderr
    assert "Traceback" not in result.stderr and len(block) <= 5, result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_asset_materialize_and_ops_platform_name_the_variable(tmp_path):
    env = {"OPS_SECRETS_KEY": "nope", "OPS_SMTP_URL": "smtp://m.example.com?timeout=abc"}
    materialize = run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "ops_platform.definitions",
            "--select",
            "user_trust_scores",
        ],
        env,
        tmp_path,
    )
    block = error_block(materialize.stderr)
    assert materialize.returncode != 0 and "Traceback" not in materialize.stderr
    assert block[0].startswith("OPS_SMTP_URL"), materialize.stderr
    assert block[1].strip().startswith("OPS_SECRETS_KEY"), materialize.stderr

    cli = run([str(BIN / "ops-platform"), "db", "upgrade"], env, tmp_path)
    assert cli.returncode == 2
    assert cli.stderr.splitlines()[0].startswith("OPS_SMTP_URL"), cli.stderr


def test_every_bad_setting_is_listed_at_once():
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {env_name: value for env, _ in BAD.values() for env_name, value in env.items()}
        )
    message = str(caught.value)
    # The overlapping prefixes case shares a variable with the empty-prefix one: 8 variables.
    for variable in {variable for _, variable in BAD.values()}:
        assert variable in message
    first = message.splitlines()[0]
    assert first.startswith("OPS_") and "more bad settings, below" in first
    assert "hunter2" not in message


def test_prefixes_are_normalised_to_folders():
    settings = load_settings({"OPS_S3_UPLOADS_PREFIX": "u", "OPS_S3_TRASH_PREFIX": "trash//"})
    assert (settings.s3_uploads_prefix, settings.s3_trash_prefix) == ("u/", "trash/")
    with pytest.raises(
        SettingsError, match="OPS_S3_UPLOADS_PREFIX='u/' and OPS_S3_TRASH_PREFIX='u/t/' overlap"
    ):
        load_settings({"OPS_S3_UPLOADS_PREFIX": "u", "OPS_S3_TRASH_PREFIX": "u/t"})
    with pytest.raises(SettingsError, match="OPS_S3_TRASH_PREFIX='' is empty"):
        load_settings({"OPS_S3_TRASH_PREFIX": ""})
    with pytest.raises(SettingsError, match="OPS_S3_TRASH_PREFIX='/trash/' is not a folder-like"):
        load_settings({"OPS_S3_TRASH_PREFIX": "/trash/"})


def test_webserver_load_error_names_the_variable(tmp_path, monkeypatch):
    """The webserver loads the code location through a code server, as here; its load error
    (what the UI shows on the code location) starts with the variable."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    monkeypatch.setenv("OPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPS_SECRETS_KEY", "not-a-fernet-key")
    target = ModuleTarget("ops_platform.definitions", None, str(tmp_path), "ops_platform")
    with dg.instance_for_test() as instance, WorkspaceProcessContext(instance, target) as context:
        error = context.create_request_context().get_code_location_error("ops_platform")
    assert error is not None
    first = error.to_string().strip().splitlines()[0]
    assert "OPS_SECRETS_KEY: key #1 is not a Fernet key" in first, error.to_string()
    assert first.split(": ", 1)[1].startswith("OPS_SECRETS_KEY"), first


def test_sender_key_without_provider_and_files_for_folders_are_refused(tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "OPS_MAIL_FROM": "nobody",
                "OPS_PAYMENTS_API_KEY": "sk_live_x",
                "OPS_LOG_DIR": str(a_file),
            }
        )
    problems = caught.value.problems
    assert any(p.startswith("OPS_MAIL_FROM='nobody' is not an email address") for p in problems)
    assert any(
        p.startswith("OPS_PAYMENTS_API_KEY is set but OPS_PAYMENTS_URL is not") for p in problems
    )
    assert any(p.startswith("OPS_LOG_DIR=") and "is a file" in p for p in problems)
    assert "sk_live_x" not in str(caught.value)
    assert load_settings({"OPS_MAIL_FROM": "Ops <ops@example.com>"}).mail_from


def _queued_run(instance, job_name: str) -> str:
    """A run of `job_name` created the way a launcher creates one (the code location loaded
    fine then); returns the run worker's arguments."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import create_execution_plan
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import serialize_value

    repository = ReconstructableRepository.for_module("ops_platform.definitions", "defs", ".")
    job = repository.get_reconstructable_job(job_name)
    run = instance.create_run_for_job(
        job_def=job.get_definition(),
        execution_plan=create_execution_plan(job),
        job_code_origin=job.get_python_origin(),
    )
    args = ExecuteRunArgs(
        job_origin=job.get_python_origin(), run_id=run.run_id, instance_ref=instance.get_ref()
    )
    return serialize_value(args)


def test_a_run_whose_worker_cannot_load_fails_naming_the_variable(tmp_path):
    """The run worker (its own container or process, its own environment) meets a bad
    setting: the run's failure event, what the UI shows and the failure alert quotes, starts
    with the variable; Dagster's own "Could not load job definition" follows it."""
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        worker_args = _queued_run(instance, "session_cleanup")
        bad = {"OPS_SECRETS_KEY": "not-a-fernet-key"}
        run([str(BIN / "dagster"), "api", "execute_run", worker_args], bad, tmp_path)
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        events = [entry.dagster_event for entry in instance.all_logs(record.dagster_run.run_id)]
        failure = next(event for event in events if event.event_type_value == "PIPELINE_FAILURE")
        first = failure.message.splitlines()[0]
        assert first.startswith("OPS_SECRETS_KEY: key #1 is not a Fernet key"), failure.message
        assert failure.event_specific_data.error.message.startswith("OPS_SECRETS_KEY")
        later = [event.message for event in events[events.index(failure) :]]
        assert "Could not load job definition." in later
