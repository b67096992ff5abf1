""".dockerignore, matched exactly as Docker matches it.

Reading follows Docker's ignore-file reader (moby/patternmatcher `ignorefile`):
a line whose first character is `#` is a comment; every other line is trimmed;
a blank line is skipped; `!` starts an exception (spaces after it are trimmed
too); the pattern is cleaned as Go's `filepath.Clean` cleans it (so `./a`,
`a/` and `a//b/..` are `a`) and one leading `/` is dropped.

Matching follows moby/patternmatcher, as BuildKit's context walker (fsutil)
uses it: a glob in Go's `filepath.Match` syntax (`*` and `?` never cross `/`,
`[...]` classes negated by `^`, `\\` escapes) plus `**` for any number of
directories (`**/` may match none, a trailing `**` matches everything below).
A path is excluded when a pattern matches it or one of its parent directories;
patterns apply in order, so the last one that matches decides. A trailing `/`
means nothing: `build/` also excludes a file named `build`.

Pure: no filesystem, no I/O. The walker in `buildkit/context.py` uses
`match_step` to carry each directory's results down to its children, and
`can_skip_dir` to decide whether an excluded directory needs walking at all
(it does when an exception could re-include something inside it).
"""

from __future__ import annotations

import enum
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from buildkit.errors import ContextError

__all__ = [
    "IgnoreMatcher",
    "MatchState",
    "Pattern",
    "clean_path",
    "read_patterns",
]

# Characters Go's patternmatcher escapes when it builds a regexp: regexp
# metacharacters that mean nothing in a filepath.Match pattern.
_REGEXP_ONLY_SPECIALS = frozenset(".+()|{}$")
# Characters whose presence in an exception makes BuildKit walk every excluded
# directory (fsutil's `patternChars`).
_GLOB_CHARS = frozenset("*[]?^\\")
# `\x` escapes whose meaning is the same in Go's RE2 and in Python's `re`.
_SHARED_LETTER_ESCAPES = frozenset("dwsDWSbBAaftnrv")


def clean_path(path: str) -> str:
    """Go's `path.Clean`: the shortest path equivalent to `path`, lexically.

    Unlike `posixpath.normpath`, `//a` is `/a` and `""` is `.`.
    """
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, as Docker's reader returns them.

    Comments and blank lines are dropped; `!` is kept as the first character
    of an exception. A bare `!` is returned as `!` (IgnoreMatcher rejects it).
    """
    patterns: list[str] = []
    for number, raw in enumerate(text.split("\n")):
        line = raw[:-1] if raw.endswith("\r") else raw
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean_path(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


class _Kind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern: `text` is cleaned and has no leading `!`."""

    text: str
    exclusion: bool
    kind: _Kind = field(repr=False)
    regexp: re.Pattern[str] | None = field(repr=False, compare=False)

    @classmethod
    def compile(cls, line: str) -> Pattern:
        text = clean_path(line.strip())
        exclusion = text.startswith("!")
        if exclusion:
            if len(text) == 1:
                raise ContextError('.dockerignore: illegal exclusion pattern: "!"')
            text = text[1:]
        _check_syntax(text)
        kind, go_regexp = _translate(text)
        regexp = None
        if kind is _Kind.REGEXP:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    regexp = re.compile(_go_regexp_to_python(go_regexp), re.UNICODE)
            except re.error as exc:
                raise ContextError(f".dockerignore: bad pattern {line!r}: {exc}") from exc
        return cls(text=text, exclusion=exclusion, kind=kind, regexp=regexp)

    def match(self, path: str) -> bool:
        """Whether this pattern alone matches `path` (no parent directories)."""
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            # `**/foo` also matches `foo` itself.
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None

    def without_trailing_glob(self) -> str:
        """The pattern minus a trailing `/**` or `/*` (fsutil's prefix test)."""
        text = self.text.removesuffix("/**")
        return text.removesuffix("/*")

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.text


@dataclass(frozen=True)
class MatchState:
    """Which patterns matched a directory; its children start from it."""

    matched: tuple[bool, ...]


