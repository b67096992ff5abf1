"""One S3 bucket through boto3, in plain requests with the errors translated: a
missing key is `Missing` (each caller says what that means), any other failure
a `StorageError` naming the bucket and the key. Keys are whole bucket keys;
what they mean (the registry layout, upload sessions) is the callers' business
(`s3.py`, `api/registry/s3_uploads.py`).

Only plain S3 calls (no SigV4 streaming checksums, no batch DeleteObjects), so
S3-compatible servers (MinIO, Ceph RGW, R2) work as AWS does.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from buildkit.errors import StorageError
from buildkit.store.base import OCTET_STREAM

MiB = 1 << 20
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_TAKEN = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})

T = TypeVar("T")


class Missing(Exception):
    """A key that is not there."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    mtime: float
    etag: str = ""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _BodyReader(io.RawIOBase):
    """A GetObject body as a raw stream whose read errors are `StorageError`s."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except BotoCoreError as exc:
            raise StorageError(f"S3 read of {self._where} failed: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        try:
            return bytes(self._body.read())
        except BotoCoreError as exc:
            raise StorageError(f"S3 read of {self._where} failed: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Bucket:
    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client

    def call(
        self, operation: str, key: str, method: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run one S3 request: a missing key raises `Missing`, any other failure
        a `StorageError` naming the bucket and the key."""
        try:
            return method(*args, **kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _MISSING:
                raise Missing(key) from None
            message = exc.response.get("Error", {}).get("Message") or exc
            raise StorageError(
                f"S3 {operation} of s3://{self.name}/{key} failed: {code}: {message}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {operation} of s3://{self.name}/{key} failed: {exc}") from exc

    def request(self, operation: str, key: str, **params: Any) -> Any:
        """One request about the object `key`: the client's method for `operation`."""
        method = getattr(self.client, xform_name(operation))
        return self.call(operation, key, method, Bucket=self.name, Key=key, **params)

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.request("HeadObject", key)  # type: ignore[no-any-return]
        except Missing:
            return None

    def get(self, key: str) -> BinaryIO:
        """A reader of the object's body; `Missing` if there is none."""
        response = self.request("GetObject", key)
        raw = _BodyReader(response["Body"], f"s3://{self.name}/{key}")
        return io.BufferedReader(raw, buffer_size=MiB)

    def put(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        self.request("PutObject", key, Body=data, ContentType=content_type)

    def put_new(self, key: str, data: bytes) -> bool:
        """Put `data` under `key` unless an object is there already: a conditional
        PutObject (`If-None-Match: *`, honoured by AWS, MinIO and Ceph RGW), so
        of two writers of one key exactly one wins. False for the one that lost."""
        try:
            self.request("PutObject", key, Body=data, IfNoneMatch="*")
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _error_code(cause) in _TAKEN:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.request("DeleteObject", key)

    def pages(
        self, prefix: str, delimiter: str = ""
    ) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
        """Pages of (objects, common prefixes) under `prefix`; an object is
        ListObjectsV2's entry: Key, Size, LastModified, ETag."""
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages = iter(paginator.paginate(**kwargs))
        while True:
            try:
                page = self.call("ListObjectsV2", prefix, next, pages, None)
            except Missing:
                raise StorageError(f"S3 bucket {self.name!r} does not exist") from None
            if page is None:
                return
            yield (
                list(page.get("Contents", ())),
                [p["Prefix"] for p in page.get("CommonPrefixes", ())],
            )

    def objects(self, prefix: str) -> list[StoredObject]:
        """Every object whose key starts with `prefix`, in key order."""
        return [
            StoredObject(o["Key"], int(o["Size"]), o["LastModified"].timestamp(), o.get("ETag", ""))
            for objects, _ in self.pages(prefix)
            for o in objects
        ]

    @contextlib.contextmanager
    def multipart(self, key: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """A multipart upload to `key`: the body adds its parts to the list (ETag,
        PartNumber); the upload is completed when the body returns, aborted when
        it raises (nothing is left under `key`)."""
        created = self.request("CreateMultipartUpload", key, ContentType=OCTET_STREAM)
        upload_id = created["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            yield upload_id, parts
            self.request(
                "CompleteMultipartUpload", key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(StorageError, Missing):  # the first error matters
                self.request("AbortMultipartUpload", key, UploadId=upload_id)
            raise
