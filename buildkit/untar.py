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
  directory, climbs out (Docker's "breakout" rule).
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
    root = Path(dest_root)
    dir_uid, dir_gid = owner or (0, 0)
    mkdir_all(root, dest_dir, uid=dir_uid, gid=dir_gid)
    written: list[str] = []
    dir_times: list[tuple[Path, int]] = []
    for member in tar:
        rel = _inside(member.name, archive_name, "entry")
        image_path = posixpath.normpath(posixpath.join(dest_dir, rel))
        if rel != ".":
            mkdir_all(root, posixpath.dirname(image_path), uid=dir_uid, gid=dir_gid)
        host = resolve_in_root(root, image_path, follow_last=False)
        _make(tar, member, host, rel, root, dest_dir, archive_name)
        if not os.path.lexists(host):
            continue  # skipped: a device node without root, an unknown type
        uid, gid = owner or (member.uid, member.gid)
        os.lchown(host, uid, gid)
        if not member.issym():
            os.chmod(host, member.mode & 0o7777)
        mtime_ns = int(member.mtime) * 1_000_000_000
        if member.isdir():
            dir_times.append((host, mtime_ns))
        else:
            os.utime(host, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        written.append(image_path)
    for host, mtime_ns in reversed(dir_times):
        os.utime(host, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    return written


def _make(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    host: Path,
    rel: str,
    root: Path,
    dest_dir: str,
    archive: str,
) -> None:
    try:
        existing = os.lstat(host)
    except FileNotFoundError:
        existing = None
    if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(host)
        else:
            os.unlink(host)
    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(host, 0o700)
    elif member.isreg():
        source = tar.extractfile(member)
        assert source is not None
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    elif member.issym():
        from_dir = posixpath.dirname(rel) or "."
        target = posixpath.normpath(from_dir + "/" + member.linkname)
        if target == ".." or target.startswith("../"):
            raise ArchiveError(
                f"{archive}: invalid symlink {member.name!r} -> {member.linkname!r}: "
                "it points outside of the destination"
            )
        os.symlink(member.linkname, host)
    elif member.islnk():
        link_rel = _inside(member.linkname, archive, "hard link target")
        source_host = resolve_in_root(root, posixpath.join(dest_dir, link_rel), follow_last=False)
        if not os.path.lexists(source_host):
            raise ArchiveError(
                f"{archive}: hard link {member.name!r} -> {member.linkname!r}: no such entry"
            )
        os.link(source_host, host, follow_symlinks=False)
    elif member.ischr() or member.isblk():
        if os.geteuid() == 0:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(host, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(host, 0o600)
