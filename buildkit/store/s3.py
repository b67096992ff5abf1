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
them. The requests themselves, with their errors translated, are
`s3bucket.py`'s; the few plain objects beside the layout (upload sessions)
are reached through `put_new`, `list_objects`, `open_object` and friends.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

from buildkit.digest import Digest, DigestWriter
from buildkit.errors import BlobUnknown, DigestMismatch, StorageError
from buildkit.image import Descriptor
from buildkit.store import layout
from buildkit.store.base import OCTET_STREAM, BlobURLs, Store
from buildkit.store.layout import LayoutStore
from buildkit.store.s3bucket import MiB, Missing, S3Bucket, StoredObject

PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
MAX_COPY_SIZE = 5 << 30  # CopyObject's limit; past it, UploadPartCopy
COPY_PART_SIZE = 512 * MiB


class S3Store(LayoutStore):
    """`Store` over an S3 bucket, every key under `prefix`."""

    link_readers = 8  # one GetObject a link: read them side by side

    def __init__(self, bucket: str, prefix: str = "", *, client: Any, part_size: int = PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.s3 = S3Bucket(bucket, client)
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

    # ------------------------------------------------------------ primitives (LayoutStore)

    def _read(self, key: str) -> bytes | None:
        try:
            with self.s3.get(self.root + key) as body:
                return body.read()
        except Missing:
            return None

    def _write(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        self.s3.put(self.root + key, data, content_type)  # one PutObject: whole or nothing

    def _exists(self, key: str) -> bool:
        return self.s3.head(self.root + key) is not None

    def _is_dir(self, key: str) -> bool:
        prefix = f"{self.root}{key}/"
        response = self.s3.call(
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
        for objects, prefixes in self.s3.pages(prefix, "/"):
            files += [o["Key"][len(prefix) :] for o in objects]
            dirs += [p[len(prefix) :].rstrip("/") for p in prefixes]
        return files, dirs

    def _walk(self, key: str) -> list[str]:
        prefix = f"{self.root}{key}/"
        return [o["Key"][len(prefix) :] for objects, _ in self.s3.pages(prefix) for o in objects]

    def _delete(self, key: str, *, prune: bool = False) -> bool:  # no directories to prune
        if not self._exists(key):
            return False
        self.s3.delete(self.root + key)
        return True

    def _delete_tree(self, key: str) -> None:
        for name in self._walk(key):
            self.s3.delete(f"{self.root}{key}/{name}")

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.root}{key}"

    # ------------------------------------------------------------ blobs

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return self.s3.get(self.blob_key(digest))
        except Missing:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def blob_size(self, digest: Digest) -> int:
        head = self.s3.head(self.blob_key(digest))
        if head is None:
            raise BlobUnknown(f"blob unknown: {digest}")
        return int(head["ContentLength"])

    def put_blob(
        self, data: BinaryIO, expected: Digest | None = None, *, media_type: str = OCTET_STREAM
    ) -> Descriptor:
        if expected is not None:
            head = self.s3.head(self.blob_key(expected))
            if head is not None:
                return Descriptor(media_type, Digest(expected), int(head["ContentLength"]))
        hasher = DigestWriter()
        first = _read_full(data, self.part_size)
        hasher.update(first)
        if len(first) < self.part_size:  # the whole blob: hash it, then one PutObject
            digest = self._check(hasher.digest, expected)
            final = self.blob_key(digest)
            if expected is not None or self.s3.head(final) is None:
                self.s3.put(final, first)
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
            if self.s3.head(final) is None:
                self._copy(temp, final, hasher.size)
        finally:
            with contextlib.suppress(StorageError):  # else a lifecycle rule reclaims it
                self.s3.delete(temp)
        return Descriptor(media_type, digest, hasher.size)

    @staticmethod
    def _check(digest: Digest, expected: Digest | None) -> Digest:
        if expected is not None and digest != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        return digest

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
        with self.s3.multipart(key) as (upload_id, parts):
            chunk = first
            while chunk:
                number = len(parts) + 1
                response = self.s3.request(
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
            self.s3.request(
                "CopyObject",
                target,
                CopySource=copy_source,
                ContentType=OCTET_STREAM,
                MetadataDirective="REPLACE",
            )
            return
        with self.s3.multipart(target) as (upload_id, parts):
            for number, start in enumerate(range(0, size, self.copy_part_size), start=1):
                end = min(start + self.copy_part_size, size) - 1
                response = self.s3.request(
                    "UploadPartCopy",
                    target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})

    def blob_mtime(self, digest: Digest) -> float:
        head = self.s3.head(self.blob_key(digest))
        if head is None:
            raise BlobUnknown(f"blob unknown: {digest}")
        return float(head["LastModified"].timestamp())

    def delete_blob(self, digest: Digest) -> bool:
        key = self.blob_key(digest)
        if self.s3.head(key) is None:
            return False
        self.s3.delete(key)
        return True

    # ------------------------------------------------------------ scratch objects (upload sessions)

    def put_new(self, key: str, data: bytes) -> bool:
        """`S3Bucket.put_new` of `key` below the prefix: False if it was there."""
        return self.s3.put_new(self.root + key, data)

    def put_object(self, key: str, data: bytes) -> None:
        """Put `data` under `key` (below the prefix), whatever was there."""
        self.s3.put(self.root + key, data)

    def list_objects(self, prefix: str) -> list[StoredObject]:
        """Every object whose key (below the store's prefix) starts with `prefix`,
        in key order, named below the prefix."""
        start = len(self.root)
        return [replace(o, key=o.key[start:]) for o in self.s3.objects(self.root + prefix)]

    def open_object(self, key: str) -> BinaryIO:
        """A reader of the object `key` (below the prefix); `KeyError` if none."""
        try:
            return self.s3.get(self.root + key)
        except Missing:
            raise KeyError(key) from None

    def delete_object(self, key: str) -> None:
        """Remove `key` (below the prefix); a missing key is no error."""
        with contextlib.suppress(Missing):
            self.s3.delete(self.root + key)

    def put_blob_from_objects(self, digest: Digest, objects: list[StoredObject]) -> Descriptor:
        """The blob `digest` made server-side from `objects` (below the prefix), one
        after the other; the caller vouches that together they hash to `digest`
        (and that they do not change). Every object but the last must be at
        least `MIN_PART_SIZE` long (S3's rule for the parts of a multipart
        upload), and there may be 10,000. `KeyError` if one is gone: nothing is
        written then."""
        try:
            return self._assemble(digest, objects)
        except Missing as missing:
            raise KeyError(str(missing)) from None

    def _assemble(self, digest: Digest, objects: list[StoredObject]) -> Descriptor:
        size = sum(o.size for o in objects)
        if self.s3.head(self.blob_key(digest)) is not None:
            return Descriptor(OCTET_STREAM, digest, size)
        if len(objects) == 1:
            self._copy(self.root + objects[0].key, self.blob_key(digest), size)
            return Descriptor(OCTET_STREAM, digest, size)
        if len(objects) > MAX_PARTS or any(o.size < MIN_PART_SIZE for o in objects[:-1]):
            raise ValueError("objects too small or too many to be the parts of one upload")
        with self.s3.multipart(self.blob_key(digest)) as (upload_id, parts):
            for number, o in enumerate(objects, start=1):
                response = self.s3.request(
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
        return self.s3.call(
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
