"""The content store in an S3 bucket (AWS S3, MinIO, Ceph RGW, R2), in CNCF
Distribution's layout (`layout.py`) under the prefix, as the filesystem driver
keeps it, so a stock `registry:2` with its S3 driver (`rootdirectory` = the
prefix) serves what Farm wrote. Large blobs being written go under
`<prefix>/farm/.tmp/`.

A PutObject, a completed multipart upload and a CopyObject each become visible
whole or not at all, which is what keeps "nothing half written is reachable":

- a blob smaller than the part size is read into memory, hashed, and put under
  its final key in one request;
- a larger one is hashed while it is uploaded in parts: with an `expected`
  digest, straight to its final key, completed only if the digest matches
  (aborted otherwise); without one, to a temporary key under `farm/.tmp/`,
  then copied server-side to its final key and the temporary key deleted
  (a multipart copy past the 5 GiB limit of CopyObject).

A writer killed mid-upload leaves an incomplete multipart upload or a key
under `farm/.tmp/`, never anything a reader sees; a bucket lifecycle rule
(AbortIncompleteMultipartUpload, and expiry of `<prefix>/farm/.tmp/`) reclaims
them. Only plain S3 calls are used (no SigV4 streaming checksums, no batch
DeleteObjects), so S3-compatible servers work as AWS does.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from buildkit.digest import Digest, DigestWriter
from buildkit.errors import BlobUnknown, DigestMismatch, StorageError
from buildkit.image import Descriptor
from buildkit.store import layout
from buildkit.store.base import OCTET_STREAM, BlobURLs, Store
from buildkit.store.layout import LayoutStore

MiB = 1 << 20
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
MAX_COPY_SIZE = 5 << 30  # CopyObject's limit; past it, UploadPartCopy
COPY_PART_SIZE = 512 * MiB
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_TAKEN = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})

T = TypeVar("T")


@dataclass(frozen=True)
class StoredObject:
    key: str  # below the store's prefix
    size: int
    mtime: float
    etag: str = ""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Missing(Exception):
    """A key that is not there (internal: each caller says what that means)."""


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


class S3Store(LayoutStore):
    """`Store` over an S3 bucket, every key under `prefix`."""

    link_readers = 8  # one GetObject a link: read them side by side

    def __init__(self, bucket: str, prefix: str = "", *, client: Any, part_size: int = PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.part_size = part_size
        self.max_copy_size = MAX_COPY_SIZE
        self.copy_part_size = COPY_PART_SIZE
        self.root = f"{self.prefix}/" if self.prefix else ""
        self.v2 = f"{self.root}{layout.V2}/"
        self.records = f"{self.root}{layout.RECORDS}/"
        self.tmp = f"{self.root}{layout.TMP}/"

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, {self.prefix!r})"

    def blob_key(self, digest: Digest) -> str:
        return self.root + layout.blob_data(digest)

    # ------------------------------------------------------------ S3 calls, errors translated

    def _call(
        self, operation: str, key: str, method: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run one S3 request: a missing key raises `_Missing`, any other failure
        a `StorageError` naming the bucket and the key."""
        try:
            return method(*args, **kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _MISSING:
                raise _Missing(key) from None
            message = exc.response.get("Error", {}).get("Message") or exc
            raise StorageError(
                f"S3 {operation} of s3://{self.bucket}/{key} failed: {code}: {message}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {operation} of s3://{self.bucket}/{key} failed: {exc}") from exc

    def _object(self, operation: str, key: str, **params: Any) -> Any:
        """One request about the object `key`: the client's method for `operation`."""
        method = getattr(self.client, xform_name(operation))
        return self._call(operation, key, method, Bucket=self.bucket, Key=key, **params)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._object("HeadObject", key)
        except _Missing:
            return None

    def _get_object(self, key: str) -> BinaryIO:
        """A reader of the object's body; `_Missing` if there is none."""
        response = self._object("GetObject", key)
        raw = _BodyReader(response["Body"], f"s3://{self.bucket}/{key}")
        return io.BufferedReader(raw, buffer_size=MiB)

    def _put_object(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        self._object("PutObject", key, Body=data, ContentType=content_type)

    def _delete_object(self, key: str) -> None:
        self._object("DeleteObject", key)

    def _list(
        self, prefix: str, delimiter: str = ""
    ) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
        """Pages of (objects, common prefixes) under `prefix`; an object is
        ListObjectsV2's entry: Key, Size, LastModified."""
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages = iter(paginator.paginate(**kwargs))
        while True:
            try:
                page = self._call("ListObjectsV2", prefix, next, pages, None)
            except _Missing:
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from None
            if page is None:
                return
            yield (
                list(page.get("Contents", ())),
                [p["Prefix"] for p in page.get("CommonPrefixes", ())],
            )

    # ------------------------------------------------------------ primitives (LayoutStore)

    def _read(self, key: str) -> bytes | None:
        try:
            with self._get_object(self.root + key) as body:
                return body.read()
        except _Missing:
            return None

    def _write(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        self._put_object(self.root + key, data, content_type)  # one PutObject: whole or nothing

    def _exists(self, key: str) -> bool:
        return self._head(self.root + key) is not None

    def _is_dir(self, key: str) -> bool:
        prefix = f"{self.root}{key}/"
        response = self._call(
            "ListObjectsV2",
            prefix,
            self.client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=prefix,
            MaxKeys=1,
        )
        return bool(response.get("Contents"))

    def _children(self, key: str) -> tuple[list[str], list[str]]:
        prefix = f"{self.root}{key}/"
        files: list[str] = []
        dirs: list[str] = []
        for objects, prefixes in self._list(prefix, "/"):
            files += [o["Key"][len(prefix) :] for o in objects]
            dirs += [p[len(prefix) :].rstrip("/") for p in prefixes]
        return files, dirs

    def _walk(self, key: str) -> list[str]:
        prefix = f"{self.root}{key}/"
        return [o["Key"][len(prefix) :] for objects, _ in self._list(prefix) for o in objects]

    def _delete(self, key: str, *, prune: bool = False) -> bool:  # no directories to prune
        if not self._exists(key):
            return False
        self._delete_object(self.root + key)
        return True

    def _delete_tree(self, key: str) -> None:
        for name in self._walk(key):
            self._delete_object(f"{self.root}{key}/{name}")

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.root}{key}"

    # ------------------------------------------------------------ blobs

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return self._get_object(self.blob_key(digest))
        except _Missing:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def blob_size(self, digest: Digest) -> int:
        head = self._head(self.blob_key(digest))
        if head is None:
            raise BlobUnknown(f"blob unknown: {digest}")
        return int(head["ContentLength"])

    def put_blob(
        self, data: BinaryIO, expected: Digest | None = None, *, media_type: str = OCTET_STREAM
    ) -> Descriptor:
        if expected is not None:
            head = self._head(self.blob_key(expected))
            if head is not None:
                return Descriptor(media_type, Digest(expected), int(head["ContentLength"]))
        hasher = DigestWriter()
        first = _read_full(data, self.part_size)
        hasher.update(first)
        if len(first) < self.part_size:  # the whole blob: hash it, then one PutObject
            digest = self._check(hasher.digest, expected)
            final = self.blob_key(digest)
            if expected is not None or self._head(final) is None:
                self._put_object(final, first)
            return Descriptor(media_type, digest, hasher.size)
        if expected is not None:  # upload straight to the final key, complete if it matches
            self._multipart_upload(
                self.blob_key(expected),
                first,
                data,
                hasher,
                lambda: self._check(hasher.digest, expected),
            )
            return Descriptor(media_type, Digest(expected), hasher.size)
        temp = f"{self.tmp}{uuid.uuid4().hex}"
        self._multipart_upload(temp, first, data, hasher, lambda: None)
        try:
            digest = hasher.digest
            final = self.blob_key(digest)
            if self._head(final) is None:
                self._copy(temp, final, hasher.size)
        finally:
            with contextlib.suppress(StorageError):  # else a lifecycle rule reclaims it
                self._delete_object(temp)
        return Descriptor(media_type, digest, hasher.size)

    @staticmethod
    def _check(digest: Digest, expected: Digest | None) -> Digest:
        if expected is not None and digest != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        return digest

    @contextlib.contextmanager
    def _multipart(self, key: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """A multipart upload to `key`: the body adds its parts to the list (ETag,
        PartNumber); the upload is completed when the body returns, aborted when
        it raises (nothing is left under `key`)."""
        created = self._object("CreateMultipartUpload", key, ContentType=OCTET_STREAM)
        upload_id = created["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            yield upload_id, parts
            self._object(
                "CompleteMultipartUpload", key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(StorageError, _Missing):  # the first error matters
                self._object("AbortMultipartUpload", key, UploadId=upload_id)
            raise

    def _multipart_upload(
        self,
        key: str,
        first: bytes,
        rest: BinaryIO,
        hasher: DigestWriter,
        before_complete: Callable[[], object],
    ) -> None:
        """Upload `first` then the rest of the stream (hashed into `hasher`) in
        parts; call `before_complete` (which may raise) before the object appears."""
        with self._multipart(key) as (upload_id, parts):
            chunk = first
            while chunk:
                number = len(parts) + 1
                response = self._object(
                    "UploadPart", key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
                chunk = _read_full(rest, self.part_size)
                hasher.update(chunk)
            before_complete()

    def _copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy; a multipart copy past CopyObject's size limit."""
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= self.max_copy_size:
            self._object(
                "CopyObject",
                target,
                CopySource=copy_source,
                ContentType=OCTET_STREAM,
                MetadataDirective="REPLACE",
            )
            return
        with self._multipart(target) as (upload_id, parts):
            for number, start in enumerate(range(0, size, self.copy_part_size), start=1):
                end = min(start + self.copy_part_size, size) - 1
                response = self._object(
                    "UploadPartCopy",
                    target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})

    def blob_mtime(self, digest: Digest) -> float:
        head = self._head(self.blob_key(digest))
        if head is None:
            raise BlobUnknown(f"blob unknown: {digest}")
        return float(head["LastModified"].timestamp())

    def delete_blob(self, digest: Digest) -> bool:
        key = self.blob_key(digest)
        if self._head(key) is None:
            return False
        self._delete_object(key)
        return True

    # ------------------------------------------------------------ scratch objects (upload sessions)

    def put_new(self, key: str, data: bytes) -> bool:
        """Put `data` under `key` (below the prefix) unless an object is there
        already: a conditional PutObject (`If-None-Match: *`, honoured by AWS,
        MinIO and Ceph RGW), so of two writers of one key exactly one wins.
        False for the one that lost."""
        try:
            self._object("PutObject", self.root + key, Body=data, IfNoneMatch="*")
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _error_code(cause) in _TAKEN:
                return False
            raise
        return True

    def put_object(self, key: str, data: bytes) -> None:
        """Put `data` under `key` (below the prefix), whatever was there."""
        self._put_object(self.root + key, data)

    def list_objects(self, prefix: str) -> list[StoredObject]:
        """Every object whose key (below the store's prefix) starts with `prefix`,
        in key order."""
        start = len(self.root)
        return [
            StoredObject(
                o["Key"][start:], int(o["Size"]), o["LastModified"].timestamp(), o.get("ETag", "")
            )
            for objects, _ in self._list(self.root + prefix)
            for o in objects
        ]

    def open_object(self, key: str) -> BinaryIO:
        """A reader of the object `key` (below the prefix); `KeyError` if none."""
        try:
            return self._get_object(self.root + key)
        except _Missing:
            raise KeyError(key) from None

    def delete_object(self, key: str) -> None:
        """Remove `key` (below the prefix); a missing key is no error."""
        with contextlib.suppress(_Missing):
            self._delete_object(self.root + key)

    def put_blob_from_objects(self, digest: Digest, objects: list[StoredObject]) -> Descriptor:
        """The blob `digest` made server-side from `objects` (below the prefix), one
        after the other; the caller vouches that together they hash to `digest`
        (and that they do not change). Every object but the last must be at
        least `MIN_PART_SIZE` long (S3's rule for the parts of a multipart
        upload), and there may be 10,000. `KeyError` if one is gone: nothing is
        written then."""
        try:
            return self._assemble(digest, objects)
        except _Missing as missing:
            raise KeyError(str(missing)) from None

    def _assemble(self, digest: Digest, objects: list[StoredObject]) -> Descriptor:
        size = sum(o.size for o in objects)
        if self._head(self.blob_key(digest)) is not None:
            return Descriptor(OCTET_STREAM, digest, size)
        if len(objects) == 1:
            self._copy(self.root + objects[0].key, self.blob_key(digest), size)
            return Descriptor(OCTET_STREAM, digest, size)
        if len(objects) > MAX_PARTS or any(o.size < MIN_PART_SIZE for o in objects[:-1]):
            raise ValueError("objects too small or too many to be the parts of one upload")
        with self._multipart(self.blob_key(digest)) as (upload_id, parts):
            for number, o in enumerate(objects, start=1):
                response = self._object(
                    "UploadPartCopy",
                    self.blob_key(digest),
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": self.root + o.key},
                )
                parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})
        return Descriptor(OCTET_STREAM, digest, size)

    # ------------------------------------------------------------ presigned URLs (BlobURLs)

    def blob_url(self, digest: Digest, expires_in: int) -> str:
        """A presigned GET of the blob, valid for `expires_in` seconds (signed
        locally: the blob is not checked)."""
        key = self.blob_key(digest)
        return self._call(
            "presigning GetObject",
            key,
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=expires_in,
        )


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes: fewer only at the end of the stream."""
    chunks = []
    wanted = size
    while wanted > 0:
        chunk = stream.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


if TYPE_CHECKING:  # mypy checks that the driver keeps the interfaces
    _store: Store = S3Store("bucket", client=None)
    _urls: BlobURLs = S3Store("bucket", client=None)
