"""Environment → typed settings.

With no environment at all everything runs embedded: a SQLite app database under
`.ops_platform/`, local folders standing in for S3 and the mail server, the payment
simulator, and an outbox-only real-time channel. Production sets the variables below.
Every bad value raises `SettingsError` naming the variable and what is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ops_platform.db.engine import psycopg_url, with_state_schema
from ops_platform.setting_checks import (
    SettingsError,
    check_email,
    check_fernet_keys,
    check_folder,
    check_log_dir,
    check_prefixes,
    check_sender,
    check_timezone,
    check_url,
    optional_value,
    parse_bool,
    parse_log_patterns,
    parse_positive_int,
    parse_state_schema,
    partitions_start,
    redact_url,
    s3_prefix,
)
from ops_platform.smtp_settings import SmtpSettings, check_smtp_url

# Names the rest of the code imports from here: the checks of single values live in
# ops_platform.setting_checks and ops_platform.smtp_settings.
__all__ = [
    "EXECUTORS",
    "GROUPS",
    "SECRET_VARIABLES",
    "Settings",
    "SettingsError",
    "SmtpSettings",
    "check_prefixes",
    "check_timezone",
    "load_settings",
    "partitions_start",
    "redact_url",
    "s3_prefix",
]

# Groups that OPS_ENABLE_<GROUP> can switch off.
GROUPS = (
    "cleanup",
    "email",
    "payments",
    "analytics",
    "games",
    "engagement",
    "security",
    "maintenance",
)

# Variables whose values are secrets, or URLs that may carry one (a password, a token in a
# webhook's path). Resources get them as `dg.EnvVar`: Dagster reads them when a run starts
# and the UI, GraphQL and job snapshots show only the variable's name.
SECRET_VARIABLES = (
    "OPS_DATABASE_URL",
    "OPS_SMTP_URL",
    "OPS_REDIS_URL",
    "OPS_ALERT_WEBHOOK_URL",
    "OPS_PAYMENTS_URL",
    "OPS_PAYMENTS_API_KEY",
    "OPS_SECRETS_KEY",
    "OPS_CELERY_BROKER_URL",
    "OPS_CELERY_BACKEND_URL",
)
# What OPS_EXECUTOR may name (ops_platform/executors.py builds each).
EXECUTORS = ("in_process", "multiprocess", "celery", "docker", "k8s")
CELERY_BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "sqs")


class _Problems:
    """Collects every bad setting, so start-up names them all at once."""

    def __init__(self):
        self.found: list[str] = []

    def check(self, parse, *args, fallback=None):
        """`parse(*args)`, or `fallback` after noting what was wrong."""
        try:
            return parse(*args)
        except SettingsError as error:
            self.found.extend(error.problems)
            return fallback

    def note(self, problem: str) -> None:
        self.found.append(problem)

    def raise_any(self) -> None:
        if self.found:
            raise SettingsError(*self.found)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str = field(repr=False)
    s3_bucket: str | None
    s3_endpoint_url: str | None
    s3_uploads_prefix: str
    s3_trash_prefix: str
    local_object_store_dir: Path
    smtp_url: str | None = field(repr=False)
    mail_from: str
    outbox_dir: Path
    payments_url: str | None = field(repr=False)
    redis_url: str | None = field(repr=False)
    log_dir: Path
    log_patterns: tuple[str, ...]
    alert_webhook_url: str | None = field(repr=False)
    alert_email: str | None
    enabled_groups: Mapping[str, bool] = field(default_factory=dict)
    payments_api_key: str | None = field(default=None, repr=False)
    secrets_key: str | None = field(default=None, repr=False)
    # The project's own schema (OPS_STATE_SCHEMA); None: the URL's or the default `ops`.
    state_schema: str | None = None
    executor: str = "in_process"
    # Whether OPS_CELERY_BACKEND_URL is set (its value, a secret, is read at run time);
    # without it Celery reports results over the broker (rpc://).
    celery_backend_set: bool = False

    @property
    def app_database_url(self) -> str:
        """The database URL naming the project's schema too, for the command-line tools."""
        if self.state_schema is None:
            return self.database_url
        return with_state_schema(self.database_url, self.state_schema)

    database_connect_timeout_s: int = 10
    database_statement_timeout_s: int = 300
    # Longest maintenance window unless `--until` names a later end explicitly.
    maintenance_max_hours: int = 24

    @property
    def embedded_database(self) -> bool:
        """The default SQLite file under the data folder (no OPS_DATABASE_URL)."""
        return self.database_url == f"sqlite:///{self.data_dir / 'app.db'}"

    def group_enabled(self, group: str) -> bool:
        if group not in GROUPS:
            raise SettingsError(f"unknown group {group!r}; groups are {', '.join(GROUPS)}")
        return self.enabled_groups.get(group, True)


