"""The S3 (or S3-compatible) `object_store` backend.

`S3ObjectStore` goes through dagster-aws's `S3Resource` (bucket `OPS_S3_BUCKET`, endpoint
`OPS_S3_ENDPOINT_URL`), built with the first request: boto3 is not loaded by runs that never
touch the store. botocore's "standard" retry mode already retries throttling, 5xx
and connection errors with exponential backoff and jitter; on top of it every call gets a
few more attempts of our own (full jitter) so a longer S3 hiccup does not fail a run, and a
fault that outlasts them surfaces as `TransientObjectStoreError` for the op to turn into a
Dagster retry.
"""

import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import TYPE_CHECKING, TypeVar

from pydantic import Field, PrivateAttr

from ops_platform.lazy import lazy_module
from ops_platform.resources.object_store import (
    DEFAULT_PAGE_SIZE,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    TransientObjectStoreError,
    check_key,
    chunks,
)

if TYPE_CHECKING:
    import botocore.exceptions as boto_errors
    import dagster_aws.s3 as dagster_aws_s3
else:
    boto_errors = lazy_module("botocore.exceptions")
    dagster_aws_s3 = lazy_module("dagster_aws.s3")

T = TypeVar("T")

S3_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts

# Error codes S3 (and compatible stores) answer when the fault is on their side or
# momentary: worth another try.
TRANSIENT_S3_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "ServiceUnavailable",
    "InternalFailure",
}


def unresolvable_endpoint(error: BaseException) -> bool:
    """The endpoint's host name does not resolve: no retry fixes that, the setting must."""
    detail = f"{error} {getattr(error, 'kwargs', {}).get('error', '')} {error.__cause__ or ''}"
    return any(
        sign in detail.lower()
        for sign in ("name or service not known", "failed to resolve", "nodename nor servname")
    )


def _is_transient_s3_error(error: BaseException) -> bool:
    if unresolvable_endpoint(error):
        return False
    # Connection refused/reset/timed out, or a response cut off half way.
    if isinstance(
        error,
        (boto_errors.ConnectionError, boto_errors.HTTPClientError, boto_errors.IncompleteReadError),
    ):
        return True
    if isinstance(error, boto_errors.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_S3_CODES or status >= 500 or status == 429
    return isinstance(error, (ConnectionError, TimeoutError))


S3_CLIENT_FIELDS = {
    "endpoint_url",
    "region_name",
    "profile_name",
    "max_attempts",
    "connect_timeout_s",
    "read_timeout_s",
}
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _shared_client(client_config: dict):
    """One boto3 client per S3 configuration and process: building one loads botocore's
    service model (about half a second), and clients are thread-safe. Built here rather
    than by dagster-aws's `S3Resource.get_client`, which leaves botocore's 60 s connect and
    read timeouts: a silent S3 must fail a call in seconds, not minutes times every retry."""
    key = repr(sorted(client_config.items()))
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            settings = dict(client_config)
            config = Config(
                retries={"max_attempts": settings.pop("max_attempts", 5), "mode": "standard"},
                connect_timeout=settings.pop("connect_timeout_s"),
                read_timeout=settings.pop("read_timeout_s"),
                tcp_keepalive=True,
            )
            session = boto3.session.Session(profile_name=settings.pop("profile_name", None))
            _clients[key] = session.client("s3", config=config, **settings)
        return _clients[key]


class S3ObjectStore(ObjectStore):
    """Objects in an S3 (or S3-compatible) bucket, through dagster-aws's `S3Resource`."""

    bucket: str
    # The client's settings (those of dagster-aws's S3Resource). Credentials come from the
    # usual AWS chain (environment, profile, instance role), never from this config.
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint.")
    region_name: str | None = None
    profile_name: str | None = None
    max_attempts: int = Field(default=5, ge=1, description="botocore's own attempts per call.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Per connection attempt.")
    read_timeout_s: float = Field(default=30.0, gt=0, description="Per read of an answer.")
    retry_attempts: int = Field(
        default=4, ge=1, description="Our own attempts per call, on top of botocore's."
    )
    retry_base_seconds: float = Field(default=0.5, gt=0)
    retry_cap_seconds: float = Field(default=20.0, gt=0)

    _client: object = PrivateAttr(default=None)

    @property
    def client(self):
        if self._client is None:
            self._client = _shared_client(
                self.model_dump(include=S3_CLIENT_FIELDS, exclude_none=True)
            )
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _call(self, what: str, action: Callable[[], T]) -> T:
        """Run one S3 request; transient faults retried with exponential backoff + full jitter."""
        for attempt in range(self.retry_attempts):
            try:
                return action()
            except Exception as error:
                if unresolvable_endpoint(error):
                    raise ObjectStoreError(
                        "object store: the endpoint's host name does not resolve — check "
                        f"OPS_S3_ENDPOINT_URL (not retried): {' '.join(str(error).split())}"
                    ) from None
                if not _is_transient_s3_error(error):
                    raise
                if attempt + 1 == self.retry_attempts:
                    raise TransientObjectStoreError(
                        f"{what} on s3://{self.bucket} still failing after {self.retry_attempts} attempts: {error}"
                    ) from error
                time.sleep(
                    random.uniform(
                        0, min(self.retry_cap_seconds, self.retry_base_seconds * 2**attempt)
                    )
                )
        raise AssertionError("unreachable")

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        check_key(key)
        self._call(
            f"put {key}",
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            ),
        )
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        check_key(key)
        try:
            # Fetch and read in one attempt: a body cut off half way is fetched again.
            return self._call(
                f"get {key}",
                lambda: self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read(),
            )
        except boto_errors.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectStoreError(f"no object {key!r} in s3://{self.bucket}") from None
            raise

    def stat(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            head = self._call(
                f"head {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key)
            )
        except boto_errors.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(key, head["LastModified"].astimezone(UTC), head["ContentLength"])

    def list_pages(
        self, prefix: str, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[list[ObjectInfo]]:
        # ListObjectsV2 page by page (MaxKeys, ContinuationToken) — what boto3's paginator
        # does, but each page request goes through _call, so a throttled page is retried
        # from its own token instead of ending (or restarting) the listing.
        token = None
        while True:
            request = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
            if token:
                request["ContinuationToken"] = token
            page = self._call(
                f"list {prefix}", lambda request=request: self.client.list_objects_v2(**request)
            )
            objects = [
                ObjectInfo(item["Key"], item["LastModified"].astimezone(UTC), item["Size"])
                for item in page.get("Contents", [])
            ]
            if objects:
                yield objects
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def copy(self, src_key: str, dst_key: str) -> None:
        check_key(src_key)
        check_key(dst_key)
        self._call(
            f"copy {src_key}",
            lambda: self.client.copy_object(
                Bucket=self.bucket, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key}
            ),
        )

    def delete_many(self, keys: list[str]) -> int:
        deleted = 0
        for chunk in chunks(list(keys), S3_DELETE_BATCH):
            response = self._call(
                f"delete {len(chunk)} objects",
                lambda chunk=chunk: self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": False},
                ),
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise ObjectStoreError(
                    f"S3 refused to delete {len(errors)} of {len(chunk)} objects, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(response.get("Deleted", []))
        return deleted
