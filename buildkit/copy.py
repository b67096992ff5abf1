"""COPY: files from a source tree into the root of the image being built.

`copy_sources(spec, src_root=..., dest_root=..., workdir=...)` does what
BuildKit does for one COPY (and for the local sources of an ADD):

* Sources are relative to the source root (the build context, or a stage's
  rootfs for `--from`). `../x` and a leading `/` are cleaned away, and every
  symlink is resolved inside the source root (`buildkit.fsutil`), so nothing
  outside it is ever read. A source that is itself a symlink is followed.
* Wildcards use Go's `filepath.Match` one component at a time
  (`buildkit.globs`); with `--parents`, `**` matches any number of
  directories. A wildcard matching nothing copies nothing (BuildKit sets
  AllowEmptyWildcard); a plain source that does not exist is an error.
* A directory source copies its contents. A file goes inside the destination
  when the destination ends with `/` or is an existing directory, else it
  becomes the destination. Several sources need such a directory.
* A relative destination is relative to WORKDIR. Missing parent directories
  are created 0755, owned by the `--chown` owner (root without one).
* Owners: `--chown` (resolved against the destination root), else 0:0 from
  the build context and the source's own owners with `--from`. `--chmod`
  (`buildkit.modes`) applies to every file and directory copied. Mode bits
  and mtimes otherwise come from the source; symlinks inside a copied
  directory stay symlinks; hard links within one COPY stay hard links.
* `--exclude` patterns (dockerignore syntax) match paths relative to the
  directory being copied; a top-level source is matched by its name.
* Heredocs (`COPY <<EOF /dest`) become files of mode 0644.

Everything written goes through paths resolved inside the destination root;
an existing symlink at a destination entry is replaced, never written through.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from buildkit.dockerfile.instructions import CopyBase
from buildkit.dockerignore import IgnoreMatcher
from buildkit.errors import UserError
from buildkit.fsutil import clean_abs, mkdir_all, resolve_in_root
from buildkit.modes import ModeFn, parse_chmod
from buildkit.sources import Match, expand_source, is_excluded, walk_selected
from buildkit.treecopy import copy_file
from buildkit.users import resolve_chown

__all__ = ["CopyError", "CopyJob", "copy_sources", "dest_path"]

HEREDOC_MODE = 0o644


class CopyError(UserError):
    """A COPY or ADD that cannot be carried out as written (a destination conflict,
    several sources to a file)."""


def dest_path(dest: str, workdir: str) -> tuple[str, bool]:
    """The absolute destination inside the image and whether it names a directory.

    A destination ending in `/` (or `.`, `..`) names a directory.
    """
    is_dir = dest.endswith("/") or posixpath.basename(dest) in (".", "..") or dest == ""
    return clean_abs(posixpath.join(workdir or "/", dest)), is_dir


@dataclass
class CopyJob:
    """One COPY/ADD's options and what it has written so far."""

    dest_root: Path
    owner: tuple[int, int] | None = None  # --chown
    preserve_owner: bool = False  # --from: keep the source's owners
    mode_fn: ModeFn | None = None  # --chmod
    excludes: IgnoreMatcher | None = None
    written: list[str] = field(default_factory=list)
    _links: dict[tuple[int, int], Path] = field(default_factory=dict)

    @classmethod
    def for_spec(cls, spec: CopyBase, dest_root: Path, *, preserve_owner: bool) -> CopyJob:
        return cls(
            dest_root=Path(dest_root),
            owner=resolve_chown(dest_root, spec.chown) if spec.chown else None,
            preserve_owner=preserve_owner,
            mode_fn=parse_chmod(spec.chmod) if spec.chmod else None,
            excludes=IgnoreMatcher(spec.excludes) if spec.excludes else None,
        )

    # ------------------------------------------------------------ destinations

    def is_dir(self, image_path: str) -> bool:
        """Whether `image_path` is a directory in the destination (symlinks followed inside)."""
        return os.path.isdir(resolve_in_root(self.dest_root, image_path))

    def make_dirs(self, image_path: str) -> None:
        uid, gid = self.owner or (0, 0)
        mkdir_all(self.dest_root, image_path, mode=0o755, uid=uid, gid=gid)

    def target_for_file(self, dest: str, dest_is_dir: bool, name: str) -> str:
        if dest_is_dir or self.is_dir(dest):
            return posixpath.join(dest, name)
        return dest

    # ------------------------------------------------------------ copying

    def copy_match(self, match: Match, dest: str, dest_is_dir: bool, *, parents: bool) -> None:
        """Copy one resolved source to `dest` with COPY's rules."""
        if is_excluded(match, self.excludes):
            return
        info = os.lstat(match.host)  # resolved: no symlink left in it
        if parents:
            target = posixpath.join(dest, match.rel) if match.rel else dest
            if stat.S_ISDIR(info.st_mode):
                self.copy_dir_contents(match.host, target, match.path)
            else:
                self.make_dirs(posixpath.dirname(target))
                self.place(match.host, info, target, match.path)
            return
        if stat.S_ISDIR(info.st_mode):
            self.copy_dir_contents(match.host, dest, match.path)
            return
        target = self.target_for_file(dest, dest_is_dir, posixpath.basename(match.path))
        self.make_dirs(posixpath.dirname(target))
        self.place(match.host, info, target, match.path)

    def copy_dir_contents(self, src_host: Path, target: str, src_name: str) -> None:
        host = resolve_in_root(self.dest_root, target)
        if os.path.lexists(host) and not os.path.isdir(host):
            raise CopyError(f"cannot copy directory {src_name} onto file {target}")
        self.make_dirs(target)
        self.written.append(target)
        self._copy_tree(src_host, host, target)

    def place(self, src_host: Path, info: os.stat_result, target: str, src_name: str) -> None:
        """Write the non-directory `src_host` at `target`, replacing a file or link there."""
        host = resolve_in_root(self.dest_root, target, follow_last=False)
        if os.path.isdir(host) and not os.path.islink(host):
            raise CopyError(f"cannot copy file {src_name} onto directory {target}")
        self._write(src_host, info, host, target)
        self.written.append(target)

    def write_file(
        self, content: bytes | Path, target: str, *, mode: int, mtime_ns: int | None
    ) -> None:
        """Create the file `target` from bytes or a host file (heredocs, downloads).

        Owned by the `--chown` owner (root without one); `mode` before `--chmod`.
        """
        self.make_dirs(posixpath.dirname(target))
        host = resolve_in_root(self.dest_root, target, follow_last=False)
        if os.path.isdir(host) and not os.path.islink(host):
            raise CopyError(f"cannot write file {target}: a directory exists there")
        _remove(host)
        if isinstance(content, Path):
            copy_file(content, host)
        else:
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
        uid, gid = self.owner or (0, 0)
        os.lchown(host, uid, gid)
        os.chmod(host, self.mode_fn(mode, False) if self.mode_fn else mode)
        stamp = time.time_ns() if mtime_ns is None else mtime_ns
        os.utime(host, ns=(stamp, stamp))
        self.written.append(target)

    def _copy_tree(self, src_dir: Path | str, dst_dir: Path | str, image_dir: str) -> None:
        # Strings, not Paths, and one lstat per side: this runs for every entry.
        dst_prefix = _prefix(dst_dir)
        made: list[tuple[str, os.stat_result]] = []  # directories, finished once filled
        for rel, src, info in walk_selected(src_dir, self.excludes):
            is_dir = stat.S_ISDIR(info.st_mode)
            dst = dst_prefix + rel
            image_path = posixpath.join(image_dir, rel)
            try:
                existing: os.stat_result | None = os.lstat(dst)
            except FileNotFoundError:
                existing = None
            # A symlink is never a directory here: it is replaced, not entered.
            dst_is_dir = existing is not None and stat.S_ISDIR(existing.st_mode)
            if is_dir:
                if existing is not None and not dst_is_dir:
                    raise CopyError(f"cannot copy to non-directory: {image_path}")
                if existing is None:
                    os.mkdir(dst, 0o700)
                made.append((dst, info))
            else:
                if dst_is_dir:
                    raise CopyError(f"cannot copy file {rel} onto directory {image_path}")
                if existing is not None:
                    os.unlink(dst)
                self._write(src, info, dst, image_path, removed=True)
        # A directory's owner, mode and mtime once everything in it is written
        # (children before parents): a read-only one could not be filled, and
        # each write in one would move its mtime.
        for dst, info in reversed(made):
            self._meta(dst, info, is_dir=True)

    def _write(
        self,
        src: Path | str,
        info: os.stat_result,
        dst: Path | str,
        image_path: str,
        *,
        removed: bool = False,
    ) -> None:
        """Create `dst` (whose parent is a real directory) as a copy of the non-directory `src`.

        `removed`: the caller has made sure nothing is at `dst`."""
        if not removed:
            _remove(dst)
        mode = info.st_mode
        key = (info.st_dev, info.st_ino)
        if stat.S_ISREG(mode) and info.st_nlink > 1 and key in self._links:
            os.link(self._links[key], dst, follow_symlinks=False)
            return
        if stat.S_ISREG(mode):
            # Owner, mode and times set through the new file's descriptor.
            copy_file(src, dst, lambda fd: self._fd_meta(fd, info))
            if info.st_nlink > 1:
                self._links[key] = Path(dst)
            return
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(dst, 0o600)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            if os.geteuid() != 0:
                return  # as Docker in a user namespace: device nodes need root
            os.mknod(dst, mode, info.st_rdev)
        else:
            return  # sockets and the like are not copied
        self._meta(dst, info, is_dir=False)

    def _owner(self, info: os.stat_result) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner
        if self.preserve_owner:
            return info.st_uid, info.st_gid
        return 0, 0

    def _meta(self, dst: Path | str, info: os.stat_result, *, is_dir: bool) -> None:
        uid, gid = self._owner(info)
        os.lchown(dst, uid, gid)
        if not stat.S_ISLNK(info.st_mode):
            bits = stat.S_IMODE(info.st_mode)
            os.chmod(dst, self.mode_fn(bits, is_dir) if self.mode_fn else bits)
        mtime = info.st_mtime_ns
        os.utime(dst, ns=(mtime, mtime), follow_symlinks=False)

    def _fd_meta(self, fd: int, info: os.stat_result) -> None:
        """`_meta` for a regular file open at `fd`, after its data is written."""
        uid, gid = self._owner(info)
        os.fchown(fd, uid, gid)
        bits = stat.S_IMODE(info.st_mode)
        os.fchmod(fd, self.mode_fn(bits, False) if self.mode_fn else bits)  # after chown
        mtime = info.st_mtime_ns
        os.utime(fd, ns=(mtime, mtime))


