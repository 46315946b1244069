"""The `folders` resource: the deployment's local folders, from the settings at start-up.

Ops that work on files take their folders from here, so a run uses the folders of the
deployment that loaded the code location (`OPS_DATA_DIR`, `OPS_LOG_DIR`,
`OPS_LOG_PATTERNS`), never a re-read of the environment. Paths, not secrets: the UI shows
them.
"""

import os
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import make_url


class Folders(dg.ConfigurableResource):
    data_dir: str
    log_dir: str
    log_patterns: list[str]
    app_data: dict[str, str] = {}  # path → what of the app's own lives there

    @property
    def protected(self) -> dict[Path, str]:
        return {Path(path): what for path, what in self.app_data.items()}


def app_data_paths(settings) -> dict[Path, str]:
    """What of the app's own lives on local disk: a log folder at or above any of these is
    refused, so a misconfigured OPS_LOG_DIR (e.g. OPS_DATA_DIR itself) is never pruned."""
    paths = {}
    database = make_url(settings.database_url)
    if database.get_backend_name() == "sqlite" and database.database not in (None, "", ":memory:"):
        paths[Path(database.database)] = "the app database"
    paths[settings.data_dir / "secrets.key"] = "the secrets key file"
    if not settings.s3_bucket:
        paths[settings.local_object_store_dir] = "the local object store (uploads, report charts)"
    if not settings.smtp_url:
        paths[settings.outbox_dir] = "the mail outbox"
    if os.environ.get("DAGSTER_HOME"):
        paths[Path(os.environ["DAGSTER_HOME"])] = "the Dagster instance (DAGSTER_HOME)"
    return paths


def build_folders(settings) -> Folders:
    return Folders(
        data_dir=str(settings.data_dir),
        log_dir=str(settings.log_dir),
        log_patterns=list(settings.log_patterns),
        app_data={str(path): what for path, what in app_data_paths(settings).items()},
    )
