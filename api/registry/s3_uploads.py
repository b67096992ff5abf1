"""Blob upload sessions in the store's bucket, so API processes on any number of
hosts share them with nothing but S3 (the filesystem sessions of `uploads.py`
need one directory all processes see).

A session is a few objects under the store's prefix,

    farm/uploads/<uuid>/meta.json               {"repo": ..., "started": <epoch seconds>}
    farm/uploads/<uuid>/data/<offset:020d>      the bytes from <offset> on, a segment each
    farm/uploads/<uuid>/digest/<size:020d>      "sha256:...", of the first <size> bytes

and its size is where its contiguous run of segments ends. A chunk is cut into
segments of at most `segment_size` bytes (held in memory while they fill); each
is a conditional PutObject (`If-None-Match: *`) named by its offset, so of two
requests appending at the same offset one wins and the other is told the
session is busy. Nothing is kept in memory between requests. A request that
writes a session from its first byte hashes what it writes and leaves the
digest beside the segments (`digest/<size:020d>`); when the session is
committed at that size, the digest is checked against that record and the
blob is assembled from the segments server-side (UploadPartCopy), so the bytes
cross the network once, as with one-request uploads (what skopeo, docker and
Farm itself send). Sessions written in several requests are read again at
commit, in order, and the store hashes them while it copies, keeping nothing
on a mismatch.

Objects under `farm/uploads/` are never part of the registry layout, so a stock
`registry:2` reading the bucket ignores them; a session left behind by a killed
process is removed by the next purge (or by a bucket lifecycle rule expiring
`<prefix>/farm/uploads/`).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from api.registry.uploads import (
    _ID_RE,
    PURGE_INTERVAL,
    ChunkWriter,
    RangeMismatch,
    Upload,
    UploadBusy,
    UploadStore,
    UploadUnknown,
    commit_stream,
)
from buildkit.digest import Digest, DigestWriter
from buildkit.errors import DigestMismatch
from buildkit.image import Descriptor
from buildkit.store.base import Store
from buildkit.store.s3 import MAX_PARTS, MIN_PART_SIZE, S3Store, StoredObject

SEGMENT_SIZE = 8 << 20
SESSIONS = "farm/uploads/"


def _segment_offset(key: str) -> int | None:
    name = key.rpartition("/")[2]
    return int(name) if name.isdigit() else None


def _copyable(segments: list[StoredObject]) -> bool:
    """Whether S3 can make one object of the segments (parts of at least 5 MiB
    but the last, at most 10,000 of them)."""
    return len(segments) <= MAX_PARTS and all(s.size >= MIN_PART_SIZE for s in segments[:-1])


def _contiguous(segments: list[StoredObject]) -> list[StoredObject]:
    """The run of segments from offset 0 with no gap (keys sort by offset)."""
    run = []
    end = 0
    for segment in segments:
        if _segment_offset(segment.key) != end:
            break
        run.append(segment)
        end += segment.size
    return run


class _SegmentReader(io.RawIOBase):
    """The segments, one after the other, as one stream (one GetObject each,
    opened when the one before is done)."""

    def __init__(self, store: S3Store, segments: list[StoredObject]) -> None:
        self._store = store
        self._pending = iter(segments)
        self._current: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._current is None:
                segment = next(self._pending, None)
                if segment is None:
                    return 0
                try:
                    self._current = self._store.open_object(segment.key)
                except KeyError:
                    raise UploadUnknown("the upload ended while it was being committed") from None
            data = self._current.read(len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


class _SegmentWriter:
    def __init__(self, store: S3Store, session: str, offset: int, segment_size: int) -> None:
        self._store = store
        self._session = session
        self._segment_size = segment_size
        self._next = offset  # where the next segment starts
        self._buffer = bytearray()
        self._written: list[str] = []
        self._hash = DigestWriter() if offset == 0 else None  # of the session from its start
        self._failed = False
        self.written = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.written += len(data)
        if self._hash is not None:
            self._hash.update(data)
        while len(self._buffer) >= self._segment_size:
            self._flush(self._segment_size)

    def _flush(self, size: int) -> None:
        key = f"{self._session}data/{self._next:020d}"
        if not self._store.put_new(key, bytes(self._buffer[:size])):
            self._failed = True
            raise UploadBusy("another request is writing to this upload")
        self._written.append(key)
        self._next += size
        del self._buffer[:size]

    def rollback(self) -> None:
        for key in reversed(self._written):
            self._store.delete_object(key)
        self._next -= self.written - len(self._buffer)
        self._written.clear()
        self._buffer.clear()
        self._hash = None
        self.written = 0

    def close(self) -> None:
        if self._failed:
            return
        if self._buffer:
            self._flush(len(self._buffer))
        if self._hash is not None and self.written:
            record = f"{self._session}digest/{self._next:020d}"
            self._store.put_new(record, str(self._hash.digest).encode())
            self._hash = None


class S3Uploads:
    """`UploadStore` in the bucket of an `S3Store` (see the module docstring)."""

    def __init__(
        self, store: S3Store, max_age: float = 24 * 3600, *, segment_size: int = SEGMENT_SIZE
    ) -> None:
        self.store = store
        self.max_age = max_age
        self.segment_size = segment_size
        self._last_purge = 0.0
        self._meta: dict[str, tuple[str, float]] = {}  # id -> (repo, started): never changes

    def _prefix(self, upload_id: str) -> str:
        if not _ID_RE.match(upload_id):
            raise UploadUnknown(f"blob upload unknown: {upload_id!r}")
        return f"{SESSIONS}{upload_id}/"

    def _session(self, repo: str, upload_id: str) -> tuple[Upload, list[StoredObject], bool]:
        """The session, its contiguous segments, and whether a digest of them all
        was recorded: from one listing (plus one read of its meta the first
        time this process sees it)."""
        prefix = self._prefix(upload_id)
        objects = self.store.list_objects(prefix)
        if not any(o.key == f"{prefix}meta.json" for o in objects):
            self._meta.pop(upload_id, None)
            raise UploadUnknown(f"blob upload unknown: {upload_id}")
        if upload_id not in self._meta:
            try:
                with self.store.open_object(f"{prefix}meta.json") as f:
                    meta = json.loads(f.read())
            except (KeyError, ValueError):
                raise UploadUnknown(f"blob upload unknown: {upload_id}") from None
            self._meta[upload_id] = (str(meta.get("repo")), float(meta.get("started", 0)))
        owner, started = self._meta[upload_id]
        if owner != repo:
            raise UploadUnknown(f"blob upload unknown: {upload_id} (not of {repo})")
        segments = _contiguous([o for o in objects if o.key.startswith(f"{prefix}data/")])
        size = sum(s.size for s in segments)
        recorded = any(o.key == f"{prefix}digest/{size:020d}" for o in objects)
        return Upload(upload_id, repo, size, started), segments, recorded and size > 0

    def create(self, repo: str) -> Upload:
        if time.time() - self._last_purge > PURGE_INTERVAL:
            self.purge()
        upload_id = str(uuid.uuid4())
        started = time.time()
        meta = json.dumps({"repo": repo, "started": started}).encode()
        if not self.store.put_new(f"{self._prefix(upload_id)}meta.json", meta):
            raise UploadBusy(f"upload {upload_id} exists already")  # a uuid4 collision
        self._meta[upload_id] = (repo, started)
        return Upload(upload_id, repo, 0, started)

    def get(self, repo: str, upload_id: str) -> Upload:
        return self._session(repo, upload_id)[0]

    def writer(self, repo: str, upload_id: str, start: int | None = None) -> ChunkWriter:
        upload = self.get(repo, upload_id)
        if start is not None and start != upload.size:
            raise RangeMismatch(upload.size)
        return _SegmentWriter(self.store, self._prefix(upload_id), upload.size, self.segment_size)

    def commit(self, repo: str, upload_id: str, store: Store, digest: Digest) -> Descriptor:
        upload, segments, recorded = self._session(repo, upload_id)
        try:
            if recorded and store is self.store and _copyable(segments):
                desc = self._assemble(upload, segments, digest)
            else:
                with _SegmentReader(self.store, segments) as raw:
                    desc = commit_stream(io.BufferedReader(raw, 1 << 20), store, digest)
        except DigestMismatch:
            self.cancel(repo, upload_id)
            raise
        self.cancel(repo, upload_id)
        return desc

    def _assemble(self, upload: Upload, segments: list[StoredObject], digest: Digest) -> Descriptor:
        """The blob from the segments, server-side, after checking the digest that
        the request which wrote them all recorded."""
        record = f"{self._prefix(upload.id)}digest/{upload.size:020d}"
        try:
            with self.store.open_object(record) as f:
                got = f.read().decode()
        except KeyError:
            raise UploadUnknown("the upload ended while it was being committed") from None
        if got != digest:
            raise DigestMismatch(f"digest mismatch: expected {digest}, got {got}")
        return self.store.put_blob_from_objects(digest, segments)

    def cancel(self, repo: str, upload_id: str) -> None:
        self.get(repo, upload_id)
        prefix = self._prefix(upload_id)
        self.store.delete_object(f"{prefix}meta.json")  # gone for everyone from here on
        self._meta.pop(upload_id, None)
        for o in self.store.list_objects(prefix):
            self.store.delete_object(o.key)

    def purge(self, now: float | None = None) -> int:
        """Remove sessions whose newest object is older than `max_age`; return how many."""
        now = time.time() if now is None else now
        self._last_purge = now
        sessions: dict[str, list[StoredObject]] = {}
        for o in self.store.list_objects(SESSIONS):
            sessions.setdefault(o.key[len(SESSIONS) :].partition("/")[0], []).append(o)
        removed = 0
        for upload_id, objects in sessions.items():
            if now - max(o.mtime for o in objects) > self.max_age:
                for o in _meta_first(objects):
                    self.store.delete_object(o.key)
                self._meta.pop(upload_id, None)
                removed += 1
        return removed


def _meta_first(objects: list[StoredObject]) -> Iterator[StoredObject]:
    """The meta object first: a session is gone once its meta is."""
    yield from sorted(objects, key=lambda o: not o.key.endswith("/meta.json"))


if TYPE_CHECKING:  # mypy checks that the class keeps the interface
    _uploads: UploadStore = S3Uploads(S3Store("bucket", client=None))
