"""Walking a context with its ignore rules, and packing it as a deterministic tar."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from buildkit.dockerignore import IgnoreMatcher, MatchState
from buildkit.errors import ContextError


@dataclass(frozen=True)
class ContextEntry:
    """One entry of a context: `path` is relative to the root, `/`-separated."""

    path: str
    kind: Literal["dir", "file", "symlink"]
    mode: int
    size: int
    link_target: str
    source: Path


def write_deterministic_tar(entries: Iterable[ContextEntry], fileobj: BinaryIO) -> str:
    """Write `entries` as a tar with normalised headers; return its `sha256:` digest.

    Owner 0:0 without names, mtime 0, PAX format; modes and symlink targets
    are kept, hard links are written as plain files.
    """
    sink = _HashingWriter(fileobj)
    with tarfile.open(
        fileobj=cast(BinaryIO, sink),
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for entry in entries:
            _add_entry(tar, entry)
    return f"sha256:{sink.hexdigest()}"


def walk_context(root: Path, matcher: IgnoreMatcher) -> Iterator[ContextEntry]:
    # Excluded directories we walked into, not yet sent: one is sent just
    # before the first entry inside it that is (as BuildKit's walker does).
    pending: list[ContextEntry] = []

    def visit(directory: Path, prefix: str, state: MatchState | None) -> Iterator[ContextEntry]:
        try:
            names = sorted(os.listdir(directory), key=os.fsencode)
        except OSError as exc:
            raise ContextError(f"cannot read {str(directory)!r}: {exc.strerror}") from exc
        for name in names:
            rel = prefix + name
            path = directory / name
            try:
                info = os.lstat(path)
            except OSError as exc:
                raise ContextError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
            excluded, child_state = matcher.match_step(rel, state)
            entry = _entry(rel, path, info)
            if entry is None:
                continue
            if entry.kind == "dir":
                if excluded:
                    if matcher.can_skip_dir(rel):
                        continue
                    pending.append(entry)
                    yield from visit(path, rel + "/", child_state)
                    if pending and pending[-1] is entry:
                        pending.pop()
                    continue
                yield from pending
                pending.clear()
                yield entry
                yield from visit(path, rel + "/", child_state)
            elif not excluded:
                yield from pending
                pending.clear()
                yield entry

    yield from visit(root, "", None)


def _entry(rel: str, path: Path, info: os.stat_result) -> ContextEntry | None:
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        return ContextEntry(rel, "dir", mode, 0, "", path)
    if stat.S_ISREG(info.st_mode):
        return ContextEntry(rel, "file", mode, info.st_size, "", path)
    if stat.S_ISLNK(info.st_mode):
        return ContextEntry(rel, "symlink", mode, 0, os.readlink(path), path)
    return None


def _add_entry(tar: tarfile.TarFile, entry: ContextEntry) -> None:
    info = tarfile.TarInfo(entry.path + "/" if entry.kind == "dir" else entry.path)
    info.mode = entry.mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link_target
        tar.addfile(info)
    else:
        info.type = tarfile.REGTYPE
        try:
            fd = os.open(entry.source, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as f:
                info.size = os.fstat(f.fileno()).st_size
                tar.addfile(info, f)
        except OSError as exc:
            raise ContextError(f"cannot read {str(entry.source)!r}: {exc}") from exc


class _HashingWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
