"""COPY/ADD sources: a source as written → the entries it names in a source tree.

`expand_source(src_root, "src/*.go")` cleans the source as BuildKit does
(`../x` and `/x` are `x`, a trailing `/` means nothing), expands wildcards one
component at a time with `buildkit.globs`, and resolves each match inside the
source root, following a symlink at the match itself (COPY follows the
source it is given, not the links inside a copied directory).

With `parents=True` (`COPY --parents`), `**` spans directories and each match
carries the path to keep below the destination: relative to the context root,
or to the `/./` pivot when the source has one (`./x/./y/*.txt` keeps `y/...`).

A plain source that does not exist is a ContextError naming it; a wildcard
that matches nothing names nothing (BuildKit allows empty wildcards), unless
the directory it would look in does not exist.

What a COPY of a match then reads is decided here too, once, for
`buildkit.copy` (which writes it) and `buildkit.cache.contents` (which hashes
it for the cache key), so the two cannot disagree. `--exclude` patterns drop a
match by its name (`is_excluded`) and the entries below a directory match by
their path relative to it (`walk_selected`); an excluded directory is still
entered when an exception (`!pattern`) may re-include something in it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from buildkit.dockerignore import IgnoreMatcher
from buildkit.errors import ContextError
from buildkit.fsutil import PathResolutionError, clean_abs, resolve_in_root
from buildkit.globs import BadPattern, has_magic, match_component

__all__ = ["Match", "expand_source", "is_excluded", "walk_selected"]


@dataclass(frozen=True)
class Match:
    path: str  # the matched path in the source tree, absolute and clean
    host: Path  # where it is on the host, resolved inside the source root
    rel: str = ""  # with --parents: the path to recreate under the destination


def _split_pivot(source: str) -> tuple[str, str]:
    """(source without the pivot, the pivot directory) for `--parents`."""
    text = source.lstrip("/")
    while text.startswith("./"):
        text = text[2:].lstrip("/")
    index = text.find("/./")
    if index < 0:
        return text, "/"
    return text[:index] + "/" + text[index + 3 :], clean_abs(text[:index])


def expand_source(
    src_root: Path | str,
    source: str,
    *,
    parents: bool = False,
    source_name: str = "build context",
) -> list[Match]:
    root = Path(src_root)
    text, pivot = _split_pivot(source) if parents else (source, "/")
    pattern = clean_abs(text)
    if has_magic(pattern):
        try:
            paths = _glob(root, pattern, double_star=parents, source=source, where=source_name)
        except BadPattern as exc:
            raise ContextError(f"invalid source pattern {source!r}: {exc}") from exc
    else:
        paths = [pattern]
    matches = []
    for path in paths:
        host = _lookup(root, path, follow_last=True)
        if host is None:
            raise ContextError(f'source "{source}" not found in {source_name}: {path}')
        rel = ""
        if parents:
            rel = posixpath.relpath(path, pivot)
            if rel == ".":
                rel = ""
            elif rel.startswith(".."):
                raise ContextError(f"source {source!r}: {path} is not below {pivot}")
        matches.append(Match(path=path, host=host, rel=rel))
    return matches


def _glob(root: Path, pattern: str, *, double_star: bool, source: str, where: str) -> list[str]:
    parts = [p for p in pattern.split("/") if p]
    candidates = ["/"]
    expanded = False  # whether a wildcard component has been expanded yet
    for index, part in enumerate(parts):
        is_last = index == len(parts) - 1
        if double_star and part == "**":
            if is_last:
                continue  # `dir/**` is everything below dir: copying dir covers it
            candidates = [d for c in candidates for d in _walk_dirs(root, c)]
            expanded = True
            continue
        if not has_magic(part):
            candidates = [posixpath.join(c, part) for c in candidates]
            continue
        literal = [c for c in candidates if _is_dir(root, c)]
        if not expanded and not literal:
            raise ContextError(f"source {source!r}: {candidates[0]}: no such directory in {where}")
        found: list[str] = []
        for c in literal:
            with os.scandir(resolve_in_root(root, c)) as it:
                names = sorted(entry.name for entry in it)
            found.extend(posixpath.join(c, n) for n in names if match_component(part, n))
        candidates = found
        expanded = True
    seen: set[str] = set()
    result = []
    for c in candidates:
        if c not in seen and _lookup(root, c, follow_last=False) is not None:
            seen.add(c)
            result.append(c)
    return sorted(result)


def _is_dir(root: Path, path: str) -> bool:
    host = _lookup(root, path, follow_last=True)
    return host is not None and host.is_dir()


def _lookup(root: Path, path: str, *, follow_last: bool) -> Path | None:
    """The host path of `path` if something is there (a dangling link counts without follow)."""
    try:
        host = resolve_in_root(root, path, follow_last=follow_last)
    except PathResolutionError:
        return None  # a file used as a directory on the way: nothing there
    return host if os.path.lexists(host) else None


def _walk_dirs(root: Path, start: str) -> list[str]:
    """`start` and every directory below it (symlinked directories are not entered)."""
    host = resolve_in_root(root, start)
    if not os.path.isdir(host):
        return []
    out = [start]
    stack = [(start, host)]
    while stack:
        image, current = stack.pop()
        with os.scandir(current) as it:
            for entry in sorted(it, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    child = posixpath.join(image, entry.name)
                    out.append(child)
                    stack.append((child, Path(entry.path)))
    return sorted(out)


def is_excluded(match: Match, excludes: IgnoreMatcher | None) -> bool:
    """Whether `--exclude` drops a whole match: it is matched by its name."""
    return excludes is not None and excludes.matches(posixpath.basename(match.path))


def walk_selected(
    directory: Path | str, excludes: IgnoreMatcher | None
) -> Iterator[tuple[str, str, os.stat_result]]:
    """`(rel, host path, lstat)` of every entry a COPY of `directory` reads.

    Names sorted, a directory before its contents; `rel` is `/`-separated and
    relative to `directory`, which is not itself included. Symlinks are
    entries, never entered. An excluded directory is left out unless an
    exception may re-include something in it and something in it is not
    excluded; then it is entered and its contents are judged one by one.
    """
    # Strings, not Paths, and one lstat per entry: this runs for every entry.
    text = os.fspath(directory)
    yield from _walk(text if text.endswith("/") else text + "/", "", excludes)


def _walk(
    prefix: str, rel: str, excludes: IgnoreMatcher | None
) -> Iterator[tuple[str, str, os.stat_result]]:
    with os.scandir(prefix) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        child_rel = f"{rel}/{name}" if rel else name
        path = prefix + name
        info = os.lstat(path)
        is_dir = stat.S_ISDIR(info.st_mode)
        if excludes is not None and excludes.matches(child_rel):
            if not is_dir or excludes.can_skip_dir(child_rel):
                continue
            if not _has_included(path, child_rel, excludes):
                continue
        yield child_rel, path, info
        if is_dir:
            yield from _walk(path + "/", child_rel, excludes)


def _has_included(directory: str, rel: str, excludes: IgnoreMatcher) -> bool:
    """Whether anything below the excluded `directory` is not excluded."""
    with os.scandir(directory) as it:
        for entry in it:
            child = f"{rel}/{entry.name}"
            if not excludes.matches(child):
                return True
            if entry.is_dir(follow_symlinks=False) and _has_included(entry.path, child, excludes):
                return True
    return False
