"""Layers: a directory (or an overlayfs upper dir) to a deterministic OCI layer
blob. The way back, a layer blob onto a snapshot directory (`apply_layer`),
is in `layerapply.py`, and what both share in `layerformat.py`; both are
re-exported here.

Writing (`diff_upperdir`, `tar_directory`) walks the tree depth first, each
directory's entries sorted by their bytes, a directory before its contents.
Headers are PAX-format ustar: numeric uid/gid as on disk, empty uname/gname,
PAX records only when ustar cannot hold a field (long or non-ASCII names, big
ids or sizes) or for xattrs (`security.capability` by default: what
containerd and BuildKit put in layers; overlayfs' own xattrs never).
Modification times are clamped to `source_date_epoch` when given; files with
several links in the tree become tar hardlinks to the first name walked;
sockets are skipped. The archive ends with two zero blocks, as Go's
archive/tar ends it. The tar stream is hashed (diff_id), compressed, and the
blob hashed and written, in one pass. gzip gets a fixed 10-byte header (no
name, mtime 0, OS unknown) and deflate level 6; zstd level 3, one thread, no
content size. The blob digest is then a function of the tree and of the
compressor's version (zlib, libzstd); the diff_id of the tree only.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import struct
import tarfile
import threading
import zlib
from pathlib import Path
from typing import IO

import zstandard

from buildkit.digest import CHUNK, DigestWriter
from buildkit.errors import StorageError
from buildkit.image import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from buildkit.layerapply import InvalidLayer, apply_layer
from buildkit.layerformat import (
    _OVERLAY_XATTR_PREFIXES,
    DEFAULT_XATTRS,
    GZIP_LEVEL,
    MEDIA_TYPES,
    OPAQUE_MARKER,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    ZSTD_LEVEL,
    Compression,
    Layer,
)

__all__ = [
    "DEFAULT_XATTRS",
    "GZIP_LEVEL",
    "MEDIA_TYPES",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OPAQUE_MARKER",
    "OVERLAY_OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "ZSTD_LEVEL",
    "Compression",
    "InvalidLayer",
    "Layer",
    "apply_layer",
    "diff_upperdir",
    "tar_directory",
]

# Layer writing: tar bytes are compressed in chunks of at least this size,
# with at most this many chunks waiting for the compressing thread.
_BATCH = 1 << 20
_QUEUED = 4


# ------------------------------------------------------------ the one-pass sink


class _Sink:
    """Tar bytes in; diff_id hash, compression, blob hash and `out` in one pass.

    Small writes (headers, padding, small files) are gathered into chunks of
    `_BATCH` bytes before they are hashed and compressed: the compressed
    bytes do not depend on how the input is split, only the per-call Python
    overhead does. Compression and the blob's hash and writes run in a
    helper thread (zlib, zstd and hashlib release the GIL) while the tree is
    walked and read; `finish` or `close` joins it.
    """

    def __init__(self, out: IO[bytes], compression: Compression) -> None:
        if compression not in MEDIA_TYPES:
            raise ValueError(f"unknown compression {compression!r}: gzip, zstd or none")
        self.out, self.compression = out, compression
        self.diff, self.blob = DigestWriter(), DigestWriter()
        self._crc = 0
        self._gzip = self._zstd = None
        self._buf = bytearray()
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if compression == "gzip":
            self._gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        elif compression == "zstd":
            self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0).compressobj()
        if compression != "none":
            self._queue = queue.Queue(maxsize=_QUEUED)
            self._thread = threading.Thread(target=self._work, name="layer-compress", daemon=True)
            self._thread.start()

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.out.write(data)

    def _compress(self, data: bytes) -> None:
        if self._gzip is not None:
            self._crc = zlib.crc32(data, self._crc)
            self._emit(self._gzip.compress(data))
        elif self._zstd is not None:
            self._emit(self._zstd.compress(data))
        else:
            self._emit(data)

    def _work(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._compress(data)
                except BaseException as exc:  # handed to the writing thread
                    self._error = exc

    def _push(self, data: bytes) -> None:
        self.diff.update(data)
        if self._queue is None:
            self._compress(data)
            return
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def write(self, data: bytes) -> None:
        buf = self._buf
        if len(data) >= _BATCH and not buf:
            self._push(data)
            return
        buf += data
        if len(buf) >= _BATCH:
            self._push(bytes(buf))
            buf.clear()

    def _stop(self) -> None:
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None

    def close(self) -> None:
        """Stop the helper thread (after an error: `finish` does it otherwise)."""
        self._stop()

    def finish(self) -> Layer:
        self.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        if self._buf:
            self._push(bytes(self._buf))
            self._buf.clear()
        self._stop()
        if self._error is not None:
            raise self._error
        if self._gzip is not None:
            self._emit(self._gzip.flush())
            self._emit(struct.pack("<II", self._crc, self.diff.size & 0xFFFFFFFF))
        elif self._zstd is not None:
            self._emit(self._zstd.flush())
        return Layer(
            self.blob.digest,
            self.diff.digest,
            self.blob.size,
            MEDIA_TYPES[self.compression],
            self.diff.size,
        )


# ------------------------------------------------------------ writing


def _xattrs(path: str, keep: tuple[str, ...], names: list[str] | None = None) -> dict[str, bytes]:
    if names is None:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
    found = {}
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTR_PREFIXES):
            continue
        if name in keep or any(k.endswith(".") and name.startswith(k) for k in keep):
            with contextlib.suppress(OSError):
                found[name] = os.getxattr(path, name, follow_symlinks=False)
    return found


def _overlay_xattr(path: str, name: str, names: list[str] | None = None) -> bytes | None:
    """overlayfs' xattr `name` (trusted. or user.), if set; `names` is what
    listxattr gave, when it could: only the names it lists are read."""
    for prefix in _OVERLAY_XATTR_PREFIXES:
        if names is not None and prefix + name not in names:
            continue
        try:
            return os.getxattr(path, prefix + name, follow_symlinks=False)
        except OSError:
            continue
    return None


def _list_xattrs(path: str) -> list[str] | None:
    """The xattr names of `path` (not followed), None when they cannot be listed."""
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return None


class _Writer:
    def __init__(self, sink: _Sink, epoch: int | None, overlay: bool, xattrs: tuple[str, ...]):
        self.sink, self.epoch, self.overlay, self.keep = sink, epoch, overlay, xattrs
        self.links: dict[tuple[int, int], str] = {}

    def _mtime(self, st: os.stat_result) -> int:
        mtime = int(st.st_mtime)
        return mtime if self.epoch is None else min(mtime, self.epoch)

    def header(self, info: tarfile.TarInfo, xattrs: dict[str, bytes] | None = None) -> None:
        info.uname = info.gname = ""
        if xattrs:
            info.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
            }
        self.sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def marker(self, name: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = 0, self._mtime(st)
        self.header(info)

    def walk(self, directory: str, prefix: str) -> None:
        for name in sorted(os.listdir(directory), key=os.fsencode):
            self.entry(os.path.join(directory, name), prefix + name, name)

    def entry(self, path: str, rel: str, name: str) -> None:
        st = os.lstat(path)
        mode = st.st_mode
        # One listxattr per entry; the overlay checks and kept xattrs read
        # only names it lists (each of them a getxattr before).
        names = _list_xattrs(path)
        if self.overlay and self._is_whiteout(path, st, names):
            self.marker(rel[: len(rel) - len(name)] + WHITEOUT_PREFIX + name, st)
            return
        if stat.S_ISSOCK(mode):
            return
        if self.overlay:
            for bad in ("redirect", "metacopy"):
                if _overlay_xattr(path, bad, names) is not None:
                    raise StorageError(
                        f"{path}: overlayfs {bad} xattr; mount with redirect_dir=off,metacopy=off"
                    )
        info = tarfile.TarInfo(rel)
        info.mode, info.uid, info.gid = stat.S_IMODE(mode), st.st_uid, st.st_gid
        info.mtime = self._mtime(st)
        xattrs = _xattrs(path, self.keep, names) if names else {}
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in self.links:
            info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
            self.header(info, xattrs)
            return
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            self.links[key] = rel
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self.header(info, xattrs)
            if self.overlay and _overlay_xattr(path, "opaque", names) == b"y":
                self.marker(rel + "/" + OPAQUE_MARKER, st)
            self.walk(path, rel + "/")
        elif stat.S_ISREG(mode):
            info.size = st.st_size
            self.header(info, xattrs)
            self._data(path, st.st_size)
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self.header(info, xattrs)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.header(info, xattrs)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self.header(info, xattrs)

    def _is_whiteout(self, path: str, st: os.stat_result, names: list[str] | None) -> bool:
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return True
        # Newer kernels can also mark a whiteout with an xattr on an empty file.
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_size == 0
            and _overlay_xattr(path, "whiteout", names) is not None
        )

    def _data(self, path: str, size: int) -> None:
        left = size
        with open(path, "rb") as f:
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise StorageError(f"{path}: file shrank while it was archived")
                self.sink.write(chunk)
                left -= len(chunk)
        if size % tarfile.BLOCKSIZE:
            self.sink.write(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))


def _write_layer(
    root: Path,
    out: IO[bytes],
    compression: Compression,
    epoch: int | None,
    overlay: bool,
    xattrs: tuple[str, ...],
) -> Layer:
    sink = _Sink(out, compression)
    try:
        _Writer(sink, epoch, overlay, xattrs).walk(os.fspath(root), "")
        return sink.finish()
    finally:
        sink.close()


def diff_upperdir(
    upper: Path,
    out: IO[bytes],
    *,
    compression: Compression = "gzip",
    source_date_epoch: int | None = None,
    xattrs: tuple[str, ...] = DEFAULT_XATTRS,
) -> Layer:
    """An overlayfs upper dir as a layer: 0/0 character devices become
    `.wh.<name>`, opaque directories get a `.wh..wh..opq` entry right after
    their own. `xattrs` names the xattrs kept (a name ending in `.` is a prefix)."""
    return _write_layer(upper, out, compression, source_date_epoch, True, xattrs)


def tar_directory(
    root: Path,
    out: IO[bytes],
    *,
    compression: Compression = "gzip",
    source_date_epoch: int | None = None,
    xattrs: tuple[str, ...] = DEFAULT_XATTRS,
) -> Layer:
    """A plain directory tree as a layer (COPY, ADD, `FROM scratch`); device
    nodes are device nodes here, never whiteouts."""
    return _write_layer(root, out, compression, source_date_epoch, False, xattrs)
