"""The content store on a local directory, in CNCF Distribution's layout
(`layout.py`) rooted at the directory, so a stock `registry:2` with its
filesystem driver rooted there serves what Farm wrote.

Every file is written to `<root>/farm/.tmp/`, fsynced, then renamed into place
(the same filesystem, so the rename is atomic) and its directory fsynced: a
reader sees the whole file or nothing, and concurrent writers of the same blob
or tag leave one whole version. Blobs are hashed while they are written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from buildkit.digest import CHUNK, Digest, DigestWriter
from buildkit.errors import BlobUnknown, DigestMismatch
from buildkit.image import Descriptor
from buildkit.store import layout
from buildkit.store.base import OCTET_STREAM, Store
from buildkit.store.layout import LayoutStore


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStore(LayoutStore):
    """`Store` over a local directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.v2 = self.root / layout.V2
        self.records = self.root / layout.RECORDS
        self.tmp = self.root / layout.TMP

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    def blob_path(self, digest: Digest) -> Path:
        return self.root / layout.blob_data(digest)

    # ------------------------------------------------------------ atomic files

    def _temp(self) -> tuple[int, Path]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="w-")
        return fd, Path(name)

    def _install(self, temp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        _fsync_dir(final.parent)

    # ------------------------------------------------------------ primitives (LayoutStore)

    def _read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _write(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        fd, temp = self._temp()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._install(temp, self.root / key)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _write_link(self, key: str, digest: Digest) -> None:
        with contextlib.suppress(OSError):  # unchanged: no write, no fsync
            if (self.root / key).read_bytes() == digest.encode():
                return
        super()._write_link(key, digest)

    def _exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def _is_dir(self, key: str) -> bool:
        return (self.root / key).is_dir()

    def _children(self, key: str) -> tuple[list[str], list[str]]:
        try:
            entries = sorted(os.scandir(self.root / key), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        dirs = [e.name for e in entries if e.is_dir()]
        return [e.name for e in entries if not e.is_dir()], dirs

    def _walk(self, key: str) -> list[str]:
        top = self.root / key
        return [
            (Path(dirpath) / name).relative_to(top).as_posix()
            for dirpath, _, names in os.walk(top)
            for name in names
        ]

    def _delete(self, key: str, *, prune: bool = False) -> bool:
        path = self.root / key
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        if prune:
            with contextlib.suppress(OSError):  # not empty: a writer put it back meanwhile
                path.parent.rmdir()
        return True

    def _delete_tree(self, key: str) -> None:
        shutil.rmtree(self.root / key, ignore_errors=True)

    def _where(self, key: str) -> str:
        return str(self.root / key)

    # ------------------------------------------------------------ blobs

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def blob_size(self, digest: Digest) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def put_blob(
        self, data: BinaryIO, expected: Digest | None = None, *, media_type: str = OCTET_STREAM
    ) -> Descriptor:
        if expected is not None and self._touch(expected):
            return Descriptor(media_type, Digest(expected), self.blob_size(expected))
        fd, temp = self._temp()
        try:
            hasher = DigestWriter()
            with os.fdopen(fd, "wb") as f:
                while chunk := data.read(CHUNK):
                    hasher.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            digest = hasher.digest
            if expected is not None and digest != expected:
                raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
            final = self.blob_path(digest)
            if self._touch(digest):
                temp.unlink()
            else:
                self._install(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Descriptor(media_type, digest, hasher.size)

    def _touch(self, digest: Digest) -> bool:
        """Mark the blob, if there is one, as written now: prune's grace period
        then spares a blob a build has just re-used, as it spares a new one."""
        try:
            os.utime(self.blob_path(digest))
        except FileNotFoundError:
            return False
        except OSError:  # another owner's blob, a read-only store: there, just not touched
            pass
        return True

    def blob_mtime(self, digest: Digest) -> float:
        try:
            return self.blob_path(digest).stat().st_mtime
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def delete_blob(self, digest: Digest) -> bool:
        path = self.blob_path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # not empty: a writer put it back meanwhile
            path.parent.rmdir()
        _fsync_dir(path.parent.parent)
        return True


if TYPE_CHECKING:  # mypy checks that the driver keeps the interface
    _store: Store = FilesystemStore(".")
