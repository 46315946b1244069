"""`orphaned_file_cleanup` (weekly): uploads nobody references go to the trash.

Through the `object_store` resource (S3, or the local folder by default):
1. The uploads prefix is listed page by page (at most 1,000 keys a page). For each page,
   the objects older than the grace period (by `last_modified`) are checked against
   `stored_files.s3_key` in ONE query for the whole page.
2. Each unreferenced one is copied to `<trash prefix><original key>` (`workers` copies in
   flight); only then are the page's copied originals deleted (one DeleteObjects request). A run that dies between the copy
   and the delete loses nothing: the next run finds the trash copy (same size) and only
   deletes the upload.
3. Trash objects older than the trash retention (by the copy's `last_modified`) are purged.
Objects no rule can judge or act on are left where they are and counted by kind
(`skipped_<kind>`): a folder marker, a key the store cannot copy, no `last_modified`, a
`last_modified` in the future, a copy that fails for good. `stored_files` rows with no key
reference nothing and are counted in `bad_rows`. Transient store faults retry with backoff.
"""

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, bindparam, text

from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.batching import SAMPLE_SIZE
from ops_platform.db.engine import is_postgres, utcnow
from ops_platform.jobs._common import (
    MAX_TRANSIENT_RETRIES,
    GateConfig,
    add_counts,
    add_earlier_counts,
    backoff_seconds,
    bullet_list,
    count_done,
    job_op,
    one_op_job,
    warn_listed,
)
from ops_platform.jobs._gate import Preview, check_blast_radius, limits_for
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database
from ops_platform.resources.object_store import (
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    TransientObjectStoreError,
    check_key,
)
from ops_platform.settings import check_prefixes

MAX_PAGE = 1000  # S3's most keys per listing page and per DeleteObjects request
FUTURE_SLACK = timedelta(days=1)  # clock skew; later than this is a time no upload has
# Why an object was left alone, in metadata as `skipped_<kind>`.
SKIP_WHY = {
    "folder_marker": "folder marker, not a file",
    "invalid_key": "a key the store cannot copy",
    "no_last_modified": "no last_modified: its age cannot be told",
    "modified_in_future": "last_modified in the future: its age cannot be told",
    "copy_failed": "the copy to the trash failed",
}


@dataclass
class OrphanResult:
    uploads_listed: int = 0
    pages: int = 0
    referenced: int = 0
    within_grace: int = 0
    moved: int = 0  # copied to trash and removed from uploads
    resumed: int = 0  # trash copy already there (a run died half way): upload removed
    bytes_moved: int = 0
    trash_listed: int = 0
    trash_purged: int = 0
    bytes_purged: int = 0
    reference_queries: int = 0
    skipped: list[str] = field(default_factory=list)
    skipped_kinds: Counter = field(default_factory=Counter)
    sample_keys: dict[str, list[str]] = field(default_factory=dict)  # a few keys moved/purged

    def skip(self, kind: str, key: str, why: str = "") -> None:
        self.skipped_kinds[kind] += 1
        self.skipped.append(f"{key}: {why or SKIP_WHY[kind]}")

    def sample(self, where: str, keys: list[str]) -> None:
        taken = self.sample_keys.setdefault(where, [])
        taken.extend(keys[: SAMPLE_SIZE - len(taken)])

    def preview(self, store: ObjectStore) -> tuple[Preview, dict[str, int]]:
        """For the blast-radius gate: objects moved out of uploads and purged from the trash,
        against how many each prefix holds."""
        moved = self.moved + self.resumed
        counts = {store.uploads_prefix: moved, store.trash_prefix: self.trash_purged}
        preview = Preview(
            rows=self.files_changed,
            tables={prefix: n for prefix, n in counts.items() if n},
            samples=dict(self.sample_keys),
        )
        return preview, {
            store.uploads_prefix: self.uploads_listed,
            store.trash_prefix: self.trash_listed,
        }

    @property
    def files_changed(self) -> int:
        return self.moved + self.resumed + self.trash_purged


def referenced_keys(engine: Engine, keys: list[str]) -> set[str]:
    """Which of `keys` a stored_files row references: one query for the whole page."""
    if not keys:
        return set()
    if is_postgres(engine):
        statement = text("SELECT DISTINCT s3_key FROM stored_files WHERE s3_key = ANY(:keys)")
        params = {"keys": list(keys)}
    else:
        statement = text(
            "SELECT DISTINCT s3_key FROM stored_files WHERE s3_key IN :keys"
        ).bindparams(bindparam("keys", expanding=True))
        params = {"keys": list(keys)}
    with engine.connect() as connection:
        return set(connection.execute(statement, params).scalars())


