"""Copying a tree as it is: modes, owners, times, symlinks as symlinks.

For throw-away copies (a `RUN --mount=type=bind,rw` source, a cache seeded
from a stage): no `--chown`, no excludes, no hard links kept, unlike `copy.py`.
`copy_file` (one regular file's bytes, with `sendfile`) serves both.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a file or directory tree to `dst` (which must not exist) with its
    modes, owners (when we may) and times; symlinks are copied, not followed.
    Fifos are recreated, device nodes only when we may, sockets are left out."""
    info = os.lstat(src)
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        os.mkdir(dst, 0o700)
        for entry in os.scandir(src):
            copy_tree(Path(entry.path), dst / entry.name)
    elif stat.S_ISREG(mode):
        copy_file(src, dst)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(dst, 0o600)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        try:
            os.mknod(dst, mode, info.st_rdev)
        except PermissionError:
            return
    else:
        return  # a socket: nothing a copy could serve
    chown_if_root(dst, info.st_uid, info.st_gid)
    if not stat.S_ISLNK(mode):
        os.chmod(dst, stat.S_IMODE(mode))  # after chown, which clears setuid bits
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def chown_if_root(path: Path, uid: int, gid: int) -> None:
    """lchown; a PermissionError only matters when we are root."""
    try:
        os.lchown(path, uid, gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise


def copy_file(
    src: Path | str, dst: Path | str, finish: Callable[[int], None] | None = None
) -> None:
    """Copy the regular file `src` (not a symlink) to the new file `dst`, mode
    0600; `finish(fd)` runs on the new file's descriptor once its data is
    written (to set its owner, mode and times)."""
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            size = os.fstat(fd_in).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(fd_out, fd_in, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
            if finish is not None:
                finish(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
