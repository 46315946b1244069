"""log_pruning on a real folder: age/size boundaries, stream cap, symlinks, unreadable
files, dry run, second run, crash half way, concurrent run; only files named like logs, only
inside OPS_LOG_DIR, never a system folder or the app's own data."""

import gzip
import os
import re
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from ops_platform.jobs import _log_files, _log_gzip
from ops_platform.jobs._log_files import is_live, is_log_name, stream_name
from ops_platform.jobs._log_folder import LogFolderError, check_log_root
from ops_platform.jobs.log_pruning import log_pruning
from ops_platform.resources.folders import build_folders
from ops_platform.settings import SettingsError, load_settings
from tests.jobs.cleanup_helpers import output_metadata

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


def _run(database, root, *, env=None, **config):
    """Run the job with OPS_LOG_DIR = `root` (the deployment's log folder) and the app's
    embedded data in a folder of its own next to it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("OPS_DATABASE_URL", "OPS_LOG_PATTERNS", "DAGSTER_HOME"):
            patch.delenv(name, raising=False)
        patch.setenv("OPS_DATA_DIR", str(Path(root).parent / "ops_data"))
        patch.setenv("OPS_LOG_DIR", str(root))
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        return log_pruning.execute_in_process(
            run_config={"ops": {"prune_logs": {"config": {"max_file_mb": 2, **config}}}},
            resources={"database": database, "folders": build_folders(load_settings())},
            raise_on_error=False,
        )


def _refusal(result) -> str:
    assert not result.success
    return result.failure_data_for_node("prune_logs").error.message.strip()


def _deny_reading(monkeypatch, name: str) -> None:
    """Opening the log file called `name` fails as a file without read permission does."""
    real_open = _log_gzip.open_log_for_reading

    def deny(path):
        if path.name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(_log_gzip, "open_log_for_reading", deny)


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

    metadata = output_metadata(result)
    assert metadata["files_compressed"] == 2  # app.log.1, api/req
    assert metadata["files_rotated"] == 2  # idle.log, big.log
    assert metadata["files_deleted"] == 4  # app.log.4.gz, old-…, cap 11 and 12
    assert metadata["rows_changed"] == 8
    assert metadata["symlinks_skipped"] == 2
    assert metadata["bytes_freed"] > 3 * 1024 * 1024 - 100_000
    assert metadata["problems"] == 0


def test_dry_run_changes_nothing_and_reports_the_same_counts(database, logs):
    before = _snapshot(logs)
    metadata = output_metadata(_run(database, logs, dry_run=True))
    assert _snapshot(logs) == before
    assert (metadata["files_compressed"], metadata["files_rotated"], metadata["files_deleted"]) == (
        2,
        2,
        4,
    )
    assert metadata["rows_changed"] == 0 and metadata["rows_matched"] == 8


def test_second_run_changes_nothing(database, logs):
    assert output_metadata(_run(database, logs))["rows_changed"] == 8
    after_first = _snapshot(logs)
    second = output_metadata(_run(database, logs))
    assert second["rows_changed"] == 0
    assert _snapshot(logs) == after_first


def test_unreadable_file_is_reported_not_fatal(database, logs, monkeypatch):
    _write(logs / "locked.log.1", 3)
    _deny_reading(monkeypatch, "locked.log.1")
    result = _run(database, logs)
    assert result.success
    metadata = output_metadata(result)
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
    assert output_metadata(_run(database, logs))["rows_changed"] == 0


def test_concurrent_run_does_not_act(database, logs):
    before = _snapshot(logs)
    with database.job_lock("log_pruning"):
        result = _run(database, logs)
    assert result.success and output_metadata(result)["rows_changed"] == 0
    assert _snapshot(logs) == before


def test_missing_folder_is_created_with_a_note(database, tmp_path):
    root = tmp_path / "nowhere" / "logs"
    metadata = output_metadata(_run(database, root, dry_run=True))
    assert "does not exist" in metadata["note"] and not root.exists()
    metadata = output_metadata(_run(database, root))
    assert "created it" in metadata["note"] and root.is_dir() and metadata["rows_changed"] == 0


def test_a_file_as_log_dir_is_a_clear_error(tmp_path):
    not_a_folder = _write(tmp_path / "file", 0)
    with pytest.raises(SettingsError) as refused:
        load_settings({"OPS_LOG_DIR": str(not_a_folder)})
    assert str(refused.value) == f"OPS_LOG_DIR={str(not_a_folder)!r} is a file, not a folder"
    with pytest.raises(LogFolderError, match="is not a folder"):
        check_log_root(not_a_folder)  # and the job refuses it too


def test_log_names():
    for name in (
        "app.log",
        "app.log.1",
        "app.log.12.gz",
        "app.log.gz",
        "app.log.20240105T040000Z",
        "app.log.20240105T040000Z-1.gz",
        "app.log.1-2.gz",
        "req-2024-05-01.log",
    ):
        assert is_log_name(name), name
    for name in ("data.db", "data.db.gz", "settings.yaml", "main.py", "app", ".hidden.log"):
        assert not is_log_name(name), name
    assert not is_log_name("app.log.1abc")
    assert is_log_name("worker.out.3.gz", ("*.out",)) and not is_log_name("app.log", ("*.out",))


def test_only_files_named_like_logs_are_touched(database, tmp_path):
    """A folder that is not only a log folder: old data, settings and code stay."""
    root = tmp_path / "app"
    keep = {
        name: _write(root / name, 60)
        for name in ("data.db", "settings.yaml", "main.py", "data.db.gz", "app", "src/util.py")
    }
    keep[".env"] = _write(root / ".env", 60)
    kept_before = {name: path.read_bytes() for name, path in keep.items()}
    for name in ("app.log", "app.log.1", "app.log.2.gz", "src/worker-2024-01-01.log"):
        _write(root / name, 60)
    _write(root / "fresh.log.1", 2)  # rotated, > 1 day: gzipped

    dry = output_metadata(_run(database, root, dry_run=True))
    assert (dry["files_deleted"], dry["files_compressed"], dry["not_log_files"]) == (4, 1, 7)

    metadata = output_metadata(_run(database, root))
    assert metadata["files_deleted"] == 4 and metadata["files_compressed"] == 1
    assert metadata["not_log_files"] == 7
    assert "`main.py`" in metadata["not_log_files_left_alone"]
    assert set(_snapshot(root)) == {*keep, "fresh.log.1.gz"}
    assert {name: path.read_bytes() for name, path in keep.items()} == kept_before


def test_configured_log_patterns(database, tmp_path):
    root = tmp_path / "logs"
    _write(root / "worker.out.1", 60)
    _write(root / "app.log", 60)
    metadata = output_metadata(_run(database, root, env={"OPS_LOG_PATTERNS": "*.out, *.err"}))
    assert metadata["files_deleted"] == 1 and metadata["not_log_files"] == 1
    assert set(_snapshot(root)) == {"app.log"}
    for broad in ("*", "*.*", "logs/*.log", " , "):
        with pytest.raises(SettingsError, match="OPS_LOG_PATTERNS"):
            load_settings({"OPS_LOG_PATTERNS": broad})


@pytest.fixture
def escape(tmp_path, logs, outside):
    """The ways a run config could name a folder other than (a sub-folder of) OPS_LOG_DIR."""
    os.symlink(outside, logs / "escape")
    return {
        "absolute sibling": str(outside),
        "relative parent": "../outside",
        "dotted inside-out": "api/../../outside",
        "symlink leading out": "escape",
        "parent itself": str(tmp_path),
    }


@pytest.mark.parametrize(
    "how",
    [
        "absolute sibling",
        "relative parent",
        "dotted inside-out",
        "symlink leading out",
        "parent itself",
    ],
)
def test_run_config_naming_another_folder_is_refused(database, logs, outside, escape, how):
    before = (_snapshot(logs), _snapshot(outside))
    message = _refusal(_run(database, logs, log_dir=escape[how]))
    assert "log_pruning refused: log_dir " in message and "\n" not in message
    assert "is not inside the log folder" in message
    assert (_snapshot(logs), _snapshot(outside)) == before


@pytest.mark.parametrize("folder", ["/etc", "/", "/usr/lib", "/var/lib"])
def test_run_config_naming_a_system_folder_is_refused(database, logs, folder):
    before = _snapshot(logs)
    message = _refusal(_run(database, logs, log_dir=folder, dry_run=True))
    assert "log_pruning refused: " in message and "\n" not in message
    assert _snapshot(logs) == before


def test_run_config_may_narrow_to_a_sub_folder(database, logs):
    for log_dir in ("api", str(logs / "api")):
        metadata = output_metadata(_run(database, logs, log_dir=log_dir, dry_run=True))
        assert metadata["log_dir"] == str(logs / "api")
        assert metadata["files_compressed"] == 1 and metadata["files_seen"] == 1
    metadata = output_metadata(_run(database, logs, log_dir="api"))
    assert set(_snapshot(logs / "api")) == {"req-2024-05-01.log.gz"}
    assert (logs / "app.log.1").exists() and (logs / "app.log.4.gz").exists()


@pytest.mark.parametrize(
    "folder", ["/etc", "/etc/app", "/usr", "/usr/share/doc", "/var/lib", "/var", "/home", "/"]
)
def test_system_folders_are_refused_even_as_ops_log_dir(folder):
    with pytest.raises(LogFolderError, match="refusing to prune it"):
        check_log_root(folder)


def test_home_folder_is_refused_but_a_folder_inside_it_is_not(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(LogFolderError, match="the home folder"):
        check_log_root(tmp_path)
    assert check_log_root(tmp_path / "app" / "logs") == tmp_path / "app" / "logs"


def test_data_dir_holding_the_app_database_is_refused_as_ops_log_dir(database, tmp_path):
    data = tmp_path / "ops_data"
    _write(data / "app.db", 60)
    _write(data / "old.log", 60)
    before = _snapshot(data)
    message = _refusal(_run(database, data, env={"OPS_DATA_DIR": str(data)}))
    assert "holds the app database (" in message and "\n" not in message
    assert _snapshot(data) == before
    # Its logs sub-folder (the default OPS_LOG_DIR) is fine.
    assert _run(database, data / "logs", env={"OPS_DATA_DIR": str(data)}).success


@pytest.mark.parametrize("folder", ["/etc", "/var/lib", "/usr/share/app", "/"])
def test_a_system_folder_as_ops_log_dir_is_a_settings_error(folder):
    with pytest.raises(SettingsError) as refused:
        load_settings({"OPS_LOG_DIR": folder})
    first_line = str(refused.value).splitlines()[0]
    assert first_line.startswith(f"OPS_LOG_DIR={folder!r}: ") and "refusing to prune" in first_line


def test_a_system_tree_holds_a_log_folder_only_inside_the_deployments_data_folder():
    # The image keeps OPS_DATA_DIR in /var/lib/ops_platform/data: its logs folder is ours.
    data_dir = "/var/lib/ops_platform/data"
    logs = Path(data_dir) / "logs"
    assert check_log_root(logs, data_dir=data_dir) == logs
    with pytest.raises(LogFolderError, match="system folder /var/lib"):
        check_log_root(logs)
    with pytest.raises(LogFolderError, match="system folder /var/lib"):
        check_log_root("/var/lib/postgresql/15/main/log", data_dir=data_dir)
    # A data folder at or above a system tree opens nothing.
    for too_wide in ("/", "/var", "/var/lib"):
        with pytest.raises(LogFolderError, match="refusing to prune it"):
            check_log_root("/var/lib/postgresql", data_dir=too_wide)


def test_the_images_environment_gives_valid_settings_and_a_log_folder_inside_its_data():
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    data_dir = re.search(r"OPS_DATA_DIR=(\S+)", dockerfile).group(1)
    assert Path(data_dir).is_relative_to("/var/lib")  # the case this rule is for
    settings = load_settings({"OPS_DATA_DIR": data_dir, "DAGSTER_HOME": "/var/lib/x/home"})
    assert settings.log_dir == Path(data_dir) / "logs"
    with pytest.raises(SettingsError, match="OPS_LOG_DIR"):
        load_settings({"OPS_DATA_DIR": data_dir, "OPS_LOG_DIR": "/var/lib/mysql"})


def test_a_retried_run_reports_what_the_whole_run_did(database, logs, monkeypatch):
    """A transient fault after the deletes and rotations: the retry compresses the rest, and
    metadata and logs count every attempt's files, as a run without the fault would."""
    real_gzip = _log_files.gzip_file
    calls = {"n": 0}

    def lose_the_database_at_the_first_compression(source, mtime):
        calls["n"] += 1
        if calls["n"] == 3:  # the two rotations gzip first
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return real_gzip(source, mtime)

    monkeypatch.setattr(_log_files, "gzip_file", lose_the_database_at_the_first_compression)
    result = _run(database, logs)
    assert result.success
    metadata = output_metadata(result)
    assert (metadata["files_deleted"], metadata["files_rotated"]) == (4, 2)
    assert metadata["files_compressed"] == 2 and metadata["rows_changed"] == 8
    assert metadata["bytes_freed"] > 3 * 1024 * 1024 - 100_000
    assert metadata["attempts"] == 2
    earlier = metadata["done_by_earlier_attempts"]
    assert (earlier["files_deleted"], earlier["files_rotated"]) == (4, 2)
    assert "files_compressed" not in earlier


