"""What `log_pruning` counts as a log file, and how it groups them.

- A **log file** is a regular, non-hidden file under the folder whose name matches one of the
  configured log patterns (default `*.log`), as is or rotated: followed by `.N` or by our
  rotation stamp, and/or by `.gz` (`app.log`, `app.log.1`, `app.log.3.gz`,
  `app.log.20240105T040000Z.gz`). Every other file is "not a log file": counted, never
  touched, whatever its age.
- Its **stream** is its folder plus its name up to the first '.', without a trailing date or
  timestamp (`-2024-01-05`, `_20240105`, `-20240105T040000Z`): `app.log`, `app.log.1`,
  `app.log.20240105T040000Z.gz` and `app-2024-01-05.log` all belong to stream `app`.
- A stream's **live** file is `<stream>.log` (or the bare `<stream>`): the one the app
  writes. Every other file of the stream is a **rotated** file.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

# A date or timestamp at the end of the part before the first '.', with its separator.
_DATE_SUFFIX = re.compile(r"[-_](\d{4}-?\d{2}-?\d{2})([T_-]?\d{2}([:-]?\d{2}){0,2}Z?)?$")
# The stamp our rotation appends (maybe with a "-N" to stay unique).
ROTATION_STAMP = re.compile(r"\.\d{8}T\d{6}Z(-\d+)?$")
# What rotation adds after a log name: `.N` (logrotate) or our stamp, then maybe `.gz`
# (with the "-N" our gzip adds to stay unique).
_ROTATED_SUFFIX = re.compile(r"(\.(\d+|\d{8}T\d{6}Z(-\d+)?))?((-\d+)?\.gz)?$")

DEFAULT_LOG_PATTERNS = ("*.log",)


def is_log_name(file_name: str, patterns: Sequence[str] = DEFAULT_LOG_PATTERNS) -> bool:
    """Whether `file_name` is a log file: it matches a pattern as is, or once the suffixes
    rotation adds (`.N`, our stamp, `.gz`) are taken off."""
    if file_name.startswith("."):
        return False
    candidates = {file_name, _ROTATED_SUFFIX.sub("", file_name, count=1)}
    return any(
        candidate and fnmatch.fnmatchcase(candidate, pattern)
        for candidate in candidates
        for pattern in patterns
    )


def stream_name(file_name: str) -> str:
    base = file_name.split(".", 1)[0]
    return _DATE_SUFFIX.sub("", base) or base


def is_live(file_name: str) -> bool:
    stream = stream_name(file_name)
    return file_name in (stream, f"{stream}.log")
