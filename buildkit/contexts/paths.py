"""Names inside a context that can never lead out of it.

`safe_relpath` checks a name as written (a tar member, a git subdirectory);
`ensure_real_dirs` creates the parents of a tar member while unpacking,
refusing any symlink on the way. Resolving a path *inside* an unpacked
context, symlinks included, is `buildkit.fsutil.resolve_in_root`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from buildkit.errors import ContextError


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