class IgnoreMatcher:
    """The compiled patterns of one .dockerignore file."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        compiled: list[Pattern] = []
        for line in patterns:
            if not line.strip():
                continue
            compiled.append(Pattern.compile(line))
        self.patterns: tuple[Pattern, ...] = tuple(compiled)
        self.has_exceptions = any(p.exclusion for p in compiled)
        # BuildKit only trusts the prefix test in can_skip_dir when no
        # exception has a glob character (ignoring a trailing /** or /*).
        self._prefix_exceptions_only = not any(
            p.exclusion and _GLOB_CHARS.intersection(p.without_trailing_glob()) for p in compiled
        )

    @classmethod
    def from_text(cls, text: str) -> IgnoreMatcher:
        """Parse the text of a .dockerignore file."""
        return cls(read_patterns(text))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"IgnoreMatcher({[str(p) for p in self.patterns]!r})"

    def match_step(self, path: str, parent: MatchState | None) -> tuple[bool, MatchState]:
        """Whether `path` is excluded, given the state of its parent directory.

        `parent` is None for an entry at the root of the context. This is
        patternmatcher's `MatchesUsingParentResults`: a pattern that matched
        the parent directory still matches its children.
        """
        excluded = False
        states: list[bool] = []
        for index, pattern in enumerate(self.patterns):
            hit = parent.matched[index] if parent is not None else False
            if not hit:
                # An include that cannot change a match, or an exception that
                # cannot change a non-match, is not evaluated (as Docker does:
                # it is recorded as not matching for the children).
                if pattern.exclusion != excluded:
                    states.append(False)
                    continue
                hit = pattern.match(path)
            states.append(hit)
            if hit:
                excluded = not pattern.exclusion
        return excluded, MatchState(tuple(states))

    def matches(self, rel_path: str, is_dir: bool = False) -> bool:
        """Whether `rel_path` (relative to the context root, `/`-separated) is excluded.

        `is_dir` does not change the answer: Docker's patterns do not tell
        files from directories. The context root itself is never excluded.
        """
        del is_dir
        path = clean_path(rel_path.lstrip("/"))
        if path in (".", "..") or path.startswith("../"):
            return False
        parts = path.split("/")
        excluded = False
        state: MatchState | None = None
        for depth in range(len(parts)):
            excluded, state = self.match_step("/".join(parts[: depth + 1]), state)
        return excluded

    def can_skip_dir(self, rel_dir: str) -> bool:
        """Whether an excluded directory can be left out without walking it.

        False when an exception could re-include something below it: Docker
        then walks into the directory and sends it only if something inside
        is included. With a glob in any exception Docker always walks.
        """
        if not self._prefix_exceptions_only:
            return False
        if not self.has_exceptions:
            return True
        dir_slash = clean_path(rel_dir.lstrip("/")) + "/"
        for pattern in self.patterns:
            if pattern.exclusion and (pattern.without_trailing_glob() + "/").startswith(dir_slash):
                return False
        return True


def _check_syntax(pattern: str) -> None:
    """Reject what Go's `filepath.Match` rejects with ErrBadPattern."""

    def bad(why: str) -> ContextError:
        return ContextError(f".dockerignore: bad pattern {pattern!r}: {why}")

    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise bad("trailing backslash")
            i += 2
            continue
        if ch != "[":
            i += 1
            continue
        i += 1
        if i < n and pattern[i] == "^":
            i += 1
        ranges = 0
        while True:
            if i < n and pattern[i] == "]" and ranges > 0:
                i += 1
                break
            i = _class_char(pattern, i, bad)
            if pattern[i] == "-":
                i = _class_char(pattern, i + 1, bad)
            ranges += 1


def _class_char(pattern: str, i: int, bad: Callable[[str], ContextError]) -> int:
    """Go's getEsc: one (possibly escaped) character of a class; returns the next index."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise bad("malformed character class")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise bad("malformed character class")
    i += 1
    if i >= n:
        raise bad("unterminated character class")
    return i


def _translate(pattern: str) -> tuple[_Kind, str]:
    """patternmatcher's compile: the match kind and (for REGEXP) its Go regexp."""
    out = ["^"]
    kind = _Kind.EXACT
    i, n, step = 0, len(pattern), 0
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    # A trailing `**` accepts everything, as .gitignore does.
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        out.append(".*")
                        kind = _Kind.REGEXP
                else:
                    out.append("(.*/)?")
                    kind = _Kind.REGEXP
                if step == 0:
                    kind = _Kind.SUFFIX
            else:
                out.append("[^/]*")
                kind = _Kind.REGEXP
        elif ch == "?":
            out.append("[^/]")
            kind = _Kind.REGEXP
        elif ch in _REGEXP_ONLY_SPECIALS:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append("\\" + pattern[i])
                i += 1
                kind = _Kind.REGEXP
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = _Kind.REGEXP
        else:
            out.append(ch)
        step += 1
    out.append("$")
    return kind, "".join(out)


def _go_regexp_to_python(go: str) -> str:
    """Rewrite the Go (RE2) regexp patternmatcher builds for Python's `re`.

    The constructs that can occur read the same in both, except: `$` must
    not match before a final newline (`\\Z`), `[` inside a class is literal
    in RE2 (escaped here), `\\z` is Python's `\\Z`, and an escaped letter RE2
    would reject is rejected.
    """
    out: list[str] = []
    in_class = False
    i, n = 0, len(go)
    while i < n:
        ch = go[i]
        if ch == "\\" and i + 1 < n:
            nxt = go[i + 1]
            if nxt.isascii() and nxt.isalnum():
                if nxt == "z":
                    out.append("\\Z")
                elif nxt in _SHARED_LETTER_ESCAPES:
                    out.append("\\" + nxt)
                else:
                    raise re.error(f"unsupported escape \\{nxt}")
            elif nxt.isascii():
                out.append("\\" + nxt)
            else:
                raise re.error(f"invalid escape \\{nxt}")
            i += 2
            continue
        if in_class:
            # filepath.Match syntax was checked first, so a class never
            # starts with `]` and the first `]` closes it.
            if ch == "]":
                in_class = False
                out.append("]")
            elif ch in "[&~|":
                out.append("\\" + ch)
            else:
                out.append(ch)
        elif ch == "[":
            in_class = True
            out.append("[")
        elif ch == "$" and i == n - 1:
            out.append(r"\Z")
        else:
            out.append(ch)
        i += 1
    return "".join(out)
