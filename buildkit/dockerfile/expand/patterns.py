"""The patterns of `${v#p}`, `${v%p}` and `${v/p/r}`: BuildKit's globs and Go's regexps.

`_glob_regex` turns a substitution pattern into a regular expression (`*`,
`?` and backslash escapes, everything else literal), `_trim` removes a
shortest or longest prefix or suffix, and `_go_replace_all` /
`_go_expand_template` replace as Go's `Regexp.ReplaceAllString` does.
"""

from __future__ import annotations

import re

from buildkit.dockerfile.expand.expansion import ExpansionError

_EOF = ""  # no next character, as in the lexer


def _glob_regex(pattern: str, *, greedy: bool) -> re.Pattern[str]:
    """BuildKit's glob → regexp: `*`, `?`, backslash escapes, all else literal."""
    src = pattern[1:] if pattern.startswith("\ufeff") else pattern
    out: list[str] = []
    i = 0
    while i < len(src):
        ch = src[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = src[i] if i < len(src) else _EOF
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                shown = f"invalid escape '\\{nxt}'" if nxt else "invalid escape '\\' at the end"
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: {shown}")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim(value: str, pattern: str, longest: bool, *, suffix: bool) -> str:
    """`${v#p}`/`${v##p}`, or `%`/`%%` by matching the reversed pattern on the reversed value."""
    if suffix:
        value, pattern = value[::-1], _reverse_pattern(pattern)
    m = _glob_regex(pattern, greedy=longest).match(value)
    if m is not None:
        value = value[m.end() :]
    return value[::-1] if suffix else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a glob keeping each backslash pair in order: `a\\*c` -> `c\\*a`."""
    units: list[str] = []
    i = 0
    while i < len(pattern):
        step = 2 if pattern[i] == "\\" and i + 1 < len(pattern) else 1
        units.append(pattern[i : i + step])
        i += step
    return "".join(reversed(units))


def _go_replace_all(regex: re.Pattern[str], value: str, template: str) -> str:
    """Go's Regexp.ReplaceAllString: an empty match right after a match is skipped."""
    out: list[str] = []
    last_end = search = 0
    while search <= len(value):
        m = regex.search(value, search)
        if m is None:
            break
        start, end = m.span()
        out.append(value[last_end:start])
        if end > last_end or start == 0:
            out.append(_go_expand_template(template, m.group()))
        last_end = end
        width = 1 if search < len(value) else 0
        if search + width > end:
            search += width
        elif search + 1 > end:
            search += 1
        else:
            search = end
    out.append(value[last_end:])
    return "".join(out)


_GO_TEMPLATE_REF = re.compile(r"\$(?:(\$)|\{(\w+)\}|(\w+))")


def _go_expand_template(template: str, match: str) -> str:
    """Go's Regexp.Expand for a pattern without groups: `$0` is the match."""

    def ref(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(3)
        return match if name == "0" else ""

    return _GO_TEMPLATE_REF.sub(ref, template)
