"""One setting's value from the environment, parsed and checked: URLs, e-mail addresses,
booleans, counts, days, timezones, log file patterns, Fernet keys, object-store prefixes and
folders. Each check raises `SettingsError` naming the variable and what is wrong with it;
`ops_platform.settings` runs them all at start-up.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ops_platform.db.engine import StateSchemaError, check_state_schema

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


def optional_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
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


def check_email(name: str, value: str | None) -> str | None:
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
    value = optional_value(env, "OPS_PARTITIONS_START")
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


def parse_state_schema(name: str, value: str | None) -> str | None:
    # The project's own tables live in this schema (an attached file on SQLite).
    if value is None:
        return None
    try:
        return check_state_schema(value)
    except StateSchemaError as error:
        raise SettingsError(f"{name}: {error}") from None


def check_fernet_keys(name: str, value: str | None) -> str | None:
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


def check_sender(name: str, value: str) -> str:
    local, _, domain = value.strip().rpartition("<")[2].rstrip(">").partition("@")
    if not local or not domain or " " in local + domain:
        raise SettingsError(f"{name}={value!r} is not an email address (user@host)")
    return value


def check_folder(name: str, value: str | None) -> None:
    """A folder setting may name a folder still to be created, never an existing file."""
    if value is not None and Path(value).exists() and not Path(value).is_dir():
        raise SettingsError(f"{name}={value!r} is a file, not a folder")


def check_log_dir(name: str, value: str | None, default: Path, data_dir: Path) -> Path:
    """The log folder `log_pruning` may prune: never the filesystem root, a system folder
    (/etc, /usr, /var/lib…, unless inside OPS_DATA_DIR) nor the home folder."""
    from ops_platform.jobs._log_folder import LogFolderError, check_log_root

    path = Path(value or default)
    if path.exists() and not path.is_dir():
        return path.resolve()  # a file: `check_folder` says so
    try:
        return check_log_root(path, data_dir=data_dir)
    except LogFolderError as refused:
        raise SettingsError(f"{name}={value!r}: {refused}") from None
