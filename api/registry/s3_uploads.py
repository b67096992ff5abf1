"""Blob upload sessions in the store's bucket, so API processes on any number of
hosts share them with nothing but S3 (the filesystem sessions of `uploads.py`
need one directory all processes see).

A session is a few objects under the store's prefix,

    farm/uploads/<uuid>/meta.json                  {"repo": ..., "started": <epoch seconds>}
    farm/uploads/<uuid>/data/<token>/<offset:020d> a request's bytes from <offset> on
    farm/uploads/<uuid>/chunks/<start:020d>        {"token", "end", "digest"?}: a chunk

Each request appending to a session writes its bytes as segments of at most
`segment_size` (held in memory while they fill) under a token of its own, so
no segment object is ever written twice or overwritten. The chunk becomes
part of the session only when all its segments are there and its record is
put, a conditional PutObject (`If-None-Match: *`) at its start offset: of two
requests appending at one offset one wins and the other, told the session is
busy, deletes its segments. The session's size is where the run of chunk
records from offset 0 ends, each chunk's bytes are the segments its token
names, and a record always matches the segments it names, even on a server
that ignores the condition (a later record then replaces the earlier one).

Nothing is kept in memory between requests but immutable things (a session's
meta, chunk records by ETag), in bounded caches. A request that writes a
session from its first byte records the digest of what it wrote; when the
session is committed as that one chunk, the digest is checked against the
record and the blob is assembled from the segments server-side (CopyObject,
UploadPartCopy), so the bytes cross the network once, as with one-request
uploads (what skopeo, docker and Farm itself send). Sessions written in
several requests are read again at commit, in order, and the store hashes
them while it copies, keeping nothing on a mismatch.

Objects under `farm/uploads/` are never part of the registry layout, so a
stock `registry:2` reading the bucket ignores them; a session left behind by a
killed process, and the segments of a request that lost its chunk, are removed
by the next purge (or by a bucket lifecycle rule expiring
`<prefix>/farm/uploads/`, which a bucket with versioning needs anyway).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from api.registry.lru import LRU
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
from buildkit.store.s3 import MAX_PARTS, MIN_PART_SIZE, S3Store
from buildkit.store.s3bucket import StoredObject

SEGMENT_SIZE = 8 << 20
SESSIONS = "farm/uploads/"
CACHE_SIZE = 4096


@dataclass(frozen=True)
class _Chunk:
    start: int
    end: int
    token: str
    digest: str | None  # of the session's bytes [0, end), when the chunk starts at 0
    segments: tuple[StoredObject, ...] = ()


@dataclass(frozen=True)
class _Session:
    upload: Upload
    chunks: tuple[_Chunk, ...]

    @property
    def segments(self) -> list[StoredObject]:
        return [s for c in self.chunks for s in c.segments]


def _copyable(segments: list[StoredObject]) -> bool:
    """Whether S3 can make one object of the segments (parts of at least 5 MiB
    but the last, at most 10,000 of them)."""
    return len(segments) <= MAX_PARTS and all(s.size >= MIN_PART_SIZE for s in segments[:-1])


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


class _ChunkWriter:
    """One request's bytes, appended at `start`: segments under a token of its
    own, then (at close) the chunk record that makes them part of the session."""

    def __init__(self, store: S3Store, session: str, start: int, segment_size: int) -> None:
        self._store = store
        self._session = session
        self._segment_size = segment_size
        self._start = start
        self._token = uuid.uuid4().hex
        self._buffer = bytearray()
        self._written: list[str] = []
        self._flushed = 0
        self._hash = DigestWriter() if start == 0 else None  # of the session from its start
        self._closed = False
        self.written = 0

    @property
    def end(self) -> int:
        return self._start + self.written

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.written += len(data)
        if self._hash is not None:
            self._hash.update(data)
        while len(self._buffer) >= self._segment_size:
            self._flush(self._segment_size)

    def _flush(self, size: int) -> None:
        key = f"{self._session}data/{self._token}/{self._start + self._flushed:020d}"
        with memoryview(self._buffer) as view:
            data = bytes(view[:size])
        self._store.put_object(key, data)  # a key nobody else writes
        self._written.append(key)
        self._flushed += size
        del self._buffer[:size]

    def rollback(self) -> None:
        """Forget the chunk: its segments go, and no record is written."""
        self._closed = True
        self._buffer.clear()
        self.written = 0
        for key in reversed(self._written):
            self._store.delete_object(key)
        self._written.clear()

    def close(self) -> None:
        """Put the rest and the chunk's record; `UploadBusy` (the segments deleted)
        if another request's chunk took this offset first."""
        if self._closed:
            return
        self._closed = True
        if not self.written:
            return
        if self._buffer:
            self._flush(len(self._buffer))
        record: dict[str, Any] = {"token": self._token, "end": self._start + self.written}
        if self._hash is not None:
            record["digest"] = str(self._hash.digest)
        key = f"{self._session}chunks/{self._start:020d}"
        if not self._store.put_new(key, json.dumps(record).encode()):
            self.rollback()
            raise UploadBusy("another request is writing to this upload")


