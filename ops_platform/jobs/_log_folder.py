"""Which folder `log_pruning` may prune: never the filesystem root, a system folder (/etc,
/usr, /var/lib, …) unless inside the deployment's own data folder, the home folder, or a
folder holding the app's own data (the SQLite app database, the local object store, the
Dagster instance…); a run may narrow the deployment's log folder to one of its sub-folders,
nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class LogFolderError(ValueError):
    """The log folder cannot be pruned (a system folder, outside OPS_LOG_DIR, not a folder…)."""


# Folders that are never a log folder, nor may contain one: what lies under them belongs to
# the system, whatever its name.
SYSTEM_TREES = tuple(
    Path(p)
    for p in ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev")
    + ("/proc", "/sys", "/var/lib")
)
# Folders that are never a log folder themselves (their sub-folders may be one).
SYSTEM_FOLDERS = tuple(
    Path(p)
    for p in ("/home", "/root", "/var", "/var/log", "/tmp", "/var/tmp", "/opt", "/srv", "/run")
    + ("/mnt", "/media")
)


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_log_root(
    log_dir: str | Path,
    protected: Mapping[Path, str] | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """`log_dir` resolved, if it may be pruned; else `LogFolderError` in one line.

    Refused: the filesystem root, a system folder or anything under /etc, /usr, /var/lib…,
    the home folder, and any folder equal to or above a `protected` path (the app's own
    data: its SQLite database, local object store, Dagster instance…; value = what it is).
    The one way into a system tree is the deployment's own data folder (`data_dir`, i.e.
    OPS_DATA_DIR): `/var/lib/ops_platform/data/logs` is ours, `/var/lib/postgresql` is not.
    """
    root = _resolved(log_dir)
    if root == Path(root.anchor):
        raise LogFolderError(
            f"log folder {str(log_dir)!r} resolves to the filesystem root; refusing to prune it"
        )
    ours = _resolved(data_dir) if data_dir is not None else None
    for tree in SYSTEM_TREES:
        inside_ours = (
            ours is not None and not tree.is_relative_to(ours) and root.is_relative_to(ours)
        )
        if (root.is_relative_to(tree) and not inside_ours) or tree.is_relative_to(root):
            raise LogFolderError(
                f"log folder {str(root)!r} is the system folder {tree} or inside or above it; "
                "refusing to prune it"
            )
    home = _resolved(Path.home())
    for folder in (*SYSTEM_FOLDERS, home):
        if folder.is_relative_to(root):
            what = "the home folder" if folder == home else "the system folder"
            raise LogFolderError(
                f"log folder {str(root)!r} is {what} {folder} or above it; refusing to prune it"
            )
    held = [
        f"{what} ({path})"
        for path, what in (protected or {}).items()
        if _resolved(path).is_relative_to(root)
    ]
    if held:
        raise LogFolderError(
            f"log folder {str(root)!r} holds {', '.join(held)}; refusing to prune it"
        )
    if root.exists() and not root.is_dir():
        raise LogFolderError(f"log folder {str(root)!r} (OPS_LOG_DIR) exists but is not a folder")
    return root


def narrow_log_dir(configured: str | Path, requested: str) -> Path:
    """The folder a run prunes: the deployment's log folder, or the sub-folder of it the run
    config asks for (relative to it, or absolute inside it). Another folder — `/etc`, a
    sibling, `../x`, a symlink leading out — is refused before anything is touched."""
    root = _resolved(configured)
    if not requested.strip():
        return root
    target = _resolved(root / requested)  # an absolute `requested` replaces root here
    if not target.is_relative_to(root):
        raise LogFolderError(
            f"log_dir {requested!r} is not inside the log folder {str(root)!r} (OPS_LOG_DIR); "
            "run config may only name one of its sub-folders"
        )
    return target
