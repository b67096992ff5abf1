"""Digests of the files a COPY or ADD would read: the content part of its cache key.

`hash_sources(spec, src_root)` selects exactly what `buildkit.copy` (and the
local part of `buildkit.add`) would copy: each source expanded with
`buildkit.sources.expand_source` (wildcards, `--parents` with `**` and the
`/./` pivot, a symlinked source followed), then `--exclude` applied and
directories walked by the very functions COPY uses (`is_excluded`,
`walk_selected`), so the key cannot disagree with what is copied. For every
selected entry it covers the relative path, the type, the permission bits,
uid and gid, the sha256 of a regular file's content, a symlink's target, a
device's numbers and which entries are hard links of each other (COPY keeps
them linked). Not covered: mtimes and atimes (as in
BuildKit: touching a file is not a change), xattrs (COPY does not copy
them), sockets (COPY skips them).

Owners are covered even for the build context, where COPY writes 0:0: a
spurious miss, never a false hit, and the same rule for `--from` trees.

Remote ADD sources are keyed by what is written plus what the caller knows:
`remote[url]` (the content digest of a download, an ETag, the commit a git
ref resolved to) when given. Without it a remote source is keyed on the URL
alone (plus `--checksum`, in the step key): a file that changed behind the
same URL, or a branch that moved, would be a stale hit. So the builder always
supplies it (`buildkit.add.Downloads.identities`): as BuildKit does, it
fetches an `http(s)` URL to key on the sha256 of its content, resolves a git
ref with `git ls-remote`, and with `--checksum` keys on the checksum alone.

`FileDigests` remembers the sha256 of files by (path, device, inode, size,
mtime_ns, ctime_ns) for the life of a process, so a big unchanged context is
read once. ctime is in the key because a write that keeps size and mtime
(`touch -r`) still moves it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from buildkit.add import is_url
from buildkit.cache.canonical import canonical_digest
from buildkit.digest import CHUNK
from buildkit.dockerfile.instructions import Add, CopyBase
from buildkit.dockerignore import IgnoreMatcher
from buildkit.errors import ContextError
from buildkit.fsutil import PathResolutionError, clean_abs, resolve_in_root
from buildkit.gitsource import is_git_url
from buildkit.sources import Match, expand_source, is_excluded, walk_selected

__all__ = ["FileDigests", "hash_sources", "hash_tree"]

CONTENTS_VERSION = 1

_StatKey = tuple[str, int, int, int, int, int]


class FileDigests:
    """sha256 of regular files, remembered while the file looks unchanged."""

    def __init__(self, max_entries: int = 1 << 20) -> None:
        self.max_entries = max_entries
        self._known: dict[_StatKey, str] = {}
        self.hits = 0

    def digest(self, path: Path | str, info: os.stat_result) -> str:
        key = (
            os.fspath(path),
            info.st_dev,
            info.st_ino,
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
        )
        found = self._known.get(key)
        if found is not None:
            self.hits += 1
            return found
        digest, after = _hash_file(path)
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == key[3:]:
            if len(self._known) >= self.max_entries:
                self._known.clear()
            self._known[key] = digest
        return digest


def _hash_file(path: Path | str) -> tuple[str, os.stat_result]:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
        after = os.fstat(f.fileno())
    return h.hexdigest(), after


class _Walker:
    """The entries one COPY would read, selected by `buildkit.sources` as COPY selects them."""

    def __init__(self, excludes: IgnoreMatcher | None, cache: FileDigests | None) -> None:
        self.excludes = excludes
        self.cache = cache
        self.links: dict[tuple[int, int], str] = {}

    def match(self, match: Match, label: str) -> list[dict[str, Any]] | None:
        """The entries of one expanded source, None when --exclude drops it."""
        if is_excluded(match, self.excludes):
            return None
        info = os.lstat(match.host)  # resolved: no symlink left in it
        out: list[dict[str, Any]] = []
        top = self.entry(match.host, info, "", label)
        if top is not None:
            out.append(top)
        if stat.S_ISDIR(info.st_mode):
            for rel, path, child_info in walk_selected(match.host, self.excludes):
                entry = self.entry(path, child_info, rel, label)
                if entry is not None:
                    out.append(entry)
        return out

    def entry(
        self, path: Path | str, info: os.stat_result, rel: str, label: str
    ) -> dict[str, Any] | None:
        mode = info.st_mode
        entry: dict[str, Any] = {
            "path": rel,
            "mode": stat.S_IMODE(mode),
            "uid": info.st_uid,
            "gid": info.st_gid,
        }
        if stat.S_ISDIR(mode):
            entry["type"] = "dir"
        elif stat.S_ISREG(mode):
            entry["type"] = "file"
            entry["size"] = info.st_size
            entry["sha256"] = (
                self.cache.digest(path, info) if self.cache is not None else _hash_file(path)[0]
            )
            if info.st_nlink > 1:
                inode = (info.st_dev, info.st_ino)
                first = self.links.setdefault(inode, f"{label}:{rel}")
                entry["hardlink_group"] = first
        elif stat.S_ISLNK(mode):
            entry["type"] = "symlink"
            entry["target"] = os.readlink(path)
        elif stat.S_ISFIFO(mode):
            entry["type"] = "fifo"
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            entry["type"] = "char" if stat.S_ISCHR(mode) else "block"
            entry["device"] = [os.major(info.st_rdev), os.minor(info.st_rdev)]
        else:
            return None  # sockets: COPY skips them
        return entry


def hash_sources(
    spec: CopyBase,
    src_root: Path,
    *,
    cache: FileDigests | None = None,
    remote: Mapping[str, str] | None = None,
) -> str:
    """`sha256:<hex>` of what `spec` would copy from `src_root` (see the module docstring).

    Raises what COPY would raise for a missing source (`ContextError`), so
    a bad source fails the same way whether or not the cache is on.
    """
    parents = bool(getattr(spec, "parents", False))
    walker = _Walker(IgnoreMatcher(spec.excludes) if spec.excludes else None, cache)
    sources: list[dict[str, Any]] = []
    for index, source in enumerate(spec.sources):
        if isinstance(spec, Add) and (is_git_url(source) or is_url(source)):
            known = (remote or {}).get(source, "")
            sources.append({"source": source, "remote": known})
            continue
        matches = []
        for match in expand_source(src_root, source, parents=parents):
            label = f"{index}:{match.path}"
            entries = walker.match(match, label)
            matches.append({"path": match.path, "rel": match.rel, "entries": entries})
        sources.append({"source": source, "matches": matches})
    return canonical_digest({"v": CONTENTS_VERSION, "sources": sources})


def hash_tree(src_root: Path, path: str = "/", *, cache: FileDigests | None = None) -> str:
    """`sha256:<hex>` of everything at `path` in `src_root` (the source of a
    RUN bind mount), with the same per-entry rules as `hash_sources`."""
    image_path = clean_abs(path)
    try:
        host = resolve_in_root(src_root, image_path)
    except PathResolutionError as exc:
        raise ContextError(f"mount source {path!r}: {exc}") from exc
    if not os.path.lexists(host):
        raise ContextError(f"mount source {path!r} not found")
    walker = _Walker(None, cache)
    entries = walker.match(Match(path=image_path, host=host), image_path)
    return canonical_digest({"v": CONTENTS_VERSION, "tree": image_path, "entries": entries})
