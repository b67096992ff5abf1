"""Layers: a directory (or an overlayfs upper dir) to a deterministic OCI layer
blob, and a layer blob back onto a snapshot directory.

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

Applying (`apply_layer`) reads gzip, zstd or plain tar and never trusts a
path: names with `..` or a leading `/` are refused; parent directories are
resolved one component at a time with symlinks followed as in a chroot at
`dest` (an absolute or climbing target stays inside `dest`, as containerd
resolves them); the last component is never followed (an existing symlink is
replaced, not written through); hardlink targets are resolved the same way.
`dest` must not be changed by anything else while a layer is applied.
`apply_layer(..., overlay=True)` keeps deletions in overlayfs' form instead
(0/0 character devices, the opaque xattr), giving back a step's upper
directory from its blob, usable as an overlay lower directory.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import stat
import struct
import tarfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal

import zstandard

from buildkit.digest import CHUNK, Digest, DigestWriter
from buildkit.errors import StorageError, UserError
from buildkit.image import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, Descriptor

Compression = Literal["gzip", "zstd", "none"]
MEDIA_TYPES: dict[str, str] = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
DEFAULT_XATTRS = ("security.capability",)
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# xattrs a layer may not set on a snapshot: overlayfs' own (they would steer a
# later overlay mount) and the host's SELinux labels.
_REFUSED_XATTR_PREFIXES = (*_OVERLAY_XATTR_PREFIXES, "security.selinux")
# Layer writing: tar bytes are compressed in chunks of at least this size,
# with at most this many chunks waiting for the compressing thread.
_BATCH = 1 << 20
_QUEUED = 4


class InvalidLayer(UserError):
    """A layer archive that is corrupt or tries to write outside its snapshot."""


@dataclass(frozen=True)
class Layer:
    """A written layer blob: `digest`/`size` of the blob, `diff_id` of the tar."""

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str
    uncompressed_size: int

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


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


# ------------------------------------------------------------ applying


class _Prefixed:
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(size)
        if size < 0:
            data, self.head = self.head + self.rest.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        if len(data) < size:
            data += self.rest.read(size - len(data))
        return data


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    head = stream.read(4)
    raw = _Prefixed(head, stream)
    if head.startswith(b"\x1f\x8b"):
        return tarfile.open(fileobj=raw, mode="r|gz")  # type: ignore[call-overload]
    if head == b"\x28\xb5\x2f\xfd":
        reader = zstandard.ZstdDecompressor().stream_reader(
            raw,  # type: ignore[arg-type]  # only read() is used
            read_across_frames=True,
        )
        return tarfile.open(fileobj=reader, mode="r|")  # type: ignore[call-overload]
    return tarfile.open(fileobj=raw, mode="r|")  # type: ignore[call-overload]


def _split(name: str, what: str = "entry") -> list[str]:
    if name.startswith("/"):
        raise InvalidLayer(f"layer {what} {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or any("\0" in p for p in parts):
        raise InvalidLayer(f"layer {what} {name!r}: path leaves the layer root")
    return parts


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class _Applier:
    def __init__(self, dest: Path, same_owner: bool, overlay: bool = False) -> None:
        self.root = os.path.realpath(dest)
        self.same_owner = same_owner
        self.overlay = overlay
        self.written: set[str] = set()
        self.dir_times: list[tuple[str, int]] = []

    def resolve(self, parts: list[str], *, create: bool) -> list[str] | None:
        """The real path of directory `parts` under root (as components), with
        symlinks followed as in a chroot; missing directories are made when
        `create`, else None is returned."""
        todo, hops = list(reversed(parts)), 0
        current: list[str] = []
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if current:
                    current.pop()
                continue
            path = os.path.join(self.root, *current, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(path, 0o755)
                current.append(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise InvalidLayer(f"too many levels of symlinks at {'/'.join(parts)!r}")
                target = os.readlink(path)
                if target.startswith("/"):
                    current = []
                todo.extend(reversed(target.split("/")))
            elif stat.S_ISDIR(st.st_mode):
                current.append(name)
            else:
                raise InvalidLayer(f"{'/'.join(parts)!r}: {name!r} is not a directory")
        return current

    def mark(self, parts: list[str]) -> None:
        for i in range(1, len(parts) + 1):
            self.written.add("/".join(parts[:i]))

    def apply(self, tf: tarfile.TarFile) -> None:
        for member in tf:
            try:
                self.member(tf, member)
            except OSError as exc:
                raise StorageError(f"applying layer entry {member.name!r}: {exc}") from exc
        for path, mtime in reversed(self.dir_times):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _split(m.name)
        if not parts:
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX) and self.overlay:
            self.overlay_marker(m, parts)
            return
        if base.startswith(WHITEOUT_PREFIX):
            parent = self.resolve(parts[:-1], create=base == OPAQUE_MARKER)
            if parent is None:
                return
            if base == OPAQUE_MARKER:
                directory = os.path.join(self.root, *parent)
                for child in os.listdir(directory):
                    if "/".join([*parent, child]) not in self.written:
                        _remove(os.path.join(directory, child))
                return
            victim = base[len(WHITEOUT_PREFIX) :]
            if victim in ("", ".", ".."):
                raise InvalidLayer(f"layer entry {m.name!r}: bad whiteout")
            _remove(os.path.join(self.root, *parent, victim))
            return
        parent = self.resolve(parts[:-1], create=True)
        assert parent is not None
        phys = [*parent, base]
        self.mark(phys)
        path = os.path.join(self.root, *phys)
        self.create(tf, m, path)
        if m.islnk():
            return
        if self.same_owner:
            os.chown(path, m.uid, m.gid, follow_symlinks=False)
        if not m.issym():
            os.chmod(path, m.mode & 0o7777)
        for key, value in sorted(m.pax_headers.items()):
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr.") :]
                # Without root only user.* xattrs can be set: skip the others.
                allowed = self.same_owner or name.startswith("user.")
                if allowed and not name.startswith(_REFUSED_XATTR_PREFIXES):
                    os.setxattr(
                        path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False
                    )
        mtime = int(m.mtime * 1_000_000_000)
        if m.isdir():
            self.dir_times.append((path, mtime))
        else:
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def overlay_marker(self, m: tarfile.TarInfo, parts: list[str]) -> None:
        """A whiteout or opaque marker kept in overlayfs' own form: a 0/0
        character device, or `trusted.overlay.opaque=y` on the directory."""
        base = parts[-1]
        parent = self.resolve(parts[:-1], create=True)
        assert parent is not None
        directory = os.path.join(self.root, *parent)
        if base == OPAQUE_MARKER:
            os.setxattr(directory, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", ".."):
            raise InvalidLayer(f"layer entry {m.name!r}: bad whiteout")
        if victim.startswith(WHITEOUT_PREFIX):
            return  # other `.wh..wh.` metadata (aufs' plnk): nothing for overlayfs
        if "/".join([*parent, victim]) in self.written:
            return  # the layer deletes and recreates it: what it wrote wins
        path = os.path.join(directory, victim)
        _remove(path)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        if self.same_owner:
            os.chown(path, 0, 0, follow_symlinks=False)
        mtime = int(m.mtime * 1_000_000_000)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def create(self, tf: tarfile.TarFile, m: tarfile.TarInfo, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not (m.isdir() and stat.S_ISDIR(st.st_mode)):
            _remove(path)
            st = None
        if m.isdir():
            if st is None:
                os.mkdir(path, 0o700)
        elif m.isreg():
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            with os.fdopen(fd, "wb") as f:
                src = tf.extractfile(m)
                assert src is not None
                shutil.copyfileobj(src, f, CHUNK)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            link = _split(m.linkname, "hardlink target")
            parent = self.resolve(link[:-1], create=False) if link else None
            source = None if parent is None else os.path.join(self.root, *parent, link[-1])
            if source is None or not os.path.lexists(source) or os.path.isdir(source):
                raise InvalidLayer(f"layer entry {m.name!r}: bad hardlink target {m.linkname!r}")
            os.link(source, path, follow_symlinks=False)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise InvalidLayer(f"layer entry {m.name!r}: unsupported type {m.type!r}")


def apply_layer(
    tar_stream: BinaryIO, dest: Path, *, same_owner: bool | None = None, overlay: bool = False
) -> None:
    """Unpack a layer (gzip, zstd or plain tar) onto the snapshot `dest`,
    applying whiteouts and opaque markers. Owners are restored when
    `same_owner` (default: when running as root); device nodes need root.

    With `overlay`, `dest` becomes an overlayfs lower (or upper) directory
    holding this one layer, as the step's upper directory was: nothing is
    deleted; `.wh.<name>` becomes a 0/0 character device `<name>` and
    `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory
    (both need root). Meant for an empty `dest`."""
    if same_owner is None:
        same_owner = os.geteuid() == 0
    applier = _Applier(dest, same_owner, overlay)
    try:
        with _open_tar(tar_stream) as tf:
            applier.apply(tf)
    except (tarfile.TarError, zstandard.ZstdError, EOFError, zlib.error) as exc:
        raise InvalidLayer(f"corrupt layer archive: {exc}") from exc
