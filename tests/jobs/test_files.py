"""orphaned_file_cleanup against a real S3 API (moto server through boto3) and the local
folder: grace and trash boundaries, references, dry run, second run, crash between copy
and delete, concurrent run, bad objects, set-based reference check, transient faults."""

from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.jobs import files as files_job
from ops_platform.jobs.files import clean_orphaned_files, orphaned_file_cleanup
from ops_platform.resources.object_store import (
    LocalObjectStore,
    ObjectInfo,
    TransientObjectStoreError,
)
from tests.jobs.cleanup_helpers import lose_the_lock_connection_once, output_metadata

ORPHANS = ["uploads/orphan1.png", "uploads/sub/orphan2.txt"]
REFERENCED = ["uploads/ref1.png", "uploads/sub/ref2.pdf"]
OUTSIDE = ["reports/weekly.md", "uploads-other/x.bin"]


def _content(key):
    return f"content of {key}".encode()


@pytest.fixture
def uploads(store, engine):
    for key in ORPHANS + REFERENCED + OUTSIDE:
        store.put_bytes(key, _content(key))
    with engine.begin() as connection:
        connection.execute(
            insert(schema.stored_files),
            [
                {"s3_key": key, "owner_id": 1, "created_at": utcnow()}
                for key in REFERENCED + REFERENCED[:1]
            ],
        )
    return store


def _keys(store):
    return {info.key: info.size for info in store.list_objects("")}


def _run(database, store, **config):
    return orphaned_file_cleanup.execute_in_process(
        run_config={
            "ops": {"move_orphaned_files_to_trash": {"config": {"grace_days": 0, **config}}}
        },
        resources={"database": database, "object_store": store},
        raise_on_error=False,
    )


def test_grace_and_trash_boundaries(uploads, engine):
    store = uploads
    t0 = utcnow()
    inside_grace = clean_orphaned_files(
        engine, store, t0 + timedelta(days=7) - timedelta(minutes=1)
    )
    assert inside_grace.files_changed == 0 and inside_grace.within_grace == 4

    moved = clean_orphaned_files(engine, store, t0 + timedelta(days=7, minutes=1))
    assert (moved.moved, moved.referenced, moved.within_grace) == (2, 2, 0)
    keys = set(_keys(store))
    assert not set(ORPHANS) & keys
    assert set(REFERENCED + OUTSIDE) <= keys
    for key in ORPHANS:
        assert store.get_bytes(f"trash/{key}") == _content(key)

    t1 = utcnow()  # when the trash copies were made
    kept = clean_orphaned_files(engine, store, t1 + timedelta(days=30) - timedelta(minutes=1))
    assert kept.trash_purged == 0 and kept.trash_listed == 2
    purged = clean_orphaned_files(engine, store, t1 + timedelta(days=30, minutes=1))
    assert purged.trash_purged == 2
    assert set(_keys(store)) == set(REFERENCED + OUTSIDE)


def test_job_moves_orphans_and_reports(uploads, database):
    result = _run(database, uploads)
    assert result.success
    keys = set(_keys(uploads))
    assert keys == set(REFERENCED + OUTSIDE) | {f"trash/{key}" for key in ORPHANS}
    metadata = output_metadata(result)
    assert metadata["moved_to_trash"] == 2 and metadata["referenced"] == 2
    assert metadata["rows_changed"] == 2 and metadata["uploads_listed"] == 4
    assert metadata["bytes_moved"] == sum(len(_content(k)) for k in ORPHANS)


def test_dry_run_changes_nothing(uploads, database):
    before = _keys(uploads)
    result = _run(database, uploads, dry_run=True)
    assert result.success and _keys(uploads) == before
    metadata = output_metadata(result)
    assert (
        metadata["moved_to_trash"] == 2
        and metadata["rows_changed"] == 0
        and metadata["rows_matched"] == 2
    )


def test_second_run_changes_nothing(uploads, database):
    assert output_metadata(_run(database, uploads))["rows_changed"] == 2
    after = _keys(uploads)
    assert output_metadata(_run(database, uploads))["rows_changed"] == 0
    assert _keys(uploads) == after


def test_crash_between_copy_and_delete_loses_nothing(uploads, database, monkeypatch):
    store_class = type(uploads)
    real_delete = store_class.delete_many

    def killed(self, keys):
        raise RuntimeError("killed between copy and delete")

    monkeypatch.setattr(store_class, "delete_many", killed)
    assert not _run(database, uploads).success
    keys = set(_keys(uploads))
    assert (
        set(ORPHANS) <= keys and {f"trash/{k}" for k in ORPHANS} <= keys
    )  # copied, not yet deleted

    monkeypatch.setattr(store_class, "delete_many", real_delete)
    result = _run(database, uploads)
    assert result.success
    metadata = output_metadata(result)
    assert metadata["resumed_moves"] == 2 and metadata["moved_to_trash"] == 0
    assert not set(ORPHANS) & set(_keys(uploads))
    for key in ORPHANS:
        assert uploads.get_bytes(f"trash/{key}") == _content(key)


def test_concurrent_run_does_not_act(uploads, database):
    before = _keys(uploads)
    with database.job_lock("orphaned_file_cleanup"):
        result = _run(database, uploads)
    assert result.success and output_metadata(result)["rows_changed"] == 0
    assert _keys(uploads) == before


