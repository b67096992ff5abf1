"""Heredoc words (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on an instruction line.

As in BuildKit, a heredoc is a shell word that starts with `<<` (optionally
after a file-descriptor number), not `<<<`; since Dockerfile 1.16 blanks may
separate `<<` from the name (`<< EOF`). The name is the word with its quotes
removed; any quoting turns variable expansion of the body off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildkit.dockerfile.words import split_shell_words

_HEREDOC = re.compile(r"(\d*)<<(-?)\s*([^<]*)", re.DOTALL)
_OPENER = re.compile(r"\d*<<-?")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@dataclass(frozen=True)
class HeredocWord:
    """What a heredoc word says: the delimiter, and how to treat the body."""

    name: str
    expand: bool
    chomp: bool


def parse_heredoc_word(word: str) -> HeredocWord | None:
    """`<<-"EOF"` → HeredocWord("EOF", expand=False, chomp=True); None if not one."""
    match = _HEREDOC.fullmatch(word)
    if match is None or match.group(3) == "":
        return None
    rest = match.group(3)
    plain = split_shell_words(rest, raw=False)
    raw = split_shell_words(rest, raw=True)
    if len(plain) != 1 or len(raw) != 1:
        return None
    quotes_plain = plain[0].count("'") + plain[0].count('"')
    quotes_raw = raw[0].count("'") + raw[0].count('"')
    return HeredocWord(
        name=plain[0], expand=quotes_plain == quotes_raw, chomp=match.group(2) == "-"
    )


def heredocs_in_line(line: str) -> list[HeredocWord]:
    """Every heredoc word of `line`, in order."""
    words = split_shell_words(line, raw=True)
    found: list[HeredocWord] = []
    i = 0
    while i < len(words):
        word = words[i]
        if _OPENER.fullmatch(word) and i + 1 < len(words):
            # `<< EOF`: the opener and the name are two shell words.
            word += words[i + 1]
            i += 1
        heredoc = parse_heredoc_word(word)
        if heredoc is not None:
            found.append(heredoc)
        i += 1
    return found


def chomp(content: str) -> str:
    """Strip the leading tabs of every line, as `<<-` asks."""
    return _LEADING_TABS.sub("", content)
