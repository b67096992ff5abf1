"""COPY/ADD source patterns: Go's `filepath.Match`, plus `**` for `--parents`.

`has_magic` is Go's `hasMeta` (`*`, `?`, `[` or `\\` make a pattern);
`compile_component` turns one path component into a regular expression with
Go's rules: `*` any run of characters, `?` one character, `[...]` a class
(negated by `^`, ranges with `-`), `\\` escapes the next character. A
malformed pattern (`[a`, a trailing `\\`) is `BadPattern`.

`match_path` matches a whole `/`-separated path; with `double_star=True` a
component that is exactly `**` matches any number of components, including
none, as in `COPY --parents ./src/**/*.txt`. Without it `**` is Go's `*`
twice, which is `*`: BuildKit resolves plain COPY sources with
`filepath.Match` one component at a time.

Pure: no filesystem.
"""

from __future__ import annotations

import functools
import re

__all__ = ["BadPattern", "compile_component", "has_magic", "match_component", "match_path"]


class BadPattern(ValueError):
    """A pattern Go's filepath.Match rejects with ErrBadPattern."""


def has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")


@functools.lru_cache(maxsize=512)
def compile_component(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise BadPattern(f"bad pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i = _class(pattern, i, out)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _class(pattern: str, start: int, out: list[str]) -> int:
    """Translate the class starting at `pattern[start] == "["`; return the index after it."""
    i, n = start + 1, len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    ranges: list[str] = []
    first = True
    while True:
        if i >= n:
            raise BadPattern(f"bad pattern {pattern!r}: unterminated [")
        if pattern[i] == "]" and not first:
            i += 1
            break
        first = False
        lo, i = _class_char(pattern, i)
        if i < n and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise BadPattern(f"bad pattern {pattern!r}: bad range")
            ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            ranges.append(re.escape(lo))
    body = "".join(ranges)
    out.append(f"[^/{body}]" if negate else f"[{body}]")
    return i


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise BadPattern(f"bad pattern {pattern!r}: bad character class")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise BadPattern(f"bad pattern {pattern!r}: trailing backslash")
    return pattern[i], i + 1


def match_component(pattern: str, name: str) -> bool:
    return compile_component(pattern).match(name) is not None


def match_path(pattern: str, path: str, *, double_star: bool = False) -> bool:
    """Whether `path` matches `pattern`, both `/`-separated and relative."""
    pats = [p for p in pattern.split("/") if p]
    parts = [p for p in path.split("/") if p]
    for p in pats:
        compile_component(p)  # report a bad pattern even when unreached
    return _match(tuple(pats), tuple(parts), double_star)


@functools.lru_cache(maxsize=4096)
def _match(pats: tuple[str, ...], parts: tuple[str, ...], double_star: bool) -> bool:
    if not pats:
        return not parts
    head = pats[0]
    if double_star and head == "**":
        return any(_match(pats[1:], parts[k:], double_star) for k in range(len(parts) + 1))
    if not parts:
        return False
    return match_component(head, parts[0]) and _match(pats[1:], parts[1:], double_star)
