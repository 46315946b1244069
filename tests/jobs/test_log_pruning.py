"""log_pruning on a real folder: age/size boundaries, stream cap, symlinks, unreadable
files, dry run, second run, crash half way, concurrent run."""

import gzip
import os
import time
from pathlib import Path

import pytest

from ops_platform.jobs import _log_files
from ops_platform.jobs._log_files import is_live, stream_name
from ops_platform.jobs.maintenance import log_pruning

DAY = 86_400


def _write(path: Path, age_days: float, content: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = content if content is not None else f"log line of {path.name}\n".encode() * 20
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    state = {}
    for directory, _, names in os.walk(root):
        for name in names:
            info = (Path(directory) / name).lstat()
            state[(Path(directory) / name).relative_to(root).as_posix()] = (
                info.st_size,
                int(info.st_mtime),
            )
    return state


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    _write(folder / "secret.log", 60)
    _write(folder / "old.log.1", 60)
    return folder


@pytest.fixture
def logs(tmp_path, outside):
    root = tmp_path / "logs"
    _write(root / "app.log", 0.01)  # live, fresh: kept as is
    _write(root / "app.log.1", 2)  # rotated, > 1 day: gzipped
    _write(root / "app.log.2", 0.9)  # rotated, < 1 day: kept
    _write(root / "app.log.3.gz", 29)  # inside retention: kept
    _write(root / "app.log.4.gz", 31)  # beyond retention: deleted
    _write(root / "old-2024-01-01.log", 40)  # dated, beyond retention: deleted
    _write(root / "idle.log", 2)  # live, idle > 1 day: rotated
    _write(root / "big.log", 0.01, b"x" * 3 * 1024 * 1024)  # live, over 2 MB: rotated
    for n in range(1, 13):  # 12 rotated files: 2 oldest go
        _write(root / f"cap.log.{n}.gz", n * 0.1)
    _write(root / "api" / "req-2024-05-01.log", 3)  # nested, dated: gzipped
    os.symlink(outside / "secret.log", root / "link.log")  # symlink out: skipped
    os.symlink(outside, root / "linked_dir")  # symlinked folder: skipped
    return root


def _run(database, root, **config):
    config = {"log_dir": str(root), "max_file_mb": 2, **config}
    return log_pruning.execute_in_process(
        run_config={"ops": {"prune_logs": {"config": config}}},
        resources={"database": database},
        raise_on_error=False,
    )


def _metadata(result):
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}


def test_stream_names():
    assert stream_name("app.log") == stream_name("app.log.3.gz") == "app"
    assert stream_name("app-2024-01-05.log") == stream_name("app_20240105T040000Z.log.gz") == "app"
    assert stream_name("app.log.20240105T040000Z.gz") == "app"
    assert (
        is_live("app.log")
        and is_live("app")
        and not is_live("app.log.1")
        and not is_live("app-2024-01-05.log")
    )


def test_boundaries(database, logs, outside):
    outside_before = _snapshot(outside)
    app1_mtime = int((logs / "app.log.1").stat().st_mtime)
    result = _run(database, logs)
    assert result.success
    names = set(_snapshot(logs))

    assert {"app.log", "app.log.2", "app.log.3.gz", "app.log.1.gz"} <= names
    assert not {"app.log.1", "app.log.4.gz", "old-2024-01-01.log", "idle.log", "big.log"} & names
    assert int((logs / "app.log.1.gz").stat().st_mtime) == app1_mtime
    assert gzip.decompress((logs / "app.log.1.gz").read_bytes()) == b"log line of app.log.1\n" * 20
    rotated_idle = [n for n in names if n.startswith("idle.log.") and n.endswith("Z.gz")]
    rotated_big = [n for n in names if n.startswith("big.log.") and n.endswith("Z.gz")]
    assert len(rotated_idle) == 1 and len(rotated_big) == 1
    assert gzip.decompress((logs / rotated_big[0]).read_bytes()) == b"x" * 3 * 1024 * 1024
    assert sorted(n for n in names if n.startswith("cap.")) == sorted(
        f"cap.log.{n}.gz" for n in range(1, 11)
    )
    assert "api/req-2024-05-01.log.gz" in names

    # Symlinks untouched, their targets untouched.
    assert (logs / "link.log").is_symlink() and (logs / "linked_dir").is_symlink()
    assert _snapshot(outside) == outside_before

    metadata = _metadata(result)
    assert metadata["files_compressed"] == 2  # app.log.1, api/req
    assert metadata["files_rotated"] == 2  # idle.log, big.log
    assert metadata["files_deleted"] == 4  # app.log.4.gz, old-…, cap 11 and 12
    assert metadata["rows_changed"] == 8
    assert metadata["symlinks_skipped"] == 2
    assert metadata["bytes_freed"] > 3 * 1024 * 1024 - 100_000
    assert metadata["problems"] == 0


