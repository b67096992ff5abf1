"""Paths inside a root directory, resolved as if the root were `/`.

An image's root filesystem (or a build context, or another stage's rootfs) is
full of symlinks written by someone else: `/etc/passwd -> /host/secret`,
`/app -> /`, `a -> ../../..`. Opening `root / "etc/passwd"` would let the
kernel follow them out of the root. `resolve_in_root` resolves every
component itself, the way `filepath-securejoin` and containerd's
`fs.RootPath` do: an absolute link target starts again at the root, `..`
never climbs above it, so the answer is always a path under the root.

The answer is only as good as the tree is still: a process changing the tree
while we walk it could race us. The engine resolves paths in the layer it is
writing and in sources nothing else writes to, so the only writer is us.

`mkdir_all` creates the missing directories of a path inside a root with a
given owner and mode; `open_regular_in_root` opens a file for reading only if
it is a regular file (never a fifo or a device node planted in an image).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

from buildkit.errors import UserError

__all__ = [
    "MAX_SYMLINKS",
    "PathResolutionError",
    "clean_abs",
    "mkdir_all",
    "open_regular_in_root",
    "resolve_in_root",
]

# Linux gives up after 40 links in one lookup; Go's securejoin after 255.
MAX_SYMLINKS = 255


class PathResolutionError(UserError):
    """A path inside a root cannot be resolved (a symlink loop, a file used as a directory)."""


def clean_abs(path: str) -> str:
    """`path` made absolute and clean: `a/../../b` → `/b`, `` → `/`."""
    return posixpath.normpath("/" + path.lstrip("/"))


def resolve_in_root(root: Path | str, path: str, *, follow_last: bool = True) -> Path:
    """The host path of `path` (absolute or relative to `/`) inside `root`.

    Every symlink on the way is resolved as if `root` were `/`. With
    `follow_last=False` a symlink in the last component is left as is (the
    answer is the link itself), as `lstat` would see it. Components that do
    not exist are appended as written, after `..` in them is applied.
    """
    root_path = Path(root)
    host = _resolve(os.fspath(root_path), path, follow_last)
    return Path(host) if host is not None else root_path


def _resolve(root: str, path: str, follow_last: bool) -> str | None:
    """`resolve_in_root` on strings: the host path, or None for the root itself.

    `root` must be clean (as `os.fspath(Path(root))` gives it). Kept free of
    pathlib: it runs once or more per entry of a COPY or an archive.
    """
    if root == "/":
        root = ""  # so that children are `/x`, not `//x`
    todo = [part for part in path.split("/") if part and part != "."]
    todo.reverse()  # a stack: the next component is todo[-1]
    hosts: list[str] = []  # hosts[i]: the host path of the first i+1 components done
    links = 0
    lstat = os.lstat
    while todo:
        part = todo.pop()
        if part == "..":
            if hosts:
                hosts.pop()
            continue
        candidate = (hosts[-1] if hosts else root) + "/" + part
        try:
            info = lstat(candidate)
        except FileNotFoundError:
            hosts.append(candidate)
            continue
        except NotADirectoryError as exc:
            done = "/".join(h.rsplit("/", 1)[1] for h in hosts)
            raise PathResolutionError(f"{path}: /{done} is not a directory") from exc
        if not stat.S_ISLNK(info.st_mode) or (not todo and not follow_last):
            hosts.append(candidate)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise PathResolutionError(f"{path}: too many levels of symbolic links")
        target = os.readlink(candidate)
        if target.startswith("/"):
            hosts = []
        todo.extend(reversed([p for p in target.split("/") if p and p != "."]))
    return hosts[-1] if hosts else None


def mkdir_all(
    root: Path | str,
    path: str,
    *,
    mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
    mtime_ns: int | None = None,
) -> list[Path]:
    """Create `path` and its missing parents inside `root`; return what was created.

    Existing directories (found through symlinks inside the root) are left
    alone. A component that exists and is not a directory is an error.
    Created directories get `mode` exactly (no umask), `uid:gid` and, when
    given, `mtime_ns`.
    """
    root_s = os.fspath(Path(root))
    created = [Path(p) for p in _mkdir_all(root_s, path, mode, uid, gid)]
    if mtime_ns is not None:
        for host in created:
            os.utime(host, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    return created


def _mkdir_all(root: str, path: str, mode: int, uid: int, gid: int) -> list[str]:
    """`mkdir_all` on strings (no mtimes): the host paths created."""
    if root == "/":
        root = ""
    created: list[str] = []
    known: set[str] = set()  # host directories this call has seen (or made) as directories
    current = "/"
    for part in clean_abs(path).split("/"):
        if not part:
            continue
        current = posixpath.join(current, part)
        host = _resolve(root, current, True)
        if host is None:
            continue
        # Walk the resolved path: a symlink may point at several missing levels.
        step = root
        for name in host[len(root) + 1 :].split("/"):
            step = step + "/" + name
            if step in known:
                continue
            try:
                info = os.lstat(step)
            except FileNotFoundError:
                os.mkdir(step, 0o700)
                os.lchown(step, uid, gid)
                os.chmod(step, mode)
                created.append(step)
                known.add(step)
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise PathResolutionError(f"cannot create directory {current}: a file exists there")
            known.add(step)
    return created


def open_regular_in_root(root: Path | str, path: str, *, max_bytes: int = 64 << 20) -> bytes | None:
    """The bytes of the regular file at `path` inside `root`, or None when there is none.

    Symlinks are resolved inside the root; a directory, fifo, socket or device
    node at the path counts as no file, so an image cannot make us read a
    host device through its /etc/passwd. More than `max_bytes` is an error.
    """
    host = resolve_in_root(root, path)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENXIO):
            return None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > max_bytes:
            raise PathResolutionError(f"{path}: larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