def test_bad_objects_are_skipped_and_counted(uploads, database, monkeypatch):
    if isinstance(uploads, LocalObjectStore):
        # An unreadable file: the copy fails for good.
        real_copy = LocalObjectStore.copy

        def unreadable(self, src, dst):
            if src == ORPHANS[0]:
                raise PermissionError(13, "Permission denied", src)
            return real_copy(self, src, dst)

        monkeypatch.setattr(LocalObjectStore, "copy", unreadable)
        expected_skipped = {ORPHANS[0]}
    else:
        # Keys S3 accepts but that cannot be files: a folder marker and an empty segment.
        for key in ("uploads/folder/", "uploads/a//b.png"):
            uploads.client.put_object(Bucket=uploads.bucket, Key=key, Body=b"")
        expected_skipped = {"uploads/folder/", "uploads/a//b.png"}
    result = _run(database, uploads)
    assert result.success
    metadata = output_metadata(result)
    assert metadata["skipped"] == len(expected_skipped)
    for key in expected_skipped:
        assert key in metadata["skipped_objects"]
        assert key in _keys(uploads)  # left where it was
    assert metadata["moved_to_trash"] == 2 - (1 if isinstance(uploads, LocalObjectStore) else 0)


def test_reference_check_is_one_query_per_page(store, engine):
    keys = [f"uploads/f{i:03d}.bin" for i in range(25)]
    for key in keys:
        store.put_bytes(key, b"x")
    with engine.begin() as connection:
        connection.execute(
            insert(schema.stored_files), [{"s3_key": key, "owner_id": 1} for key in keys[::2]]
        )
    statements = []

    def record(conn, cursor, statement, *args):
        if "stored_files" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        result = clean_orphaned_files(engine, store, utcnow() + timedelta(days=8), page_size=10)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert result.pages == 3 and result.reference_queries == 3 and len(statements) == 3
    assert result.moved == 12 and result.referenced == 13


def test_overlapping_prefixes_are_a_clear_error(tmp_path, engine):
    store = LocalObjectStore(
        root=str(tmp_path), uploads_prefix="uploads/", trash_prefix="uploads/trash/"
    )
    with pytest.raises(ValueError, match="overlap"):
        clean_orphaned_files(engine, store, utcnow())


def test_transient_store_faults_retry_the_step(uploads, database, monkeypatch):
    monkeypatch.setattr(files_job, "backoff_seconds", lambda *args, **kwargs: 0)
    store_class = type(uploads)
    real_list = store_class.list_pages
    calls = {"n": 0}

    def flaky(self, prefix, page_size=1000):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise TransientObjectStoreError("list uploads/ still failing: SlowDown")
        return real_list(self, prefix, page_size)

    monkeypatch.setattr(store_class, "list_pages", flaky)
    result = _run(database, uploads)
    assert result.success and output_metadata(result)["moved_to_trash"] == 2
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2


def test_prefixes_are_folders_so_u_does_not_match_user_exports(tmp_path, engine):
    store = LocalObjectStore(root=str(tmp_path / "store"), uploads_prefix="u", trash_prefix="trash")
    assert (store.uploads_prefix, store.trash_prefix) == ("u/", "trash/")
    store.put_bytes("user-exports/x.csv", b"export")
    store.put_bytes("u/orphan.png", b"orphan")
    result = clean_orphaned_files(engine, store, utcnow() + timedelta(days=8))
    assert result.moved == 1
    assert sorted(_keys(store)) == ["trash/u/orphan.png", "user-exports/x.csv"]


def test_objects_and_rows_no_rule_can_judge_are_left_alone_and_counted(
    uploads, database, engine, monkeypatch
):
    """A listing may hold objects whose age cannot be told (no last_modified, a time in the
    future); `stored_files` may hold rows with no key. Nothing fails, they are counted by
    kind and left as they are, and the other orphans still go to the trash."""
    now = utcnow()
    odd = [
        ObjectInfo("uploads/no-time.bin", None, 5),
        ObjectInfo("uploads/from-2999.bin", now.replace(year=2999), 5),
        ObjectInfo("trash/uploads/old-no-time.bin", None, 5),
    ]
    store_class = type(uploads)
    real_list = store_class.list_pages

    def with_odd_objects(self, prefix, page_size=1000):
        yield from real_list(self, prefix, page_size)
        yield [info for info in odd if info.key.startswith(prefix)]

    monkeypatch.setattr(store_class, "list_pages", with_odd_objects)
    with engine.begin() as connection:
        connection.execute(insert(schema.stored_files), [{"s3_key": "", "owner_id": 1}])
    for dry_run in (True, False):
        result = _run(database, uploads, dry_run=dry_run)
        assert result.success
        metadata = output_metadata(result)
        assert metadata["skipped_no_last_modified"] == 2
        assert metadata["skipped_modified_in_future"] == 1
        assert metadata["moved_to_trash"] == 2
        assert metadata["bad_rows"] == {"stored_files.no_s3_key": 1}
    with engine.connect() as connection:
        keys = connection.execute(select(schema.stored_files.c.s3_key)).scalars().all()
    assert "" in keys


def test_a_retried_run_reports_the_uploads_every_attempt_moved(uploads, database, monkeypatch):
    lose_the_lock_connection_once(monkeypatch)
    result = _run(database, uploads)
    assert result.success
    metadata = output_metadata(result)
    assert metadata["moved_to_trash"] == metadata["rows_changed"] == 2
    assert metadata["attempts"] == 2 and metadata["done_by_earlier_attempts"]["moved"] == 2
    assert not set(ORPHANS) & set(_keys(uploads))
