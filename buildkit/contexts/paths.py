"""Paths inside a context root that can never lead out of it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from buildkit.errors import ContextError

_MAX_SYMLINK_HOPS = 255


def safe_relpath(name: str, *, what: str) -> str:
    """`name` as a clean relative path, or a ContextError naming it.

    Refuses absolute paths, `..` components and NUL bytes; drops `.`
    components and a trailing `/`. Returns "" for the root itself.
    """
    if "\x00" in name:
        raise ContextError(f"{what}: invalid path {name!r}")
    if name.startswith("/"):
        raise ContextError(f"{what}: absolute path {name!r} is not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"{what}: path {name!r} leads outside the context")
    return "/".join(parts)


def resolve_in_root(root: Path, rel: str) -> Path:
    """Follow `rel` under `root`, symlinks included, as if `root` were `/`.

    A symlink's absolute target starts again at `root` and `..` stops at
    `root`, as BuildKit resolves paths in a context, so the result is always
    inside `root`. Missing components are kept as they are: the result need
    not exist.
    """
    pending = [p for p in reversed(rel.split("/")) if p]
    current: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        try:
            mode = os.lstat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            current.append(part)
            continue
        if not stat.S_ISLNK(mode):
            current.append(part)
            continue
        hops += 1
        if hops > _MAX_SYMLINK_HOPS:
            raise ContextError(f"too many levels of symbolic links in {rel!r}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            current = []
        pending.extend(p for p in reversed(target.split("/")) if p)
    return root.joinpath(*current)


def ensure_real_dirs(root: Path, rel_dir: str, *, what: str) -> Path:
    """Create `root/rel_dir` (mode 0755 for new ones), refusing symlinks on the way.

    Every existing component must be a real directory: a symlink would let a
    later write land outside `root`.
    """
    current = root
    for part in [p for p in rel_dir.split("/") if p]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(mode):
            raise ContextError(f"{what}: path goes through the symbolic link {part!r}")
        if not stat.S_ISDIR(mode):
            raise ContextError(f"{what}: {part!r} is not a directory")
    return current