def _enabled_groups(env: Mapping[str, str]) -> dict[str, bool]:
    enabled = {group: True for group in GROUPS}
    problems = _Problems()
    for name, value in sorted(env.items()):
        if not name.startswith("OPS_ENABLE_"):
            continue
        group = name.removeprefix("OPS_ENABLE_").lower()
        if group not in GROUPS:
            problems.note(f"{name}: unknown group {group!r}; groups are {', '.join(GROUPS)}")
            continue
        enabled[group] = problems.check(parse_bool, name, value, fallback=True)
    problems.raise_any()
    return enabled


def _executor(env: Mapping[str, str]) -> str:
    name = (optional_value(env, "OPS_EXECUTOR") or "in_process").lower()
    if name not in EXECUTORS:
        raise SettingsError(
            f"OPS_EXECUTOR={name!r} is unknown; choose one of {', '.join(EXECUTORS)}"
        )
    if name == "celery":
        broker = optional_value(env, "OPS_CELERY_BROKER_URL")
        if broker is None:
            raise SettingsError(
                "OPS_EXECUTOR=celery needs OPS_CELERY_BROKER_URL (e.g. pyamqp://user:pass@host:5672//)"
            )
        if urlparse(broker).scheme.split("+")[0] not in CELERY_BROKER_SCHEMES:
            raise SettingsError(
                "OPS_CELERY_BROKER_URL is not a broker URL: scheme must be one of "
                + ", ".join(CELERY_BROKER_SCHEMES)
            )
    return name


