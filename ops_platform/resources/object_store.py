"""The `object_store` resource: S3 in production, a local folder by default.

Both implementations share one small interface (`ObjectStore`) so jobs and assets never
know which one they talk to:

- `put_bytes(key, data, content_type) -> uri`, `get_bytes(key)`, `exists(key)`, `stat(key)`
- `list_pages(prefix, page_size)` → pages (lists of at most `page_size`; ListObjectsV2
  MaxKeys + ContinuationToken on S3) of `ObjectInfo(key, last_modified aware UTC, size)`,
  in key order; `list_objects(prefix)` yields them one by one
- `copy(src_key, dst_key)` (the copy's `last_modified` is the copy time, as on S3)
- `delete_many(keys)` → number of keys deleted

`LocalObjectStore` keeps objects as files; `S3ObjectStore` (in `s3_object_store`) talks
to S3 or a compatible store.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator

from ops_platform.settings import s3_prefix

DEFAULT_PAGE_SIZE = 1000  # the most keys one ListObjectsV2 page returns


class ObjectStoreError(RuntimeError):
    """A request to the object store failed for good (bad key, missing object, denied…)."""


class TransientObjectStoreError(ObjectStoreError):
    """The store stayed unavailable through every retry; the run may try again later."""


class ObjectInfo(NamedTuple):
    """One listed object; unpacks as (key, last_modified, size)."""

    key: str
    last_modified: datetime  # aware UTC
    size: int


def check_key(key: str) -> str:
    """A key is a relative, '/'-separated path without '.'/'..' parts, empty segments or a
    trailing '/' (it maps to a file path in the local store)."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ObjectStoreError(f"invalid object key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ObjectStoreError(f"invalid object key {key!r}")
    return key


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ObjectStore(dg.ConfigurableResource):
    """Interface every object store implements; jobs annotate their parameter with it."""

    uploads_prefix: str = Field(
        default="uploads/", description="Where the app stores user uploads."
    )
    trash_prefix: str = Field(default="trash/", description="Where orphaned uploads are moved.")

    @field_validator("uploads_prefix", "trash_prefix")
    @classmethod
    def _folder_like(cls, value: str, info: ValidationInfo) -> str:
        # A prefix is a folder: `u` must not match `user-exports/x.csv`, whatever run config says.
        return s3_prefix(info.field_name, value)

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's info, or None if there is no such object."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def list_pages(
        self, prefix: str, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[list[ObjectInfo]]:
        raise NotImplementedError

    def copy(self, src_key: str, dst_key: str) -> None:
        raise NotImplementedError

    def delete_many(self, keys: list[str]) -> int:
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def list_objects(self, prefix: str, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, fetched page by page."""
        for page in self.list_pages(prefix, page_size):
            yield from page

    def describe(self) -> str:
        return self.uri("")


class LocalObjectStore(ObjectStore):
    """Objects as files under `root` (the embedded default; `OPS_OBJECT_STORE_DIR`)."""

    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root, *check_key(key).split("/"))

    def uri(self, key: str) -> str:
        return (
            Path(self.root, key).resolve().as_uri()
            if key
            else Path(self.root).resolve().as_uri() + "/"
        )

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        # Local files carry no content type; the key's extension says enough.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half an object.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectStoreError(f"no object {key!r} in {self.describe()}") from None

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            info = path.lstat()
        except FileNotFoundError:
            return None
        if not path.is_file() or path.is_symlink():
            return None
        return ObjectInfo(key, datetime.fromtimestamp(info.st_mtime, tz=UTC), info.st_size)

    def list_pages(
        self, prefix: str, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[list[ObjectInfo]]:
        root = Path(self.root)
        if not root.is_dir():
            return
        # Walk only the folder that holds the prefix, then filter by the full prefix.
        base_dir = prefix.rpartition("/")[0]
        start = root / base_dir if base_dir else root
        if not start.is_dir():
            return
        keys = []
        for directory, subdirs, files in os.walk(start):
            subdirs[:] = [d for d in subdirs if not Path(directory, d).is_symlink()]
            for name in files:
                if name.startswith(".tmp-"):
                    continue  # an unfinished put
                path = Path(directory, name)
                if path.is_symlink():
                    continue
                key = PurePosixPath(path.relative_to(root)).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        for chunk in chunks(keys, page_size):
            page = []
            for key in chunk:
                try:
                    stat = self._path(key).stat()
                except FileNotFoundError:
                    continue  # deleted since the walk
                modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
                page.append(ObjectInfo(key, modified, stat.st_size))
            if page:
                yield page

    def copy(self, src_key: str, dst_key: str) -> None:
        source = self._path(src_key)
        if not source.is_file():
            raise ObjectStoreError(f"cannot copy {src_key!r}: no such object in {self.describe()}")
        target = self._path(dst_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(descriptor)
        try:
            # copyfile, not copy2: like S3, the copy is "modified" now.
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def delete_many(self, keys: list[str]) -> int:
        deleted = 0
        for key in keys:
            try:
                self._path(key).unlink()
                deleted += 1
            except FileNotFoundError:
                pass  # already gone: deleting is idempotent, as on S3
        return deleted


def build_object_store(settings) -> ObjectStore:
    """S3 when `OPS_S3_BUCKET` is set, else the local folder (`OPS_OBJECT_STORE_DIR`)."""
    prefixes = {
        "uploads_prefix": settings.s3_uploads_prefix,
        "trash_prefix": settings.s3_trash_prefix,
    }
    if settings.s3_bucket:
        # Imported here: s3_object_store builds on this module's interface.
        from ops_platform.resources.s3_object_store import S3ObjectStore

        return S3ObjectStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            **prefixes,
        )
    return LocalObjectStore(root=str(settings.local_object_store_dir), **prefixes)