def _prefix(directory: Path | str) -> str:
    """`directory` as a string ending in `/`, to append a name to."""
    text = os.fspath(directory)
    return text if text.endswith("/") else text + "/"


def _remove(path: Path | str) -> None:
    """Remove a non-directory at `path`, if any (never following a symlink)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)


def copy_sources(
    spec: CopyBase,
    *,
    src_root: Path,
    dest_root: Path,
    workdir: str,
    preserve_owner: bool | None = None,
    source_name: str = "build context",
) -> list[str]:
    """Carry out a COPY (or the local part of an ADD, without unpacking).

    `preserve_owner` defaults to True for `COPY --from` and False otherwise.
    `source_name` names the source tree in errors ("build context",
    "stage build"). Returns the image paths written at the top level.
    """
    parents = bool(getattr(spec, "parents", False))
    if preserve_owner is None:
        preserve_owner = bool(getattr(spec, "from_", ""))
    job = CopyJob.for_spec(spec, dest_root, preserve_owner=preserve_owner)
    dest, dest_is_dir = dest_path(spec.dest, workdir)
    matches: list[Match] = []
    for source in spec.sources:
        matches.extend(expand_source(src_root, source, parents=parents, source_name=source_name))
    check_several(spec, len(matches) + len(spec.heredocs), dest, dest_is_dir or parents, job)
    for match in matches:
        job.copy_match(match, dest, dest_is_dir, parents=parents)
    for heredoc in spec.heredocs:
        target = job.target_for_file(dest, dest_is_dir, heredoc.name)
        job.write_file(heredoc.content.encode(), target, mode=HEREDOC_MODE, mtime_ns=None)
    return job.written


def check_several(spec: CopyBase, count: int, dest: str, dest_is_dir: bool, job: CopyJob) -> None:
    """Several sources (as written, or after wildcards) need a directory destination."""
    several = len(spec.sources) + len(spec.heredocs) > 1 or count > 1
    if several and not dest_is_dir and not job.is_dir(dest):
        raise CopyError(
            f"{spec.keyword} {' '.join(spec.sources)}: when using {spec.keyword} with more than "
            f"one source file, the destination must be a directory and end with a /: {spec.dest}"
        )