def _trash_one(store: ObjectStore, info: ObjectInfo, trash_key: str) -> str:
    """Copy one upload to the trash unless a complete copy is already there."""
    existing = store.stat(trash_key)
    if existing is not None and existing.size == info.size:
        return "resumed"  # copied by a run that died before deleting
    store.copy(info.key, trash_key)
    return "moved"


def _move_page_to_trash(
    store: ObjectStore,
    orphans: list[ObjectInfo],
    trash_prefix: str,
    dry_run: bool,
    result: OrphanResult,
    workers: int = 1,
) -> None:
    """Copy every orphan of the page to the trash (`workers` requests at a time), then
    delete the copied ones from uploads in one request."""
    result.sample("uploads", [info.key for info in orphans])
    if dry_run:
        result.moved += len(orphans)
        result.bytes_moved += sum(info.size for info in orphans)
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            (info, pool.submit(_trash_one, store, info, trash_prefix + info.key))
            for info in orphans
        ]
    copied: dict[str, list[ObjectInfo]] = {"moved": [], "resumed": []}
    transient: TransientObjectStoreError | None = None
    for info, future in futures:
        try:
            copied[future.result()].append(info)
        except TransientObjectStoreError as error:
            transient = transient or error
        except (ObjectStoreError, OSError) as error:
            result.skip("copy_failed", info.key, str(error))
    # Whatever was copied leaves uploads, even if another copy of the page failed.
    done = copied["moved"] + copied["resumed"]
    store.delete_many([info.key for info in done])
    count_done(
        result,
        moved=len(copied["moved"]),
        resumed=len(copied["resumed"]),
        bytes_moved=sum(info.size for info in done),
    )
    if transient is not None:
        raise transient


def _unusable_time(info: ObjectInfo, now: datetime) -> str | None:
    """The skip kind of an object whose age cannot be told, or None."""
    if info.last_modified is None:
        return "no_last_modified"
    if info.last_modified > now + FUTURE_SLACK:
        return "modified_in_future"
    return None


def _unusable(info: ObjectInfo, now: datetime) -> str | None:
    """The skip kind of an upload no rule can judge or move, or None."""
    if info.key.endswith("/"):
        return "folder_marker"
    try:
        check_key(info.key)
    except ObjectStoreError:
        return "invalid_key"
    return _unusable_time(info, now)


def _judgeable(
    page: list[ObjectInfo],
    unusable: Callable[[ObjectInfo, datetime], str | None],
    now: datetime,
    result: OrphanResult,
) -> Iterator[ObjectInfo]:
    """The page's objects a rule can judge; every other one is counted as skipped, with why."""
    for info in page:
        kind = unusable(info, now)
        if kind:
            result.skip(kind, info.key)
        else:
            yield info


def clean_orphaned_files(
    engine: Engine,
    store: ObjectStore,
    now: datetime,
    *,
    grace: timedelta = timedelta(days=7),
    trash_retention: timedelta = timedelta(days=30),
    page_size: int = MAX_PAGE,
    workers: int = 8,
    dry_run: bool = False,
    progress: LogLine | None = None,
) -> OrphanResult:
    """Move orphaned uploads to the trash and purge old trash; a dry run only counts."""
    uploads_prefix, trash_prefix = store.uploads_prefix, store.trash_prefix
    check_prefixes(uploads_prefix, trash_prefix)
    page_size = max(1, min(page_size, MAX_PAGE))
    result = OrphanResult()
    grace_cutoff = now - grace

    for page in store.list_pages(uploads_prefix, page_size):
        result.pages += 1
        result.uploads_listed += len(page)
        candidates = []
        for info in _judgeable(page, _unusable, now, result):
            if info.last_modified >= grace_cutoff:
                result.within_grace += 1
            else:
                candidates.append(info)
        referenced = (
            referenced_keys(engine, [info.key for info in candidates]) if candidates else set()
        )
        result.reference_queries += bool(candidates)
        result.referenced += sum(1 for info in candidates if info.key in referenced)
        orphans = [info for info in candidates if info.key not in referenced]
        if orphans:
            _move_page_to_trash(store, orphans, trash_prefix, dry_run, result, workers)
        if progress:
            progress(
                f"orphaned_file_cleanup: {result.uploads_listed} uploads listed, "
                f"{result.moved + result.resumed} moved to trash"
            )

    purge_cutoff = now - trash_retention
    for page in store.list_pages(trash_prefix, page_size):
        result.trash_listed += len(page)
        expired = [
            info
            for info in _judgeable(page, _unusable_time, now, result)
            if info.last_modified < purge_cutoff
        ]
        if not expired:
            continue
        result.sample("trash", [info.key for info in expired])
        if not dry_run:
            store.delete_many([info.key for info in expired])
        # Only what is gone for good counts across a retry; a dry run recounts it all.
        (add_counts if dry_run else count_done)(
            result, trash_purged=len(expired), bytes_purged=sum(info.size for info in expired)
        )
    return result


