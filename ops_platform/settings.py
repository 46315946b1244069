"""Environment → typed settings.

With no environment at all everything runs embedded: a SQLite app database under
`.ops_platform/`, local folders standing in for S3 and the mail server, the payment
simulator, and an outbox-only real-time channel. Production sets the variables below.
Every bad value raises `SettingsError` naming the variable and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ops_platform.db.engine import (
    StateSchemaError,
    check_state_schema,
    psycopg_url,
    with_state_schema,
)

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

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """Settings from the environment are malformed. The message's first line names the
    first bad variable and what is wrong with it; the next lines list any other."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        first = problems[0] if problems else "bad settings"
        more = len(problems) - 1
        head = f"{first} (and {more} more bad setting{'s' * (more > 1)}, below)" if more else first
        super().__init__("\n".join([head, *(f"  {problem}" for problem in problems[1:])]))


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


# Months before today of the default first partition: the UI shows a few filled months,
# not years of empty partitions before the platform went live.
DEFAULT_PARTITIONS_MONTHS = 3


def partitions_start(env: Mapping[str, str] | None = None, today: date | None = None) -> str:
    """First day of every partitioned asset (`OPS_PARTITIONS_START`, YYYY-MM-DD; production
    sets its go-live day). Default: the first of the month three months back."""
    env = os.environ if env is None else env
    value = _optional(env, "OPS_PARTITIONS_START")
    if value is not None:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise SettingsError(
                f"OPS_PARTITIONS_START={value!r} is not a day (YYYY-MM-DD)"
            ) from None
    today = today or datetime.now(UTC).date()
    months = today.year * 12 + today.month - 1 - DEFAULT_PARTITIONS_MONTHS
    return date(months // 12, months % 12 + 1, 1).isoformat()


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


SMTP_QUERY_KEYS = ("starttls", "timeout", "cafile", "verify")


@dataclass(frozen=True)
class SmtpSettings:
    """`OPS_SMTP_URL` parsed: `smtp[s]://[user:pass@]host[:port][?starttls=&timeout=&cafile=&verify=]`."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None  # None: when offered; True: required; False: never
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)
    timeout: float
    cafile: str | None
    verify: bool

    @classmethod
    def from_url(cls, url: str, name: str = "OPS_SMTP_URL") -> SmtpSettings:
        """Every part checked; `SettingsError` naming the variable and the part otherwise."""
        parsed = urlparse(url)
        shown = f"{name}={redact_url(url)!r}"
        if parsed.scheme not in ("smtp", "smtps"):
            raise SettingsError(f"{shown}: scheme must be smtp or smtps")
        if not parsed.hostname:
            raise SettingsError(f"{shown} has no host")
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        unknown = sorted(set(query) - set(SMTP_QUERY_KEYS))
        if unknown:
            raise SettingsError(
                f"{name}: unknown option ?{unknown[0]}=; options are {', '.join(SMTP_QUERY_KEYS)}"
            )
        implicit_tls = parsed.scheme == "smtps"
        starttls = (
            parse_bool(f"{name} ?starttls", query["starttls"]) if "starttls" in query else None
        )
        if implicit_tls and starttls:
            raise SettingsError(f"{name}: smtps:// is already TLS; drop ?starttls=true")
        try:
            port = parsed.port or (465 if implicit_tls else 25)
        except ValueError:
            raise SettingsError(f"{shown}: the port is not a number from 1 to 65535") from None
        try:
            timeout = float(query.get("timeout", 30))
        except ValueError:
            timeout = 0.0
        if not 0 < timeout < float("inf"):
            raise SettingsError(
                f"{name}: ?timeout={query['timeout']!r} is not a positive number of seconds"
            )
        cafile = query.get("cafile")
        if cafile is not None and not Path(cafile).is_file():
            raise SettingsError(f"{name}: ?cafile={cafile!r} is not a file")
        return cls(
            host=parsed.hostname,
            port=port,
            implicit_tls=implicit_tls,
            starttls=starttls,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            timeout=timeout,
            cafile=cafile,
            verify=parse_bool(f"{name} ?verify", query.get("verify", "true")),
        )

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _check_smtp_url(name: str, value: str | None) -> str | None:
    if value is not None:
        SmtpSettings.from_url(value, name)
    return value


def _check_fernet_keys(name: str, value: str | None) -> str | None:
    """Comma-separated Fernet keys (32 url-safe base64-encoded bytes each), the first
    encrypting; checked without loading the cryptography library."""
    if value is None:
        return None
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        raise SettingsError(f"{name} holds no key; generate one with Fernet.generate_key()")
    for number, key in enumerate(keys, 1):
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise SettingsError(
                f"{name}: key #{number} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with Fernet.generate_key()"
            )
    return value


def s3_prefix(name: str, value: str) -> str:
    """An object-store prefix is a folder: a relative path, normalised to end with `/`."""
    prefix = value.strip().strip("/")
    if not prefix:
        raise SettingsError(f"{name}={value!r} is empty; it must name a folder, e.g. uploads/")
    if value.strip().startswith("/") or any(p in ("", ".", "..") for p in prefix.split("/")):
        raise SettingsError(
            f"{name}={value!r} is not a folder-like prefix (no leading '/', '.', '..' or '//')"
        )
    return prefix + "/"


def check_prefixes(uploads: str, trash: str) -> None:
    """Orphans are moved from uploads to trash: one folder inside the other (or the same)
    would move the trash itself, or files that are not uploads."""
    if uploads.startswith(trash) or trash.startswith(uploads):
        raise SettingsError(
            f"OPS_S3_UPLOADS_PREFIX={uploads!r} and OPS_S3_TRASH_PREFIX={trash!r} overlap: "
            "one contains the other; use two separate folders"
        )


def _check_sender(name: str, value: str) -> str:
    local, _, domain = value.strip().rpartition("<")[2].rstrip(">").partition("@")
    if not local or not domain or " " in local + domain:
        raise SettingsError(f"{name}={value!r} is not an email address (user@host)")
    return value


def _check_api_key(env: Mapping[str, str]) -> str | None:
    key = _optional(env, "OPS_PAYMENTS_API_KEY")
    if key and not _optional(env, "OPS_PAYMENTS_URL"):
        raise SettingsError(
            "OPS_PAYMENTS_API_KEY is set but OPS_PAYMENTS_URL is not: the built-in simulator "
            "takes no key; set the provider's URL, or unset the key"
        )
    return key


def _check_folder(name: str, value: str | None) -> None:
    """A folder setting may name a folder still to be created, never an existing file."""
    if value is not None and Path(value).exists() and not Path(value).is_dir():
        raise SettingsError(f"{name}={value!r} is a file, not a folder")


def _check_log_dir(name: str, value: str | None, default: Path, data_dir: Path) -> Path:
    """The log folder `log_pruning` may prune: never the filesystem root, a system folder
    (/etc, /usr, /var/lib…, unless inside OPS_DATA_DIR) nor the home folder."""
    from ops_platform.jobs._log_folder import LogFolderError, check_log_root

    path = Path(value or default)
    if path.exists() and not path.is_dir():
        return path.resolve()  # a file: `_check_folder` says so
    try:
        return check_log_root(path, data_dir=data_dir)
    except LogFolderError as refused:
        raise SettingsError(f"{name}={value!r}: {refused}") from None


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
        _check_url,
        "OPS_DATABASE_URL",
        _optional(env, "OPS_DATABASE_URL") or default_database,
        ("sqlite", "postgresql", "postgres"),
        fallback=default_database,
    )
    database_url = psycopg_url(database_url)  # postgres:// and postgresql:// → psycopg 3

    bucket = _optional(env, "OPS_S3_BUCKET")
    endpoint = check(
        _check_url, "OPS_S3_ENDPOINT_URL", _optional(env, "OPS_S3_ENDPOINT_URL"), ("http", "https")
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
    smtp_url = check(_check_smtp_url, "OPS_SMTP_URL", _optional(env, "OPS_SMTP_URL"))

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
            _check_sender, "OPS_MAIL_FROM", env.get("OPS_MAIL_FROM") or "ops-platform@localhost"
        ),
        outbox_dir=Path(env.get("OPS_OUTBOX_DIR") or data_dir / "outbox").resolve(),
        payments_url=check(
            _check_url, "OPS_PAYMENTS_URL", _optional(env, "OPS_PAYMENTS_URL"), ("http", "https")
        ),
        redis_url=check(
            _check_url, "OPS_REDIS_URL", _optional(env, "OPS_REDIS_URL"), ("redis", "rediss")
        ),
        log_dir=check(
            _check_log_dir,
            "OPS_LOG_DIR",
            env.get("OPS_LOG_DIR"),
            data_dir / "logs",
            data_dir,
            fallback=(data_dir / "logs").resolve(),
        ),
        log_patterns=check(
            parse_log_patterns,
            "OPS_LOG_PATTERNS",
            _optional(env, "OPS_LOG_PATTERNS"),
            fallback=("*.log",),
        ),
        alert_webhook_url=check(
            _check_url,
            "OPS_ALERT_WEBHOOK_URL",
            _optional(env, "OPS_ALERT_WEBHOOK_URL"),
            ("http", "https"),
        ),
        alert_email=check(_check_email, "OPS_ALERT_EMAIL", _optional(env, "OPS_ALERT_EMAIL")),
        enabled_groups=check(_enabled_groups, env, fallback={}),
        payments_api_key=check(_check_api_key, env),
        secrets_key=check(_check_fernet_keys, "OPS_SECRETS_KEY", _optional(env, "OPS_SECRETS_KEY")),
        executor=check(_executor, env, fallback="in_process"),
        celery_backend_set=_optional(env, "OPS_CELERY_BACKEND_URL") is not None,
        state_schema=check(_state_schema, "OPS_STATE_SCHEMA", _optional(env, "OPS_STATE_SCHEMA")),
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
        check(_check_folder, name, _optional(env, name))
    problems.raise_any()
    return settings