def test_files_with_times_no_real_log_has_are_left_alone_and_counted(database, logs):
    # A big live file dated in 2226: rotating it would gzip a time gzip cannot hold.
    future = _write(logs / "future.log", -200 * 365, b"x" * 3 * 1024 * 1024)
    never_set = _write(logs / "epoch.log.2", 0)
    os.utime(never_set, (0, 0))  # mtime never set: not 56 years old
    before = {path: (path.stat().st_mtime, path.read_bytes()) for path in (future, never_set)}
    for dry_run in (True, False):
        result = _run(database, logs, dry_run=dry_run)
        assert result.success
        metadata = output_metadata(result)
        assert metadata["skipped_mtime_in_future"] == metadata["skipped_mtime_absurd"] == 1
        assert metadata["rows_matched"] == 8  # the other files as without them
        assert "future.log: modification time in the future" in metadata["problem_files"]
    assert {path: (path.stat().st_mtime, path.read_bytes()) for path in before} == before


def test_skipped_files_are_counted_by_kind(database, logs, monkeypatch):
    _write(logs / "locked.log.1", 3)
    os.mkfifo(logs / "pipe.log")
    _deny_reading(monkeypatch, "locked.log.1")
    metadata = output_metadata(_run(database, logs))
    assert (metadata["skipped_unreadable"], metadata["skipped_not_regular_file"]) == (1, 1)
    assert metadata["skipped_mtime_in_future"] == metadata["skipped_not_removable"] == 0
    assert (logs / "locked.log.1").exists() and (logs / "pipe.log").exists()