@contextlib.contextmanager
def object_store_retries(context: dg.OpExecutionContext) -> Iterator[None]:
    """An object store still failing after its own retries: retry the step later."""
    try:
        yield
    except TransientObjectStoreError as error:
        if context.retry_number >= MAX_TRANSIENT_RETRIES:
            raise
        wait = backoff_seconds(context.retry_number, base=5.0)
        context.log.warning(
            f"object store unavailable, retry {context.retry_number + 1} in {wait:.1f}s: {error}"
        )
        raise dg.RetryRequested(max_retries=MAX_TRANSIENT_RETRIES, seconds_to_wait=wait) from error


class OrphanedFileCleanupConfig(GateConfig):
    grace_days: float = Field(
        default=7, ge=0, description="Unreferenced uploads younger than this are kept."
    )
    trash_retention_days: float = Field(
        default=30, gt=0, description="Trash older than this is purged."
    )
    workers: int = Field(default=8, ge=1, le=64, description="Copy requests in flight at once.")


def orphan_metadata(
    result: OrphanResult, config: OrphanedFileCleanupConfig, store: ObjectStore
) -> dict:
    metadata = {
        "dry_run": config.dry_run,
        "store": store.describe(),
        "uploads_prefix": store.uploads_prefix,
        "trash_prefix": store.trash_prefix,
        "uploads_listed": result.uploads_listed,
        "listing_pages": result.pages,
        "reference_queries": result.reference_queries,
        "referenced": result.referenced,
        "within_grace": result.within_grace,
        "moved_to_trash": result.moved,
        "resumed_moves": result.resumed,
        "bytes_moved": result.bytes_moved,
        "trash_listed": result.trash_listed,
        "trash_purged": result.trash_purged,
        "bytes_purged": result.bytes_purged,
        "skipped": len(result.skipped),
        **{f"skipped_{kind}": result.skipped_kinds[kind] for kind in SKIP_WHY},
        "rows_matched": result.files_changed,
        "rows_changed": 0 if config.dry_run else result.files_changed,
    }
    if result.skipped:
        metadata["skipped_objects"] = bullet_list(result.skipped)
    return metadata


def orphan_summary(result: OrphanResult, store: ObjectStore, dry_run: bool) -> str:
    moved, purged = ("would move", "would purge") if dry_run else ("moved", "purged")
    return (
        f"orphaned_file_cleanup {moved} {result.moved + result.resumed} of {result.uploads_listed} uploads to "
        f"{store.trash_prefix} ({result.referenced} referenced, {result.within_grace} within grace) and "
        f"{purged} {result.trash_purged} trash objects; {len(result.skipped)} skipped"
    )


@job_op(
    "orphaned_file_cleanup",
    "Move unreferenced uploads older than the grace period to the trash; purge old trash.",
    when_lock_held={"rows_changed": 0},
)
def move_orphaned_files_to_trash(
    context: dg.OpExecutionContext,
    config: OrphanedFileCleanupConfig,
    database: Database,
    object_store: ObjectStore,
) -> dg.Output[int]:
    options = {
        "grace": timedelta(days=config.grace_days),
        "trash_retention": timedelta(days=config.trash_retention_days),
        "page_size": config.batch_size,
        "workers": config.workers,
    }
    now = utcnow()
    with object_store_retries(context):
        # The dry run is the blast-radius gate's preview; a real run follows if it passes.
        result = clean_orphaned_files(database.engine, object_store, now, dry_run=True, **options)
        gate_metadata = check_blast_radius(
            context,
            database.engine,
            config,
            limits_for(context, config)[0],
            *result.preview(object_store),
        )
        if not config.dry_run:
            result = clean_orphaned_files(
                database.engine, object_store, now, progress=context.log.info, **options
            )
    retried = add_earlier_counts(context, result)
    warn_listed(context.log.warning, "orphaned_file_cleanup skipped ", result.skipped)
    context.log.info(orphan_summary(result, object_store, config.dry_run))
    metadata = {
        **orphan_metadata(result, config, object_store),
        **gate_metadata,
        **retried,
        **job_bad_rows(context, database.engine),
    }
    return dg.Output(metadata["rows_changed"], metadata=metadata)


orphaned_file_cleanup = one_op_job(
    "orphaned_file_cleanup",
    move_orphaned_files_to_trash,
    "Weekly: unreferenced uploads to the trash, old trash purged.",
)


defs = dg.Definitions(jobs=[orphaned_file_cleanup])
