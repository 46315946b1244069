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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ops_platform.db.engine import (
    StateSchemaError,
    check_state_schema,
    psycopg_url,
    with_state_schema,
)

# Groups that OPS_ENABLE_<GROUP> can switch off (SPEC §2).
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

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting from the environment is malformed; the message names the variable."""


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

    @property
    def embedded_database(self) -> bool:
        """The default SQLite file under the data folder (no OPS_DATABASE_URL)."""
        return self.database_url == f"sqlite:///{self.data_dir / 'app.db'}"

    def group_enabled(self, group: str) -> bool:
        if group not in GROUPS:
            raise SettingsError(f"unknown group {group!r}; groups are {', '.join(GROUPS)}")
        return self.enabled_groups.get(group, True)


def redact_url(url: str, keep_path: bool = True) -> str:
    """`url` as it may be shown in messages and logs: never its password or query, and
    without its path when that may be a token (a webhook's)."""
    parsed = urlparse(url)
    if not parsed.netloc:
        return f"{parsed.scheme}://" if parsed.scheme else "(not a URL)"
    host = parsed.netloc.rpartition("@")[2]
    user = parsed.netloc.rpartition("@")[0].partition(":")[0]
    if user:
        user = f"{user}:***@" if parsed.password is not None else f"{user}@"
    path = parsed.path if keep_path else ("/…" if parsed.path.strip("/") else "")
    query = "?…" if parsed.query else ""
    return f"{parsed.scheme}://{user}{host}{path}{query}"


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    parsed = urlparse(value)
    scheme = parsed.scheme.split("+")[0]
    if scheme not in schemes:
        raise SettingsError(
            f"{name}={redact_url(value)!r} is not a valid URL: scheme must be one of {', '.join(schemes)}"
        )
    if scheme not in ("sqlite",) and not parsed.hostname:
        raise SettingsError(f"{name}={redact_url(value)!r} is not a valid URL: it has no host")
    return value


def _check_email(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    for address in value.split(","):
        local, _, domain = address.strip().partition("@")
        if not local or "." not in domain:
            raise SettingsError(f"{name}: {address.strip()!r} is not an email address")
    return value


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean; use true or false")


def parse_positive_int(name: str, value: str | int, *, allow_zero: bool = False) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={value!r} is not an integer") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise SettingsError(f"{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")
    return number


def check_timezone(name: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={value!r} is not a known IANA timezone") from None
    return value


def parse_log_patterns(name: str, value: str | None) -> tuple[str, ...]:
    """Comma-separated file-name globs; one that is wildcards only (`*`, `*.*`) would make
    every file a log file, so it is refused."""
    if value is None:
        return ("*.log",)
    patterns = tuple(p.strip() for p in value.split(",") if p.strip())
    if not patterns:
        raise SettingsError(f"{name}={value!r} names no pattern; e.g. *.log,*.out")
    for pattern in patterns:
        if "/" in pattern or not pattern.strip("*?[]!."):
            raise SettingsError(
                f"{name}: {pattern!r} is not a log file name pattern; it must be a file name "
                "glob with a literal part, e.g. *.log"
            )
    return patterns


def _state_schema(name: str, value: str | None) -> str | None:
    # The project's own tables live in this schema (an attached file on SQLite).
    if value is None:
        return None
    try:
        return check_state_schema(value)
    except StateSchemaError as error:
        raise SettingsError(f"{name}: {error}") from None


def _enabled_groups(env: Mapping[str, str]) -> dict[str, bool]:
    enabled = {group: True for group in GROUPS}
    for name, value in env.items():
        if not name.startswith("OPS_ENABLE_"):
            continue
        group = name.removeprefix("OPS_ENABLE_").lower()
        if group not in GROUPS:
            raise SettingsError(f"{name}: unknown group {group!r}; groups are {', '.join(GROUPS)}")
        enabled[group] = parse_bool(name, value)
    return enabled


def _executor(env: Mapping[str, str]) -> str:
    name = (_optional(env, "OPS_EXECUTOR") or "in_process").lower()
    if name not in EXECUTORS:
        raise SettingsError(
            f"OPS_EXECUTOR={name!r} is unknown; choose one of {', '.join(EXECUTORS)}"
        )
    if name == "celery":
        broker = _optional(env, "OPS_CELERY_BROKER_URL")
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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("OPS_DATA_DIR") or ".ops_platform").resolve()
    database_url = _optional(env, "OPS_DATABASE_URL") or f"sqlite:///{data_dir / 'app.db'}"
    _check_url("OPS_DATABASE_URL", database_url, ("sqlite", "postgresql", "postgres"))
    database_url = psycopg_url(database_url)  # postgres:// and postgresql:// → psycopg 3

    bucket = _optional(env, "OPS_S3_BUCKET")
    endpoint = _check_url(
        "OPS_S3_ENDPOINT_URL", _optional(env, "OPS_S3_ENDPOINT_URL"), ("http", "https")
    )
    if endpoint and not bucket:
        raise SettingsError("OPS_S3_ENDPOINT_URL is set but OPS_S3_BUCKET is not")

    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_uploads_prefix=env.get("OPS_S3_UPLOADS_PREFIX", "uploads/"),
        s3_trash_prefix=env.get("OPS_S3_TRASH_PREFIX", "trash/"),
        local_object_store_dir=Path(
            env.get("OPS_OBJECT_STORE_DIR") or data_dir / "object_store"
        ).resolve(),
        smtp_url=_check_url("OPS_SMTP_URL", _optional(env, "OPS_SMTP_URL"), ("smtp", "smtps")),
        mail_from=env.get("OPS_MAIL_FROM", "ops-platform@localhost"),
        outbox_dir=Path(env.get("OPS_OUTBOX_DIR") or data_dir / "outbox").resolve(),
        payments_url=_check_url(
            "OPS_PAYMENTS_URL", _optional(env, "OPS_PAYMENTS_URL"), ("http", "https")
        ),
        redis_url=_check_url("OPS_REDIS_URL", _optional(env, "OPS_REDIS_URL"), ("redis", "rediss")),
        log_dir=Path(env.get("OPS_LOG_DIR") or data_dir / "logs").resolve(),
        log_patterns=parse_log_patterns("OPS_LOG_PATTERNS", _optional(env, "OPS_LOG_PATTERNS")),
        alert_webhook_url=_check_url(
            "OPS_ALERT_WEBHOOK_URL", _optional(env, "OPS_ALERT_WEBHOOK_URL"), ("http", "https")
        ),
        alert_email=_check_email("OPS_ALERT_EMAIL", _optional(env, "OPS_ALERT_EMAIL")),
        enabled_groups=_enabled_groups(env),
        payments_api_key=_optional(env, "OPS_PAYMENTS_API_KEY"),
        secrets_key=_optional(env, "OPS_SECRETS_KEY"),
        executor=_executor(env),
        celery_backend_set=_optional(env, "OPS_CELERY_BACKEND_URL") is not None,
        state_schema=_state_schema("OPS_STATE_SCHEMA", _optional(env, "OPS_STATE_SCHEMA")),
    )
