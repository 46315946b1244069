"""object_store: the same behaviour on the local folder and on S3 (moto server, boto3)."""

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ops_platform.resources import s3_object_store
from ops_platform.resources.object_store import (
    LocalObjectStore,
    ObjectStoreError,
    TransientObjectStoreError,
    build_object_store,
)
from ops_platform.settings import load_settings
from tests.s3_server import make_bucket, s3_store


def test_put_get_exists_copy_delete(store):
    uri = store.put_bytes("reports/a.md", b"# hello", "text/markdown")
    assert uri.endswith("reports/a.md")
    assert store.get_bytes("reports/a.md") == b"# hello"
    assert store.exists("reports/a.md") and not store.exists("reports/b.md")
    info = store.stat("reports/a.md")
    assert (
        info.size == 7
        and info.last_modified.tzinfo is not None
        and store.stat("reports/b.md") is None
    )
    store.copy("reports/a.md", "trash/reports/a.md")
    assert store.get_bytes("trash/reports/a.md") == b"# hello"
    assert store.delete_many(["reports/a.md", "trash/reports/a.md"]) == 2
    assert not store.exists("reports/a.md")
    with pytest.raises(ObjectStoreError, match="no object"):
        store.get_bytes("reports/a.md")


def test_listing_is_paginated_in_key_order(store):
    keys = [f"uploads/{i:03d}.bin" for i in range(25)] + ["other/x.bin", "uploads-not/y.bin"]
    for key in keys:
        store.put_bytes(key, b"x" * 3)
    pages = list(store.list_pages("uploads/", page_size=10))
    assert [len(page) for page in pages] == [10, 10, 5]
    listed = [info.key for page in pages for info in page]
    assert listed == sorted(k for k in keys if k.startswith("uploads/"))
    info = pages[0][0]
    assert info.size == 3
    assert info.last_modified.tzinfo is not None
    assert abs(info.last_modified - datetime.now(UTC)) < timedelta(minutes=5)
    assert len(list(store.list_objects("uploads/"))) == 25
    key, last_modified, size = next(store.list_objects("uploads/"))
    assert (key, size) == ("uploads/000.bin", 3)


def test_delete_many_goes_in_chunks(store, monkeypatch):
    # S3 takes at most 1,000 keys per DeleteObjects; a smaller chunk keeps the test quick.
    monkeypatch.setattr(s3_object_store, "S3_DELETE_BATCH", 10)
    keys = [f"bulk/{i:05d}" for i in range(25)]
    for key in keys:
        store.put_bytes(key, b"")
    requests = []
    if not isinstance(store, LocalObjectStore):
        real = store.client.delete_objects
        monkeypatch.setattr(
            store.client, "delete_objects", lambda **kw: requests.append(kw) or real(**kw)
        )
    assert store.delete_many(keys + ["bulk/missing"]) >= 25
    assert list(store.list_objects("bulk/")) == []
    if requests:
        assert [len(r["Delete"]["Objects"]) for r in requests] == [10, 10, 6]


def test_bad_keys_are_refused(store):
    for key in ["", "/abs", "a/../../etc/passwd", "a//b", "folder/"]:
        with pytest.raises(ObjectStoreError, match="invalid object key"):
            store.put_bytes(key, b"x")


def test_transient_s3_faults_are_retried_then_reported(s3_endpoint, monkeypatch):
    store = s3_store(s3_endpoint, make_bucket(s3_endpoint), retry_base_seconds=0.01)
    calls = {"n": 0}
    real = store.client.put_object

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] < 3:
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "slow down"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "PutObject",
            )
        return real(**kwargs)

    monkeypatch.setattr(store.client, "put_object", flaky)
    store.put_bytes("k", b"v")
    assert calls["n"] == 3 and store.get_bytes("k") == b"v"

    def down(**kwargs):
        raise EndpointConnectionError(endpoint_url=s3_endpoint)

    monkeypatch.setattr(store.client, "put_object", down)
    with pytest.raises(TransientObjectStoreError, match="still failing after 4 attempts"):
        store.put_bytes("k", b"v")


def test_permanent_errors_are_not_retried(s3_endpoint):
    store = s3_store(s3_endpoint, "no-such-bucket")
    with pytest.raises(ClientError, match="NoSuchBucket"):
        store.put_bytes("k", b"v")


def test_environment_picks_the_implementation(tmp_path):
    local = build_object_store(load_settings({"OPS_DATA_DIR": str(tmp_path)}))
    assert isinstance(local, LocalObjectStore)
    assert local.root == str(tmp_path / "object_store")
    s3 = build_object_store(
        load_settings(
            {
                "OPS_DATA_DIR": str(tmp_path),
                "OPS_S3_BUCKET": "b",
                "OPS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            }
        )
    )
    assert s3.bucket == "b" and s3.endpoint_url == "http://127.0.0.1:9"
    assert s3.uri("uploads/x") == "s3://b/uploads/x"


def test_usable_as_a_dagster_resource(store):
    import dagster as dg

    from ops_platform.resources.object_store import ObjectStore

    @dg.op
    def write(object_store: ObjectStore) -> str:
        return object_store.put_bytes("reports/r.md", b"report", "text/markdown")

    @dg.job
    def writer():
        write()

    result = writer.execute_in_process(resources={"object_store": store})
    assert result.success and store.get_bytes("reports/r.md") == b"report"
