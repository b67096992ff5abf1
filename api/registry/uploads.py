"""Blob upload sessions: the bytes a client sends between `POST .../blobs/uploads/`
and the closing `PUT ...?digest=`.

`FilesystemUploads` keeps each session in a directory,

    <root>/<uuid>/meta.json    {"repo": ..., "started": <epoch seconds>}
    <root>/<uuid>/data         the bytes received so far; its size is the offset

so a session may continue on another API process that shares `<root>` (the
client's next PATCH can land anywhere behind a load balancer). Nothing is kept
in memory between requests: a hash state cannot be pickled, so the digest is
verified at commit by reading `data` again, as the store copies it. A chunk is
appended under an exclusive `flock`, so two requests for one session never
interleave; a chunk that arrives incomplete is cut off again.

Sessions idle longer than `max_age` are removed when new ones start.

With an S3 store the sessions live in its bucket instead (`s3_uploads.py`), so
API processes on several hosts need no shared directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from buildkit.digest import Digest, digest_stream
from buildkit.errors import DigestMismatch
from buildkit.image import Descriptor
from buildkit.store.base import OCTET_STREAM, Store

_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PURGE_INTERVAL = 600.0


class UploadUnknown(Exception):
    """No such upload session (never started, finished, cancelled or expired)."""


class UploadBusy(Exception):
    """Another request is writing to the session right now."""


class RangeMismatch(Exception):
    """A chunk that does not start where the session ends."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the upload holds {size} bytes")
        self.size = size


@dataclass(frozen=True)
class Upload:
    id: str
    repo: str
    size: int
    started: float


class ChunkWriter(Protocol):
    written: int

    @property
    def end(self) -> int:
        """The session's size with what this writer appended."""
        ...

    def write(self, data: bytes) -> None: ...

    def rollback(self) -> None:
        """Forget what this writer appended."""
        ...

    def close(self) -> None:
        """Make what was written part of the session (`UploadBusy`, and nothing
        appended, if another request got there first); again: nothing."""
        ...


class UploadStore(Protocol):
    def create(self, repo: str) -> Upload: ...

    def get(self, repo: str, upload_id: str) -> Upload:
        """`UploadUnknown` if there is no such session of `repo`."""
        ...

    def writer(self, repo: str, upload_id: str, start: int | None = None) -> ChunkWriter:
        """Append to the session; `start` (from Content-Range) must be its size
        (`RangeMismatch`); `UploadBusy` while another writer holds it."""
        ...

    def commit(self, repo: str, upload_id: str, store: Store, digest: Digest) -> Descriptor:
        """Verify the bytes against `digest`, store them, end the session.
        `DigestMismatch` ends the session too, and stores nothing."""
        ...

    def cancel(self, repo: str, upload_id: str) -> None: ...


def commit_stream(data: BinaryIO, store: Store, digest: Digest) -> Descriptor:
    """Store the bytes of `data` as the blob `digest`; `DigestMismatch`, with
    nothing stored, if they are something else."""
    if store.has_blob(digest):  # the store would not read the bytes: check here
        got, size = digest_stream(data)
        if got != digest:
            raise DigestMismatch(f"digest mismatch: expected {digest}, got {got}")
        return Descriptor(OCTET_STREAM, digest, size)
    return store.put_blob(data, expected=digest)  # hashed while copied; nothing kept on a mismatch


class _FileWriter:
    def __init__(self, path: Path, start: int | None) -> None:
        self._file: BinaryIO = open(path, "r+b")  # noqa: SIM115 (closed by close())
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise UploadBusy("another request is writing to this upload") from None
        self.offset = os.fstat(self._file.fileno()).st_size
        if start is not None and start != self.offset:
            self.close()
            raise RangeMismatch(self.offset)
        self._file.seek(self.offset)
        self.written = 0

    @property
    def end(self) -> int:
        return self.offset + self.written

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.written += len(data)

    def rollback(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        self._file.truncate(self.offset)
        self.written = 0

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


class FilesystemUploads:
    """`UploadStore` on a directory (see the module docstring)."""

    def __init__(self, root: Path | str, max_age: float = 24 * 3600) -> None:
        self.root = Path(root)
        self.max_age = max_age
        self._last_purge = 0.0

    def _dir(self, upload_id: str) -> Path:
        if not _ID_RE.match(upload_id):
            raise UploadUnknown(f"blob upload unknown: {upload_id!r}")
        return self.root / upload_id

    def create(self, repo: str) -> Upload:
        if time.time() - self._last_purge > PURGE_INTERVAL:
            self.purge()
        upload_id = str(uuid.uuid4())
        directory = self._dir(upload_id)
        directory.mkdir(parents=True)
        (directory / "data").touch()
        started = time.time()
        meta = directory / ".meta.json"
        meta.write_text(json.dumps({"repo": repo, "started": started}))
        meta.rename(directory / "meta.json")  # a session exists once its meta does
        return Upload(upload_id, repo, 0, started)

    def get(self, repo: str, upload_id: str) -> Upload:
        directory = self._dir(upload_id)
        try:
            meta = json.loads((directory / "meta.json").read_bytes())
            size = (directory / "data").stat().st_size
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise UploadUnknown(f"blob upload unknown: {upload_id}") from None
        if meta.get("repo") != repo:
            raise UploadUnknown(f"blob upload unknown: {upload_id} (not of {repo})")
        return Upload(upload_id, repo, size, float(meta.get("started", 0)))

    def writer(self, repo: str, upload_id: str, start: int | None = None) -> ChunkWriter:
        self.get(repo, upload_id)
        try:
            return _FileWriter(self._dir(upload_id) / "data", start)
        except FileNotFoundError:
            raise UploadUnknown(f"blob upload unknown: {upload_id}") from None

    def commit(self, repo: str, upload_id: str, store: Store, digest: Digest) -> Descriptor:
        self.get(repo, upload_id)
        path = self._dir(upload_id) / "data"
        try:
            with open(path, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UploadBusy("another request is writing to this upload") from None
                desc = commit_stream(f, store, digest)
        except FileNotFoundError:
            raise UploadUnknown(f"blob upload unknown: {upload_id}") from None
        except DigestMismatch:
            self.cancel(repo, upload_id)
            raise
        self.cancel(repo, upload_id)
        return desc

    def cancel(self, repo: str, upload_id: str) -> None:
        self.get(repo, upload_id)
        directory = self._dir(upload_id)
        with contextlib.suppress(FileNotFoundError):
            (directory / "meta.json").unlink()  # gone for everyone from here on
        shutil.rmtree(directory, ignore_errors=True)

    def purge(self, now: float | None = None) -> int:
        """Remove sessions older than `max_age`; return how many."""
        now = time.time() if now is None else now
        self._last_purge = now
        removed = 0
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        for name in names:
            directory = self.root / name
            try:
                mtime = max(p.stat().st_mtime for p in directory.iterdir())
            except (OSError, ValueError):  # empty or vanished
                mtime = 0.0
                with contextlib.suppress(OSError):
                    mtime = directory.stat().st_mtime
            if now - mtime > self.max_age:
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        return removed
