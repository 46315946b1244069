"""Rules of `log_pruning` on a real log folder: plan first, then apply.

Which files are log files, their streams and live files: `_log_names.py`.

Rules, in this order, all by modification time (mtime) against `now`:
1. Any log file older than `retention_days` is deleted.
2. A live file older than `compress_after_days` or larger than `max_file_mb` is rotated:
   renamed to `<name>.<mtime as YYYYMMDDTHHMMSSZ>` and gzipped (the app reopens its file).
3. A rotated, uncompressed file older than `compress_after_days`, larger than `max_file_mb`
   or carrying our rotation stamp (left over by a crash) is gzipped to `<name>.gz`.
4. Each stream keeps at most `max_files_per_stream` rotated files; the oldest go.
Gzipped files keep the mtime of their source, so age rules go on working on them.

Safety
- The folder itself is checked first (`_log_folder.check_log_root`).
- Symlinks (files or folders) are never followed or touched: skipped and reported. Every
  path acted on is re-checked right before the act: still a regular file whose resolved
  path is inside the folder; files are opened with O_NOFOLLOW.
- A file that cannot be read, stat'ed or removed is reported in `problems`; the run goes on.
- A log file whose mtime no real log has (in the future, or before 1980: a time never set)
  is left alone: no age rule can judge it, and gzip cannot store such a time.
- Every file left alone for one of these reasons is counted by kind (`skipped`).
- Writes go to a hidden temp file renamed into place (`_log_gzip.py`), so a crash never
  leaves half a .gz under a real name; our temp files older than an hour are removed.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ops_platform.jobs._log_folder import check_log_root
from ops_platform.jobs._log_gzip import TEMP_PREFIX, gzip_file, rotation_name
from ops_platform.jobs._log_names import (
    DEFAULT_LOG_PATTERNS,
    ROTATION_STAMP,
    is_live,
    is_log_name,
    stream_name,
)
from ops_platform.log_line import LogLine
from ops_platform.retries import count_done

DAY = 86_400.0
MB = 1024 * 1024
STALE_TEMP_SECONDS = 3600.0


# Modification times no real log file has: later than now (plus clock skew) or before 1980.
FUTURE_SLACK_SECONDS = DAY
EARLIEST_MTIME = 315_532_800.0  # 1980-01-01T00:00:00Z
# Why a file was left alone, counted in metadata as `skipped_<kind>`.
SKIP_KINDS = (
    "mtime_in_future",
    "mtime_absurd",
    "unreadable",
    "not_regular_file",
    "outside_folder",
    "vanished",
    "not_removable",
)


@dataclass
class LogFile:
    path: Path
    relative: str
    stream: str  # folder-qualified, e.g. "api/app"
    size: int
    mtime: float

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(".gz")

    @property
    def live(self) -> bool:
        return is_live(self.path.name)


@dataclass
class LogPlan:
    root: Path
    delete_expired: list[LogFile] = field(default_factory=list)
    delete_over_cap: list[LogFile] = field(default_factory=list)
    delete_stale_temp: list[LogFile] = field(default_factory=list)
    rotate: list[LogFile] = field(default_factory=list)
    compress: list[LogFile] = field(default_factory=list)
    files_seen: int = 0
    not_log_files: list[str] = field(default_factory=list)
    symlinks_skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # files left alone, by kind

    def problem(self, kind: str, relative: str, what: str) -> None:
        self.skipped[kind] += 1
        self.problems.append(f"{relative}: {what}")


@dataclass
class LogPruneResult:
    files_seen: int = 0
    not_log_files: list[str] = field(default_factory=list)
    files_deleted: int = 0
    files_compressed: int = 0
    files_rotated: int = 0
    bytes_freed: int = 0
    symlinks_skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # files left alone, by kind

    @classmethod
    def of(cls, plan: LogPlan, **counts) -> LogPruneResult:
        """What the plan found before any file is acted on, with `counts` of the acts."""
        return cls(
            files_seen=plan.files_seen,
            not_log_files=list(plan.not_log_files),
            symlinks_skipped=list(plan.symlinks_skipped),
            problems=list(plan.problems),
            skipped=Counter(plan.skipped),
            **counts,
        )

    def problem(self, kind: str, relative: str, what: str) -> None:
        self.skipped[kind] += 1
        self.problems.append(f"{relative}: {what}")

    @property
    def files_changed(self) -> int:
        return self.files_deleted + self.files_compressed + self.files_rotated


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False


def scan(root: Path, plan: LogPlan, patterns: Sequence[str]) -> list[LogFile]:
    """Every log file under `root` (and our temp files), never following symlinks; files
    that are not logs, symlinks and oddities go to the plan."""
    found = []

    def walk_error(error: OSError) -> None:
        relative = _relative(root, error.filename)
        plan.problem("unreadable", relative, f"cannot list folder ({error.strerror})")

    for directory, subdirs, names in os.walk(root, onerror=walk_error, followlinks=False):
        folder = Path(directory)
        for name in list(subdirs):
            if (folder / name).is_symlink():
                subdirs.remove(name)
                plan.symlinks_skipped.append(_relative(root, folder / name))
        for name in sorted(names):
            path = folder / name
            relative = _relative(root, path)
            if not (name.startswith(TEMP_PREFIX) or is_log_name(name, patterns)):
                plan.not_log_files.append(relative)
                continue
            try:
                info = path.lstat()
            except OSError as error:
                plan.problem("unreadable", relative, f"cannot stat ({error.strerror})")
                continue
            if stat.S_ISLNK(info.st_mode):
                plan.symlinks_skipped.append(relative)
                continue
            if not stat.S_ISREG(info.st_mode):
                plan.problem("not_regular_file", relative, "not a regular file, skipped")
                continue
            if not _inside(root, path):
                plan.problem("outside_folder", relative, "resolves outside the log folder, skipped")
                continue
            folder_key = _relative(root, folder)
            stream = stream_name(name) if folder_key == "." else f"{folder_key}/{stream_name(name)}"
            found.append(LogFile(path, relative, stream, info.st_size, info.st_mtime))
    return found


def _relative(root: Path, path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def plan_pruning(
    root: Path,
    now: datetime,
    *,
    retention_days: float,
    compress_after_days: float,
    max_file_mb: float,
    max_files_per_stream: int,
    patterns: Sequence[str] = DEFAULT_LOG_PATTERNS,
) -> LogPlan:
    plan = LogPlan(root=root)
    now_ts = now.timestamp()
    delete_before = now_ts - retention_days * DAY
    compress_before = now_ts - compress_after_days * DAY
    max_bytes = max_file_mb * MB

    remaining: list[LogFile] = []
    for log in scan(root, plan, patterns):
        name = log.path.name
        absurd = _absurd_mtime(log.mtime, now_ts)
        if absurd:
            plan.problem(absurd, log.relative, ABSURD_MTIME[absurd])
            continue
        if name.startswith(TEMP_PREFIX):
            if log.mtime < now_ts - STALE_TEMP_SECONDS:
                plan.delete_stale_temp.append(log)
            continue
        plan.files_seen += 1
        if log.mtime < delete_before:
            plan.delete_expired.append(log)
        elif log.compressed:
            remaining.append(log)
        elif log.live:
            if log.size > max_bytes or log.mtime < compress_before:
                plan.rotate.append(log)  # becomes a rotated member of its stream
            remaining.append(log)
        else:
            if log.size > max_bytes or log.mtime < compress_before or ROTATION_STAMP.search(name):
                plan.compress.append(log)
            remaining.append(log)

    # Rule 4 on the state after rotation: live files do not count, rotated ones do.
    rotating = {id(log) for log in plan.rotate}
    streams: dict[str, list[LogFile]] = {}
    for log in remaining:
        if not log.live or id(log) in rotating:
            streams.setdefault(log.stream, []).append(log)
    for members in streams.values():
        members.sort(key=lambda log: (log.mtime, log.path.name), reverse=True)
        for log in members[max_files_per_stream:]:
            if id(log) in rotating:
                continue  # never delete what this run just rotated; the next run caps it
            plan.delete_over_cap.append(log)
    capped = {id(log) for log in plan.delete_over_cap}
    plan.compress = [log for log in plan.compress if id(log) not in capped]
    return plan


ABSURD_MTIME = {
    "mtime_in_future": "modification time in the future; left alone",
    "mtime_absurd": "modification time before 1980 (never set); left alone",
}


def _absurd_mtime(mtime: float, now_ts: float) -> str | None:
    """The skip kind of a modification time no real log has, or None."""
    if mtime > now_ts + FUTURE_SLACK_SECONDS:
        return "mtime_in_future"
    if mtime < EARLIEST_MTIME:
        return "mtime_absurd"
    return None


def _still_safe(root: Path, log: LogFile) -> tuple[str, str] | None:
    """(skip kind, why) if `log` must not be touched now; None if it still is a regular file
    inside root."""
    try:
        info = log.path.lstat()
    except FileNotFoundError:
        return "vanished", "vanished before it could be handled"
    except OSError as error:
        return "unreadable", f"cannot stat ({error.strerror})"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        return "not_regular_file", "was replaced by a symlink or special file; skipped"
    if not _inside(root, log.path):
        return "outside_folder", "resolves outside the log folder; skipped"
    return None


def apply_plan(plan: LogPlan, progress: LogLine | None = None) -> LogPruneResult:
    result = LogPruneResult.of(plan)

    def safe(log: LogFile) -> bool:
        unsafe = _still_safe(plan.root, log)
        if unsafe:
            kind, why = unsafe
            result.problem(kind, log.relative, why)
        return not unsafe

    for log in plan.delete_expired + plan.delete_over_cap + plan.delete_stale_temp:
        if not safe(log):
            continue
        try:
            log.path.unlink()
        except OSError as error:
            result.problem("not_removable", log.relative, f"cannot delete ({error.strerror})")
            continue
        count_done(result, files_deleted=1, bytes_freed=log.size)

    for log in plan.rotate:
        if not safe(log):
            continue
        rotated = rotation_name(log.path, log.mtime)
        try:
            os.rename(log.path, rotated)
        except OSError as error:
            result.problem("not_removable", log.relative, f"cannot rotate ({error.strerror})")
            continue
        count_done(result, files_rotated=1)
        try:
            _, freed = gzip_file(rotated, log.mtime)
            count_done(result, bytes_freed=freed)
        except OSError as error:
            # Rotated but not compressed: the next run compresses it (it has our stamp).
            what = f"rotated to {rotated.name} but cannot compress ({error.strerror})"
            result.problem("unreadable", log.relative, what)

    for log in plan.compress:
        if not safe(log):
            continue
        try:
            _, freed = gzip_file(log.path, log.mtime)
        except OSError as error:
            what = f"cannot compress ({error.strerror or error})"
            result.problem("unreadable", log.relative, what)
            continue
        count_done(result, files_compressed=1, bytes_freed=freed)
        if progress and result.files_compressed % 100 == 0:
            progress(f"log_pruning: compressed {result.files_compressed} files")
    return result


def prune_log_folder(
    log_dir: str | Path,
    now: datetime,
    *,
    retention_days: float = 30,
    compress_after_days: float = 1,
    max_file_mb: float = 100,
    max_files_per_stream: int = 10,
    patterns: Sequence[str] = DEFAULT_LOG_PATTERNS,
    protected: Mapping[Path, str] | None = None,
    data_dir: str | Path | None = None,
    dry_run: bool = False,
    progress: LogLine | None = None,
) -> LogPruneResult:
    """Prune the log folder; a dry run reports what a real run would do and touches nothing.
    Only files named like logs (`patterns`) are acted on; see `check_log_root` for the
    folders refused (`protected`: the app's own data; `data_dir`: OPS_DATA_DIR)."""
    root = check_log_root(log_dir, protected, data_dir)
    if not root.exists():
        result = LogPruneResult()
        if dry_run:
            result.notes.append(f"log folder {root} does not exist; nothing to prune")
        else:
            root.mkdir(parents=True, exist_ok=True)
            result.notes.append(f"log folder {root} did not exist; created it, nothing to prune")
        return result
    plan = plan_pruning(
        root,
        now,
        retention_days=retention_days,
        compress_after_days=compress_after_days,
        max_file_mb=max_file_mb,
        max_files_per_stream=max_files_per_stream,
        patterns=patterns,
    )
    if not dry_run:
        return apply_plan(plan, progress)
    deleted = plan.delete_expired + plan.delete_over_cap + plan.delete_stale_temp
    return LogPruneResult.of(
        plan,
        files_deleted=len(deleted),
        files_compressed=len(plan.compress),
        files_rotated=len(plan.rotate),
        bytes_freed=sum(log.size for log in deleted),
        notes=["dry run: counts are what a real run would do; bytes_freed counts deletions only"],
    )