def _check_api_key(env: Mapping[str, str]) -> str | None:
    key = optional_value(env, "OPS_PAYMENTS_API_KEY")
    if key and not optional_value(env, "OPS_PAYMENTS_URL"):
        raise SettingsError(
            "OPS_PAYMENTS_API_KEY is set but OPS_PAYMENTS_URL is not: the built-in simulator "
            "takes no key; set the provider's URL, or unset the key"
        )
    return key


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Every setting from `env` (default the process environment), checked all at once:
    `SettingsError` lists every bad one, the first on its first line."""
    env = os.environ if env is None else env
    problems = _Problems()
    check = problems.check
    check(partitions_start, env)  # read by the partitioned assets when they are defined
    data_dir = Path(env.get("OPS_DATA_DIR") or ".ops_platform").resolve()
    default_database = f"sqlite:///{data_dir / 'app.db'}"
    database_url = check(
        check_url,
        "OPS_DATABASE_URL",
        optional_value(env, "OPS_DATABASE_URL") or default_database,
        ("sqlite", "postgresql", "postgres"),
        fallback=default_database,
    )
    database_url = psycopg_url(database_url)  # postgres:// and postgresql:// → psycopg 3

    bucket = optional_value(env, "OPS_S3_BUCKET")
    endpoint = check(
        check_url,
        "OPS_S3_ENDPOINT_URL",
        optional_value(env, "OPS_S3_ENDPOINT_URL"),
        ("http", "https"),
    )
    if endpoint and not bucket:
        problems.note("OPS_S3_ENDPOINT_URL is set but OPS_S3_BUCKET is not")
    uploads = check(
        s3_prefix,
        "OPS_S3_UPLOADS_PREFIX",
        env.get("OPS_S3_UPLOADS_PREFIX", "uploads/"),
        fallback="uploads/",
    )
    trash = check(
        s3_prefix, "OPS_S3_TRASH_PREFIX", env.get("OPS_S3_TRASH_PREFIX", "trash/"), fallback=None
    )
    if trash is not None:
        check(check_prefixes, uploads, trash)
    smtp_url = check(check_smtp_url, "OPS_SMTP_URL", optional_value(env, "OPS_SMTP_URL"))

    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_uploads_prefix=uploads,
        s3_trash_prefix=trash or "trash/",
        local_object_store_dir=Path(
            env.get("OPS_OBJECT_STORE_DIR") or data_dir / "object_store"
        ).resolve(),
        smtp_url=smtp_url,
        mail_from=check(
            check_sender, "OPS_MAIL_FROM", env.get("OPS_MAIL_FROM") or "ops-platform@localhost"
        ),
        outbox_dir=Path(env.get("OPS_OUTBOX_DIR") or data_dir / "outbox").resolve(),
        payments_url=check(
            check_url,
            "OPS_PAYMENTS_URL",
            optional_value(env, "OPS_PAYMENTS_URL"),
            ("http", "https"),
        ),
        redis_url=check(
            check_url, "OPS_REDIS_URL", optional_value(env, "OPS_REDIS_URL"), ("redis", "rediss")
        ),
        log_dir=check(
            check_log_dir,
            "OPS_LOG_DIR",
            env.get("OPS_LOG_DIR"),
            data_dir / "logs",
            data_dir,
            fallback=(data_dir / "logs").resolve(),
        ),
        log_patterns=check(
            parse_log_patterns,
            "OPS_LOG_PATTERNS",
            optional_value(env, "OPS_LOG_PATTERNS"),
            fallback=("*.log",),
        ),
        alert_webhook_url=check(
            check_url,
            "OPS_ALERT_WEBHOOK_URL",
            optional_value(env, "OPS_ALERT_WEBHOOK_URL"),
            ("http", "https"),
        ),
        alert_email=check(check_email, "OPS_ALERT_EMAIL", optional_value(env, "OPS_ALERT_EMAIL")),
        enabled_groups=check(_enabled_groups, env, fallback={}),
        payments_api_key=check(_check_api_key, env),
        secrets_key=check(
            check_fernet_keys, "OPS_SECRETS_KEY", optional_value(env, "OPS_SECRETS_KEY")
        ),
        executor=check(_executor, env, fallback="in_process"),
        celery_backend_set=optional_value(env, "OPS_CELERY_BACKEND_URL") is not None,
        state_schema=check(
            parse_state_schema, "OPS_STATE_SCHEMA", optional_value(env, "OPS_STATE_SCHEMA")
        ),
        database_connect_timeout_s=check(
            parse_positive_int,
            "OPS_DATABASE_CONNECT_TIMEOUT",
            env.get("OPS_DATABASE_CONNECT_TIMEOUT") or 10,
            fallback=10,
        ),
        database_statement_timeout_s=check(
            parse_positive_int,
            "OPS_DATABASE_STATEMENT_TIMEOUT",
            env.get("OPS_DATABASE_STATEMENT_TIMEOUT") or 300,
            fallback=300,
        ),
        maintenance_max_hours=check(
            parse_positive_int,
            "OPS_MAINTENANCE_MAX_HOURS",
            env.get("OPS_MAINTENANCE_MAX_HOURS") or 24,
            fallback=24,
        ),
    )
    for name in ("OPS_DATA_DIR", "OPS_LOG_DIR", "OPS_OUTBOX_DIR", "OPS_OBJECT_STORE_DIR"):
        check(check_folder, name, optional_value(env, name))
    problems.raise_any()
    return settings
