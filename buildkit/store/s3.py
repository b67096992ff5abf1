"""The content store in an S3 bucket (AWS S3, MinIO, Ceph RGW, R2), in the same
layout as the filesystem driver, so a stock `registry:2` with its S3 driver
(`rootdirectory` = the prefix) serves what Farm wrote:

    <prefix>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data
    <prefix>/docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    <prefix>/docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    <prefix>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    <prefix>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
    <prefix>/farm/<key>.json                     Farm's own records
    <prefix>/farm/.tmp/                          large blobs being written

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
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from buildkit.digest import Digest, DigestWriter, InvalidDigest
from buildkit.errors import BlobUnknown, DigestMismatch, ManifestUnknown, StorageError
from buildkit.image import Descriptor, detect_media_type
from buildkit.store.base import (
    OCTET_STREAM,
    BlobURLs,
    NameUnknown,
    Store,
    link_references,
    validate_key,
    validate_repository,
    validate_tag,
)

MiB = 1 << 20
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_COPY_SIZE = 5 << 30  # CopyObject's limit; past it, UploadPartCopy
COPY_PART_SIZE = 512 * MiB
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_LINK_READERS = 8

T = TypeVar("T")


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


class S3Store:
    """`Store` over an S3 bucket, every key under `prefix`."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any, part_size: int = PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.part_size = part_size
        self.max_copy_size = MAX_COPY_SIZE
        self.copy_part_size = COPY_PART_SIZE
        root = f"{self.prefix}/" if self.prefix else ""
        self.v2 = root + "docker/registry/v2/"
        self.records = root + "farm/"
        self.tmp = self.records + ".tmp/"

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, {self.prefix!r})"

    # ------------------------------------------------------------ keys

    def blob_key(self, digest: Digest) -> str:
        h = self._sha256(digest).hex
        return f"{self.v2}blobs/sha256/{h[:2]}/{h}/data"

    def _repo(self, repo: str) -> str:
        return f"{self.v2}repositories/{validate_repository(repo)}/"

    def _layer_link(self, repo: str, digest: Digest) -> str:
        return f"{self._repo(repo)}_layers/sha256/{self._sha256(digest).hex}/link"

    def _revision_link(self, repo: str, digest: Digest) -> str:
        return f"{self._repo(repo)}_manifests/revisions/sha256/{self._sha256(digest).hex}/link"

    def _tag_dir(self, repo: str, tag: str) -> str:
        return f"{self._repo(repo)}_manifests/tags/{validate_tag(tag)}/"

    def _record(self, key: str) -> str:
        return self.records + "/".join(validate_key(key)) + ".json"

    @staticmethod
    def _sha256(digest: Digest | str) -> Digest:
        digest = Digest(digest)
        if digest.algorithm != "sha256":
            raise InvalidDigest(
                f"unsupported digest algorithm in {digest!r}: only sha256 is stored"
            )
        return digest

    # ------------------------------------------------------------ S3 calls, errors translated

    def _call(
        self, operation: str, key: str, method: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run one S3 request: a missing key raises `_Missing`, any other failure
        a `StorageError` naming the bucket and the key."""
        try:
            return method(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING:
                raise _Missing(key) from None
            message = error.get("Message") or exc
            raise StorageError(
                f"S3 {operation} of s3://{self.bucket}/{key} failed: {code}: {message}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {operation} of s3://{self.bucket}/{key} failed: {exc}") from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._call(
                "HeadObject", key, self.client.head_object, Bucket=self.bucket, Key=key
            )
        except _Missing:
            return None

    def _exists(self, key: str) -> bool:
        return self._head(key) is not None

    def _get(self, key: str) -> bytes:
        """The object's bytes; `_Missing` if there is none."""
        response = self._call("GetObject", key, self.client.get_object, Bucket=self.bucket, Key=key)
        with _BodyReader(response["Body"], f"s3://{self.bucket}/{key}") as body:
            return body.read()

    def _put(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        self._call(
            "PutObject",
            key,
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
        )

    def _delete(self, key: str) -> None:
        self._call("DeleteObject", key, self.client.delete_object, Bucket=self.bucket, Key=key)

    def _list(self, prefix: str, delimiter: str = "") -> Iterator[tuple[list[str], list[str]]]:
        """Pages of (keys, common prefixes) under `prefix`."""
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
                [o["Key"] for o in page.get("Contents", ())],
                [p["Prefix"] for p in page.get("CommonPrefixes", ())],
            )

    def _keys(self, prefix: str) -> list[str]:
        return [key for keys, _ in self._list(prefix) for key in keys]

    def _children(self, prefix: str) -> tuple[list[str], list[str]]:
        """The names of the keys and of the "directories" directly under `prefix`."""
        files: list[str] = []
        dirs: list[str] = []
        for keys, prefixes in self._list(prefix, "/"):
            files += [k[len(prefix) :] for k in keys]
            dirs += [p[len(prefix) :].rstrip("/") for p in prefixes]
        return files, dirs

    def _any_under(self, prefix: str) -> bool:
        response = self._call(
            "ListObjectsV2",
            prefix,
            self.client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=prefix,
            MaxKeys=1,
        )
        return bool(response.get("Contents"))

    def _write_link(self, key: str, digest: Digest) -> None:
        self._put(key, digest.encode())

    def _read_link(self, key: str) -> Digest:
        text = self._get(key).decode("utf-8", "replace")  # _Missing is the caller's
        try:
            return Digest(text)
        except InvalidDigest as exc:
            raise StorageError(f"corrupt link s3://{self.bucket}/{key}: {exc}") from exc

    # ------------------------------------------------------------ blobs

    def has_blob(self, digest: Digest) -> bool:
        return self._exists(self.blob_key(digest))

    def open_blob(self, digest: Digest) -> BinaryIO:
        key = self.blob_key(digest)
        try:
            response = self._call(
                "GetObject", key, self.client.get_object, Bucket=self.bucket, Key=key
            )
        except _Missing:
            raise BlobUnknown(f"blob unknown: {digest}") from None
        raw = _BodyReader(response["Body"], f"s3://{self.bucket}/{key}")
        return io.BufferedReader(raw, buffer_size=MiB)

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
            if expected is not None or not self._exists(final):
                self._put(final, first)
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
            if not self._exists(final):
                self._copy(temp, final, hasher.size)
        finally:
            with contextlib.suppress(StorageError):  # else a lifecycle rule reclaims it
                self._delete(temp)
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
        parts; call `before_complete` (which may raise) before the object appears.
        Any failure aborts the upload: nothing is left under `key`."""
        created = self._call(
            "CreateMultipartUpload",
            key,
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=OCTET_STREAM,
        )
        upload_id = created["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            chunk = first
            while chunk:
                number = len(parts) + 1
                response = self._call(
                    "UploadPart",
                    key,
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
                chunk = _read_full(rest, self.part_size)
                hasher.update(chunk)
            before_complete()
            self._call(
                "CompleteMultipartUpload",
                key,
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(StorageError, _Missing):  # the first error matters
                self._call(
                    "AbortMultipartUpload",
                    key,
                    self.client.abort_multipart_upload,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                )
            raise

    def _copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy; a multipart copy past CopyObject's size limit."""
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= self.max_copy_size:
            self._call(
                "CopyObject",
                target,
                self.client.copy_object,
                Bucket=self.bucket,
                Key=target,
                CopySource=copy_source,
                ContentType=OCTET_STREAM,
                MetadataDirective="REPLACE",
            )
            return
        created = self._call(
            "CreateMultipartUpload",
            target,
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=target,
            ContentType=OCTET_STREAM,
        )
        upload_id = created["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, self.copy_part_size), start=1):
                end = min(start + self.copy_part_size, size) - 1
                response = self._call(
                    "UploadPartCopy",
                    target,
                    self.client.upload_part_copy,
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})
            self._call(
                "CompleteMultipartUpload",
                target,
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(StorageError, _Missing):
                self._call(
                    "AbortMultipartUpload",
                    target,
                    self.client.abort_multipart_upload,
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                )
            raise

    def list_blobs(self) -> list[Digest]:
        top = f"{self.v2}blobs/sha256/"
        found = []
        for key in self._keys(top):
            parts = key[len(top) :].split("/")
            if len(parts) == 3 and parts[2] == "data" and parts[1].startswith(parts[0]):
                try:
                    found.append(Digest.from_hex(parts[1]))
                except InvalidDigest:
                    continue
        return sorted(found)

    def blob_mtime(self, digest: Digest) -> float:
        head = self._head(self.blob_key(digest))
        if head is None:
            raise BlobUnknown(f"blob unknown: {digest}")
        return float(head["LastModified"].timestamp())

    def delete_blob(self, digest: Digest) -> bool:
        key = self.blob_key(digest)
        if not self._exists(key):
            return False
        self._delete(key)
        return True

    # ------------------------------------------------------------ repositories

    def link_blob(self, repo: str, digest: Digest) -> None:
        link = self._layer_link(repo, digest)
        if not self.has_blob(digest):
            raise BlobUnknown(f"blob unknown: {digest}")
        self._write_link(link, Digest(digest))

    def blob_linked(self, repo: str, digest: Digest) -> bool:
        return self._exists(self._layer_link(repo, digest)) and self.has_blob(digest)

    def put_manifest(self, repo: str, data: bytes, media_type: str) -> Descriptor:
        validate_repository(repo)
        link_references(self, repo, data, media_type)  # refuses bad JSON, dangling references
        desc = self.put_blob(io.BytesIO(data), media_type=media_type)
        self._write_link(self._revision_link(repo, desc.digest), desc.digest)
        return desc

    def link_manifest(self, repo: str, desc: Descriptor, tag: str | None = None) -> None:
        revision = self._revision_link(repo, desc.digest)
        tag_dir = self._tag_dir(repo, tag) if tag is not None else None
        try:
            data = self._get(self.blob_key(desc.digest))
        except _Missing:
            raise ManifestUnknown(f"manifest unknown: {desc.digest} is not stored") from None
        link_references(self, repo, data, desc.media_type)
        self._write_link(revision, desc.digest)
        if tag_dir is not None:
            self._write_link(f"{tag_dir}index/sha256/{desc.digest.hex}/link", desc.digest)
            self._write_link(f"{tag_dir}current/link", desc.digest)

    def _need_repo(self, repo: str) -> str:
        prefix = self._repo(repo)
        if not self._any_under(prefix):
            raise NameUnknown(f"repository name not known to registry: {repo}")
        return prefix

    def resolve(self, repo: str, ref: str) -> Descriptor:
        prefix = self._repo(repo)
        try:
            if ":" in ref:
                digest = self._sha256(ref)
                self._read_link(self._revision_link(repo, digest))
            else:
                digest = self._read_link(f"{self._tag_dir(repo, ref)}current/link")
            data = self._get(self.blob_key(digest))
        except _Missing:
            if not self._any_under(prefix):
                raise NameUnknown(f"repository name not known to registry: {repo}") from None
            raise ManifestUnknown(f"manifest unknown: {repo}:{ref}") from None
        return Descriptor(detect_media_type(data), digest, len(data))

    def tags(self, repo: str) -> list[str]:
        tags_dir = f"{self._need_repo(repo)}_manifests/tags/"
        found = set()
        for key in self._keys(tags_dir):
            tag, _, rest = key[len(tags_dir) :].partition("/")
            if rest == "current/link":
                found.add(tag)
        return sorted(found)

    def _linked(self, repo: str, parts: str) -> list[Digest]:
        top = f"{self._need_repo(repo)}{parts}/sha256/"
        _, names = self._children(top)

        def read(name: str) -> Digest | None:
            try:
                return self._read_link(f"{top}{name}/link")
            except (_Missing, StorageError):
                return None

        with ThreadPoolExecutor(_LINK_READERS) as pool:
            return sorted(d for d in pool.map(read, names) if d is not None)

    def revisions(self, repo: str) -> list[Digest]:
        return self._linked(repo, "_manifests/revisions")

    def linked_blobs(self, repo: str) -> list[Digest]:
        return self._linked(repo, "_layers")

    def repositories(self) -> list[str]:
        top = f"{self.v2}repositories/"
        found = []
        pending = [""]
        while pending:
            path = pending.pop()
            _, dirs = self._children(top + path)
            if "_manifests" in dirs and path:
                found.append(path.rstrip("/"))
            pending += [f"{path}{d}/" for d in dirs if not d.startswith("_")]
        return sorted(found)

    def delete_tag(self, repo: str, tag: str) -> None:
        tag_dir = self._tag_dir(repo, tag)
        if not self._exists(f"{tag_dir}current/link"):
            raise ManifestUnknown(f"manifest unknown: {repo}:{tag}")
        self._delete(f"{tag_dir}current/link")  # the tag is gone from here on
        for key in self._keys(tag_dir):
            self._delete(key)

    def delete_manifest(self, repo: str, digest: Digest) -> list[str]:
        revision = self._revision_link(repo, digest)
        if not self._exists(revision):
            self._need_repo(repo)
            raise ManifestUnknown(f"manifest unknown: {repo}@{digest}")
        removed = []
        for tag in self.tags(repo):  # tags first: no tag ever names a missing revision
            with contextlib.suppress(_Missing, StorageError, ManifestUnknown):
                if self._read_link(f"{self._tag_dir(repo, tag)}current/link") == digest:
                    self.delete_tag(repo, tag)
                    removed.append(tag)
        self._delete(revision)
        return removed

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        link = self._layer_link(repo, digest)
        if not self._exists(link):
            return False
        self._delete(link)
        return True

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

    # ------------------------------------------------------------ Farm's records

    def get_json(self, key: str) -> Any | None:
        try:
            return json.loads(self._get(self._record(key)))
        except _Missing:
            return None

    def put_json(self, key: str, value: Any) -> None:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._put(self._record(key), data.encode(), "application/json")

    def list_json(self, prefix: str) -> list[str]:
        directory = self.records + "/".join(validate_key(prefix)) + "/"
        names, _ = self._children(directory)
        return sorted(f"{prefix}/{n[:-5]}" for n in names if n.endswith(".json") and n[0] != ".")

    def delete_json(self, key: str) -> bool:
        path = self._record(key)
        if not self._exists(path):
            return False
        self._delete(path)
        return True


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