def test_dry_run_changes_nothing_and_reports_the_same_counts(database, logs):
    before = _snapshot(logs)
    metadata = _metadata(_run(database, logs, dry_run=True))
    assert _snapshot(logs) == before
    assert (metadata["files_compressed"], metadata["files_rotated"], metadata["files_deleted"]) == (
        2,
        2,
        4,
    )
    assert metadata["rows_changed"] == 0 and metadata["rows_matched"] == 8


def test_second_run_changes_nothing(database, logs):
    assert _metadata(_run(database, logs))["rows_changed"] == 8
    after_first = _snapshot(logs)
    second = _metadata(_run(database, logs))
    assert second["rows_changed"] == 0
    assert _snapshot(logs) == after_first


def test_unreadable_file_is_reported_not_fatal(database, logs, monkeypatch):
    _write(logs / "locked.log.1", 3)
    real_open = _log_files.open_log_for_reading

    def deny(path):
        if path.name == "locked.log.1":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(_log_files, "open_log_for_reading", deny)
    result = _run(database, logs)
    assert result.success
    metadata = _metadata(result)
    assert metadata["problems"] == 1
    assert "locked.log.1: cannot compress (Permission denied)" in metadata["problem_files"]
    assert (logs / "locked.log.1").exists() and not (logs / "locked.log.1.gz").exists()
    assert metadata["files_compressed"] == 2


def test_crash_half_way_then_rerun_completes_without_loss(database, logs, monkeypatch):
    expected_content = {
        name: (logs / name).read_bytes()
        for name in ("app.log.1", "idle.log", "big.log", "api/req-2024-05-01.log")
    }
    real_gzip = _log_files.gzip_file
    calls = {"n": 0}

    def crash_on_second(source, mtime):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real_gzip(source, mtime)

    monkeypatch.setattr(_log_files, "gzip_file", crash_on_second)
    assert not _run(database, logs).success
    monkeypatch.setattr(_log_files, "gzip_file", real_gzip)
    # Also leave the residue of a crash between writing a .gz and removing its source.
    with gzip.open(logs / "app.log.2.gz", "wb") as handle:
        handle.write((logs / "app.log.2").read_bytes())
    os.utime(logs / "app.log.2", (time.time() - 2 * DAY,) * 2)

    assert _run(database, logs).success
    names = set(_snapshot(logs))
    assert not {"app.log.1", "idle.log", "big.log", "app.log.2", "api/req-2024-05-01.log"} & names
    contents = {
        name: gzip.decompress((logs / name).read_bytes()) for name in names if name.endswith(".gz")
    }
    for name, content in expected_content.items():
        assert content in contents.values(), f"{name} lost"
    assert not [n for n in names if Path(n).name.startswith(".")]
    assert _metadata(_run(database, logs))["rows_changed"] == 0


def test_concurrent_run_does_not_act(database, logs):
    before = _snapshot(logs)
    with database.job_lock("log_pruning"):
        result = _run(database, logs)
    assert result.success and _metadata(result)["rows_changed"] == 0
    assert _snapshot(logs) == before


def test_missing_folder_is_created_with_a_note(database, tmp_path):
    root = tmp_path / "nowhere" / "logs"
    metadata = _metadata(_run(database, root, dry_run=True))
    assert "does not exist" in metadata["note"] and not root.exists()
    metadata = _metadata(_run(database, root))
    assert "created it" in metadata["note"] and root.is_dir() and metadata["rows_changed"] == 0


def test_a_file_as_log_dir_is_a_clear_error(database, tmp_path):
    not_a_folder = _write(tmp_path / "file", 0)
    result = _run(database, not_a_folder)
    assert not result.success
    assert "is not a folder" in result.failure_data_for_node("prune_logs").error.to_string()
