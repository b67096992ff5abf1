"""Tarball contexts: recognising them and unpacking them safely.

A context tarball may be plain or compressed with gzip, bzip2, xz or zstd,
as `docker build - < ctx.tar.gz` accepts. Unpacking does not trust Python's
extraction filters: every member name is checked and resolved against the
destination here. Absolute names, `..`, a path through a symlink, hard links
to anything but an earlier regular file, and device nodes or FIFOs are
refused with a ContextError naming the member. Symlinks are created as they
are (never followed while unpacking), so a context may hold a link to
`/etc/passwd` but nothing is ever written through one.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, cast

from buildkit.contexts.paths import ensure_real_dirs, safe_relpath
from buildkit.errors import ContextError

_BLOCK = tarfile.BLOCKSIZE


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)


def detect_archive(path: Path) -> Compression | None:
    """The compression of a tarball at `path`, or None when it is not an archive.

    As Docker's `IsArchive`: a compression magic number makes it an archive
    (whether the content is a tar is found out while unpacking); otherwise
    the first block must be a valid tar header, or the end-of-archive marker.
    """
    with open(path, "rb") as f:
        head = f.read(_BLOCK)
        size = os.fstat(f.fileno()).st_size
    for magic, compression in _MAGIC:
        if head.startswith(magic):
            return compression
    if len(head) < _BLOCK:
        return None
    if head == b"\x00" * _BLOCK:
        return Compression.NONE if size >= 2 * _BLOCK else None
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return None
    return Compression.NONE


def _decompressed(f: BinaryIO, compression: Compression) -> BinaryIO:
    if compression is Compression.GZIP:
        return cast(BinaryIO, gzip.GzipFile(fileobj=f, mode="rb"))
    if compression is Compression.BZIP2:
        return cast(BinaryIO, bz2.BZ2File(f))
    if compression is Compression.XZ:
        return cast(BinaryIO, lzma.LZMAFile(f))
    if compression is Compression.ZSTD:
        import zstandard

        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(f))
    return f


def extract_tarball(path: Path, dest: Path, *, what: str) -> None:
    """Unpack the (possibly compressed) tarball at `path` into the directory `dest`.

    `what` names the tarball in errors (a path, or "stdin").
    """
    compression = detect_archive(path)
    if compression is None:
        raise ContextError(f"{what}: not a tar archive (plain, gzip, bzip2, xz or zstd)")
    dest.mkdir(parents=True, exist_ok=True)
    dir_modes: dict[str, int] = {}
    try:
        with (
            open(path, "rb") as raw,
            _decompressed(raw, compression) as stream,
            tarfile.open(
                fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
            ) as tar,
        ):
            for member in tar:
                _extract_member(tar, member, dest, dir_modes, what=what)
    except ContextError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise ContextError(f"{what}: cannot read tar archive: {exc}") from exc
    except Exception as exc:  # zstandard.ZstdError has no importable base here
        if type(exc).__name__ == "ZstdError":
            raise ContextError(f"{what}: cannot read tar archive: {exc}") from exc
        raise
    # Directory modes last (deepest first), so a read-only directory could be
    # filled; the owner keeps rwx so the context can still be walked.
    for rel in sorted(dir_modes, key=lambda r: r.count("/"), reverse=True):
        os.chmod(dest / rel, dir_modes[rel] | 0o700)


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    dir_modes: dict[str, int],
    *,
    what: str,
) -> None:
    label = f"{what}: {member.name!r}"
    rel = safe_relpath(member.name, what=what)
    if not rel:
        if member.isdir():
            return
        raise ContextError(f"{label}: not a valid member name")
    parent_rel, _, base = rel.rpartition("/")
    parent = ensure_real_dirs(dest, parent_rel, what=label)
    target = parent / base
    existing = _lstat_mode(target)
    if existing is not None and stat.S_ISDIR(existing):
        if member.isdir():
            dir_modes[rel] = member.mode & 0o7777
            return
        raise ContextError(f"{label}: replaces a directory")
    if existing is not None:
        os.unlink(target)

    if member.isdir():
        os.mkdir(target, 0o700)
        dir_modes[rel] = member.mode & 0o7777
    elif member.isreg():
        source = tar.extractfile(member)
        if source is None:
            raise ContextError(f"{label}: cannot read file content")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as out, source:
            shutil.copyfileobj(source, out)
            os.fchmod(out.fileno(), (member.mode & 0o7777) | 0o400)
    elif member.issym():
        if not member.linkname:
            raise ContextError(f"{label}: symbolic link without a target")
        os.symlink(member.linkname, target)
    elif member.islnk():
        link_rel = safe_relpath(member.linkname, what=f"{label}: hard link")
        link_parent, _, link_base = link_rel.rpartition("/")
        link_source = ensure_real_dirs(dest, link_parent, what=label) / link_base
        mode = _lstat_mode(link_source)
        if mode is None or not stat.S_ISREG(mode):
            raise ContextError(f"{label}: hard link to {member.linkname!r}, not an earlier file")
        os.link(link_source, target, follow_symlinks=False)
    elif member.ischr() or member.isblk() or member.isfifo():
        raise ContextError(f"{label}: device nodes and FIFOs are not allowed in a context")
    else:
        raise ContextError(f"{label}: unsupported tar entry type {member.type!r}")


def _lstat_mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