class S3Uploads:
    """`UploadStore` in the bucket of an `S3Store` (see the module docstring)."""

    def __init__(
        self, store: S3Store, max_age: float = 24 * 3600, *, segment_size: int = SEGMENT_SIZE
    ) -> None:
        self.store = store
        self.max_age = max_age
        self.segment_size = segment_size
        self._last_purge = 0.0
        self._meta: LRU[str, tuple[str, float]] = LRU(CACHE_SIZE)  # id -> (repo, started)
        self._records: LRU[tuple[str, str], dict[str, Any]] = LRU(CACHE_SIZE)  # (key, etag)

    def _prefix(self, upload_id: str) -> str:
        if not _ID_RE.match(upload_id):
            raise UploadUnknown(f"blob upload unknown: {upload_id!r}")
        return f"{SESSIONS}{upload_id}/"

    def _read_json(self, key: str) -> dict[str, Any]:
        try:
            with self.store.open_object(key) as f:
                value = json.loads(f.read())
        except (KeyError, ValueError):
            raise UploadUnknown(f"blob upload unknown: {key}") from None
        if not isinstance(value, dict):
            raise UploadUnknown(f"blob upload unknown: {key}")
        return value

    def _session(self, repo: str, upload_id: str) -> _Session:
        """The session and the run of chunks from offset 0, from one listing (plus
        a read of each meta and record this process has not seen yet)."""
        prefix = self._prefix(upload_id)
        objects = self.store.list_objects(prefix)
        if not any(o.key == f"{prefix}meta.json" for o in objects):
            self._meta.pop(upload_id)
            raise UploadUnknown(f"blob upload unknown: {upload_id}")
        meta = self._meta.get(upload_id)
        if meta is None:
            doc = self._read_json(f"{prefix}meta.json")
            meta = (str(doc.get("repo")), float(doc.get("started", 0)))
            self._meta.put(upload_id, meta)
        owner, started = meta
        if owner != repo:
            raise UploadUnknown(f"blob upload unknown: {upload_id} (not of {repo})")
        chunks = self._chain(prefix, objects)
        size = chunks[-1].end if chunks else 0
        return _Session(Upload(upload_id, repo, size, started), tuple(chunks))

    def _chain(self, prefix: str, objects: list[StoredObject]) -> list[_Chunk]:
        records = {}
        segments: dict[str, list[StoredObject]] = {}
        for o in objects:
            name = o.key[len(prefix) :]
            if name.startswith("chunks/"):
                records[name.removeprefix("chunks/")] = o
            elif name.startswith("data/"):
                segments.setdefault(name.split("/")[1], []).append(o)
        chain: list[_Chunk] = []
        position = 0
        while (found := records.get(f"{position:020d}")) is not None:
            record = self._record(found)
            chunk = _Chunk(position, int(record["end"]), str(record["token"]), record.get("digest"))
            parts = tuple(segments.get(chunk.token, ()))
            if chunk.end <= position or not _covers(parts, chunk):
                break  # being deleted, or not ours to trust
            chain.append(_Chunk(chunk.start, chunk.end, chunk.token, chunk.digest, parts))
            position = chunk.end
        return chain

    def _record(self, found: StoredObject) -> dict[str, Any]:
        cached = self._records.get((found.key, found.etag))
        if cached is None:
            cached = self._read_json(found.key)
            self._records.put((found.key, found.etag), cached)
        return cached

    def create(self, repo: str) -> Upload:
        if time.time() - self._last_purge > PURGE_INTERVAL:
            self.purge()
        upload_id = str(uuid.uuid4())
        started = time.time()
        meta = json.dumps({"repo": repo, "started": started}).encode()
        if not self.store.put_new(f"{self._prefix(upload_id)}meta.json", meta):
            raise UploadBusy(f"upload {upload_id} exists already")  # a uuid4 collision
        self._meta.put(upload_id, (repo, started))
        return Upload(upload_id, repo, 0, started)

    def get(self, repo: str, upload_id: str) -> Upload:
        return self._session(repo, upload_id).upload

    def writer(self, repo: str, upload_id: str, start: int | None = None) -> ChunkWriter:
        upload = self.get(repo, upload_id)
        if start is not None and start != upload.size:
            raise RangeMismatch(upload.size)
        return _ChunkWriter(self.store, self._prefix(upload_id), upload.size, self.segment_size)

    def commit(self, repo: str, upload_id: str, store: Store, digest: Digest) -> Descriptor:
        session = self._session(repo, upload_id)
        segments = session.segments
        try:
            one = session.chunks[0] if len(session.chunks) == 1 else None
            if one and one.digest and store is self.store and _copyable(segments):
                if one.digest != digest:
                    raise DigestMismatch(f"digest mismatch: expected {digest}, got {one.digest}")
                try:  # segments never change: what the record hashed is what is copied
                    desc = self.store.put_blob_from_objects(digest, segments)
                except KeyError:
                    raise UploadUnknown("the upload ended while it was being committed") from None
            else:
                with _SegmentReader(self.store, segments) as raw:
                    desc = commit_stream(io.BufferedReader(raw, 1 << 20), store, digest)
        except DigestMismatch:
            self._end(upload_id)
            raise
        self._end(upload_id)
        return desc

    def cancel(self, repo: str, upload_id: str) -> None:
        self.get(repo, upload_id)
        self._end(upload_id)

    def _end(self, upload_id: str) -> None:
        """Remove the session (ended here or elsewhere meanwhile: no matter)."""
        prefix = self._prefix(upload_id)
        self.store.delete_object(f"{prefix}meta.json")  # gone for everyone from here on
        self._meta.pop(upload_id)
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
                self._meta.pop(upload_id)
                removed += 1
        return removed


def _covers(segments: tuple[StoredObject, ...], chunk: _Chunk) -> bool:
    """Whether the segments (in key order: by offset) are exactly [start, end)."""
    position = chunk.start
    for s in segments:
        if not s.key.endswith(f"/{position:020d}"):
            return False
        position += s.size
    return position == chunk.end


def _meta_first(objects: list[StoredObject]) -> Iterator[StoredObject]:
    """The meta object first: a session is gone once its meta is."""
    yield from sorted(objects, key=lambda o: not o.key.endswith("/meta.json"))


if TYPE_CHECKING:  # mypy checks that the class keeps the interface
    _uploads: UploadStore = S3Uploads(S3Store("bucket", client=None))
