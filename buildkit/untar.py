"""ADD's archive extraction: a local tar (plain, gzip, bzip2, xz) unpacked into the image.

`open_archive(path)` recognises an archive by its content, never its name, as
Docker does: the compression by its magic bytes, then a tar header must read.
Anything else (including an empty file or an empty tar) is not an archive, and
ADD copies it as a file.

`extract_archive(tar, dest_root, dest_dir)` unpacks as Docker's untar does,
without trusting the archive or the tree it lands in:

* Member names are cleaned; a leading `/` is dropped; a name that climbs out
  of the destination (`../x`, `a/../../x`) is an `ArchiveError`, and so is a
  hard link to such a name and a symlink whose target, taken from the link's
  directory, climbs out (Docker's "breakout" rule). A member that is not a
  directory but whose name cleans to the destination itself (a file `./`) is
  an `ArchiveError` too: it would replace the destination directory.
* Each member's parent directory is resolved inside `dest_root` with
  `buildkit.fsutil`, so a symlink planted by an earlier member (`x -> /`)
  still lands inside the image root, never on the host.
* An existing entry is replaced (a directory only by a directory, merged);
  nothing is ever written through an existing symlink.
* Owners come from the archive unless `owner` (`--chown`) is given; mode bits
  and mtimes from the archive. Device nodes are made only when running as
  root; fifos always; other member types are skipped.

Python's own extraction filters had bypasses until 3.13.4; this module does
not use `extractall` at all.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Literal

from buildkit.errors import UserError
from buildkit.fsutil import mkdir_all, resolve_in_root

__all__ = ["ArchiveError", "extract_archive", "open_archive"]

_Mode = Literal["r:", "r:gz", "r:bz2", "r:xz"]
_MAGIC: tuple[tuple[bytes, _Mode], ...] = (
    (b"\x1f\x8b", "r:gz"),
    (b"BZh", "r:bz2"),
    (b"\xfd7zXZ\x00", "r:xz"),
)


class ArchiveError(UserError):
    """A tar archive that cannot be extracted safely or at all."""


def open_archive(path: Path | str) -> tarfile.TarFile | None:
    """The tar archive at `path`, positioned at its first member, or None if it is not one."""
    with open(path, "rb") as f:
        head = f.read(6)
    mode: _Mode = next((m for magic, m in _MAGIC if head.startswith(magic)), "r:")
    try:
        tar = tarfile.open(path, mode)  # noqa: SIM115 - the caller closes it
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return None
    if tar.next() is None:  # an empty archive is not one, as Docker sees it
        tar.close()
        return None
    return tar


def _inside(name: str, archive: str, what: str) -> str:
    """`name` cleaned and relative, or an ArchiveError if it leaves the destination."""
    cleaned = posixpath.normpath(name).lstrip("/") or "."
    cleaned = posixpath.normpath(cleaned)
    if cleaned == ".." or cleaned.startswith("../"):
        raise ArchiveError(f"{archive}: {what} {name!r} is outside of the destination")
    return cleaned


def extract_archive(
    tar: tarfile.TarFile,
    dest_root: Path | str,
    dest_dir: str,
    *,
    owner: tuple[int, int] | None = None,
    archive_name: str = "archive",
) -> list[str]:
    """Unpack `tar` into the image directory `dest_dir`; return the image paths written."""
    return _Extraction(tar, dest_root, dest_dir, owner, archive_name).run()


class _Extraction:
    """One archive's extraction.

    Parent directories are resolved inside the root once and remembered
    (`self.dirs`: image directory → host directory). A remembered answer
    stays right as long as nothing on the walk that produced it changes: this
    extraction only adds entries, and an entry that did not exist cannot be
    on the walk of a directory that did. So the memory is dropped whenever an
    existing symlink or directory is replaced (a symlink followed or a
    directory walked through may be one of them); replacing a file or a
    device node cannot change a walk, since walks only pass directories and
    symlinks.
    """

    def __init__(
        self,
        tar: tarfile.TarFile,
        dest_root: Path | str,
        dest_dir: str,
        owner: tuple[int, int] | None,
        archive_name: str,
    ) -> None:
        self.tar = tar
        self.root = Path(dest_root)
        self.root_s = os.fspath(self.root)
        self.dest_dir = dest_dir
        self.owner = owner
        self.archive = archive_name
        self.dirs: dict[str, str] = {}
        # Plain (uncompressed) archives in a file: member data is copied by
        # the kernel from its offset, never through Python.
        raw = tar.fileobj
        self.raw_fd = raw.fileno() if isinstance(raw, io.BufferedReader) else None
        self.is_root = os.geteuid() == 0

    def parent(self, image_dir: str) -> str:
        """The host path of the image directory `image_dir`, made when missing."""
        host = self.dirs.get(image_dir)
        if host is None:
            uid, gid = self.owner or (0, 0)
            mkdir_all(self.root, image_dir, uid=uid, gid=gid)
            host = os.fspath(resolve_in_root(self.root, image_dir))
            self.dirs[image_dir] = host
        return host

    def run(self) -> list[str]:
        dir_uid, dir_gid = self.owner or (0, 0)
        mkdir_all(self.root, self.dest_dir, uid=dir_uid, gid=dir_gid)
        written: list[str] = []
        dir_times: list[tuple[str, int]] = []
        owner = self.owner
        for member in self.tar:
            rel = _inside(member.name, self.archive, "entry")
            if rel == "." and not member.isdir():
                # Only a directory can merge into the destination itself: anything
                # else would replace (rmtree) the destination, or the image root.
                raise ArchiveError(
                    f"{self.archive}: entry {member.name!r} names the destination itself"
                    " but is not a directory"
                )
            image_path = posixpath.normpath(posixpath.join(self.dest_dir, rel))
            if rel != ".":
                parent, name = posixpath.split(image_path)
                host = self.parent(parent) + "/" + name
            else:
                host = os.fspath(resolve_in_root(self.root, image_path, follow_last=False))
            uid, gid = owner or (member.uid, member.gid)
            mode = member.mode & 0o7777
            mtime_ns = int(member.mtime) * 1_000_000_000
            if member.isreg():
                # Owner, mode and times through the open file: no path lookups.
                self.regular(member, host, uid, gid, mode, mtime_ns)
                written.append(image_path)
                continue
            self.make(member, host, rel)
            if not os.path.lexists(host):
                continue  # skipped: a device node without root, an unknown type
            os.lchown(host, uid, gid)
            if not member.issym():
                os.chmod(host, mode)
            if member.isdir():
                dir_times.append((host, mtime_ns))
                if rel != ".":
                    self.dirs[image_path] = host  # a real directory now, not a symlink
            else:
                os.utime(host, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            written.append(image_path)
        for host, mtime_ns in reversed(dir_times):
            os.utime(host, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return written

    def clear(self, host: str, member: tarfile.TarInfo) -> os.stat_result | None:
        """Remove what is at `host` unless `member` merges into it; what is left there."""
        try:
            existing = os.lstat(host)
        except FileNotFoundError:
            return None
        if member.isdir() and stat.S_ISDIR(existing.st_mode):
            return existing
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(host)
            self.dirs.clear()
        else:
            if stat.S_ISLNK(existing.st_mode):
                self.dirs.clear()
            os.unlink(host)
        return None

    def regular(
        self, member: tarfile.TarInfo, host: str, uid: int, gid: int, mode: int, mtime_ns: int
    ) -> None:
        self.clear(host, member)
        fd = os.open(
            host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            if self.raw_fd is not None and not member.issparse():
                _send(self.raw_fd, fd, member.offset_data, member.size)
            else:
                source = self.tar.extractfile(member)
                assert source is not None
                with source:
                    while chunk := source.read(1 << 20):
                        _write_all(fd, chunk)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown, which clears setuid bits
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def make(self, member: tarfile.TarInfo, host: str, rel: str) -> None:
        existing = self.clear(host, member)
        if member.isdir():
            if existing is None:
                os.mkdir(host, 0o700)
        elif member.issym():
            from_dir = posixpath.dirname(rel) or "."
            target = posixpath.normpath(from_dir + "/" + member.linkname)
            if target == ".." or target.startswith("../"):
                raise ArchiveError(
                    f"{self.archive}: invalid symlink {member.name!r} -> {member.linkname!r}: "
                    "it points outside of the destination"
                )
            os.symlink(member.linkname, host)
        elif member.islnk():
            link_rel = _inside(member.linkname, self.archive, "hard link target")
            source_host = resolve_in_root(
                self.root, posixpath.join(self.dest_dir, link_rel), follow_last=False
            )
            if not os.path.lexists(source_host):
                raise ArchiveError(
                    f"{self.archive}: hard link {member.name!r} -> {member.linkname!r}: "
                    "no such entry"
                )
            os.link(source_host, host, follow_symlinks=False)
        elif member.ischr() or member.isblk():
            if self.is_root:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(host, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(host, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send(src_fd: int, dst_fd: int, offset: int, size: int) -> None:
    """Copy `size` bytes at `offset` of `src_fd` to `dst_fd` in the kernel."""
    end = offset + size
    while offset < end:
        sent = os.sendfile(dst_fd, src_fd, offset, end - offset)
        if sent == 0:
            raise tarfile.ReadError("unexpected end of data")
        offset += sent
