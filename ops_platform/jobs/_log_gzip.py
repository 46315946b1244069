"""Gzipping and rotating one log file without ever harming it.

- The source is opened without following a symlink (a file swapped for one fails).
- The .gz is written to a hidden temp file (`TEMP_PREFIX`) renamed into place, so a crash
  never leaves half a .gz under a real name; it keeps the source's modification time.
- A .gz completed by a crash between writing it and removing the source is recognised by
  its size trailer, and only the source is removed.
- A name already taken (file or symlink) is never overwritten: a `-N` suffix is added.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tempfile
from datetime import UTC, datetime
from pathlib import Path

TEMP_PREFIX = ".ops-prune-"


def open_log_for_reading(path: Path) -> int:
    """Open without following a symlink (a file swapped for one fails here)."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))


def _gzip_size_matches(gz_path: Path, size: int) -> bool:
    """Whether a finished .gz (ISIZE trailer) holds `size` bytes (mod 2**32)."""
    try:
        with open(gz_path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            return struct.unpack("<I", handle.read(4))[0] == size % 2**32
    except OSError:
        return False


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink():
        stem = path.name[:-3] if path.name.endswith(".gz") else path.name
        suffix = ".gz" if path.name.endswith(".gz") else ""
        candidate = path.with_name(f"{stem}-{n}{suffix}")
        n += 1
    return candidate


def gzip_file(source: Path, mtime: float) -> tuple[Path, int]:
    """Gzip `source` next to itself as `<name>.gz` keeping its mtime; remove the source.

    Returns (gz path, bytes freed). A .gz left complete by a crash between writing it and
    removing the source is recognised (same size) and only the source is removed.
    """
    target = source.with_name(source.name + ".gz")
    size = source.stat().st_size
    if target.exists() and not target.is_symlink() and _gzip_size_matches(target, size):
        source.unlink()
        return target, size
    target = _unique(target)
    descriptor = open_log_for_reading(source)
    with os.fdopen(descriptor, "rb") as reader:
        handle, temporary = tempfile.mkstemp(dir=source.parent, prefix=TEMP_PREFIX)
        try:
            with (
                os.fdopen(handle, "wb") as raw,
                gzip.GzipFile(
                    filename=source.name, mode="wb", fileobj=raw, mtime=int(mtime)
                ) as writer,
            ):
                shutil.copyfileobj(reader, writer, 1024 * 1024)
            os.utime(temporary, (mtime, mtime))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    source.unlink()
    return target, max(0, size - target.stat().st_size)


def rotation_name(path: Path, mtime: float) -> Path:
    stamp = datetime.fromtimestamp(mtime, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate, n = path.with_name(f"{path.name}.{stamp}"), 1
    while any(
        p.exists() or p.is_symlink()
        for p in (candidate, candidate.with_name(candidate.name + ".gz"))
    ):
        candidate = path.with_name(f"{path.name}.{stamp}-{n}")
        n += 1
    return candidate
