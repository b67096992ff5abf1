"""Applying a layer blob onto a snapshot directory: `apply_layer`, the reverse
of `layers.py`'s writing (re-exported there).

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

import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

import zstandard

from buildkit.digest import CHUNK
from buildkit.errors import StorageError, UserError
from buildkit.layerformat import (
    _OVERLAY_XATTR_PREFIXES,
    OPAQUE_MARKER,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
)

# xattrs a layer may not set on a snapshot: overlayfs' own (they would steer a
# later overlay mount) and the host's SELinux labels.
_REFUSED_XATTR_PREFIXES = (*_OVERLAY_XATTR_PREFIXES, "security.selinux")


class InvalidLayer(UserError):
    """A layer archive that is corrupt or tries to write outside its snapshot."""


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
