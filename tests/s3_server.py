"""A real S3 API for tests: moto in server mode on a free port, reached through boto3."""

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ops_platform.resources.object_store import LocalObjectStore
from ops_platform.resources.s3_object_store import S3ObjectStore

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
# The store takes its credentials from the AWS chain, as in production; moto accepts any.
os.environ.setdefault("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start moto on a free port (port 0); yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@functools.cache
def _admin_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


def make_bucket(endpoint: str) -> str:
    """A fresh bucket, so tests sharing one server never see each other's objects."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    _admin_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


def s3_store(endpoint: str, bucket: str, **fields) -> S3ObjectStore:
    return S3ObjectStore(
        bucket=bucket,
        endpoint_url=endpoint,
        region_name=REGION,
        max_attempts=3,
        **fields,
    )


# Fixtures shared by the object-store and file-job tests (imported by their modules).
@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The object store under test: the local folder, or S3 on the moto server."""
    if request.param == "local":
        return LocalObjectStore(root=str(tmp_path / "objects"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return s3_store(endpoint, make_bucket(endpoint))
