"""Word splitting as BuildKit's Dockerfile parser does it.

Three splitters, because BuildKit has three and they disagree on purpose:

- `split_whitespace`: plain whitespace runs, no quoting (FROM, EXPOSE, the
  shell form of COPY/ADD/VOLUME);
- `parse_words`: whitespace outside quotes, quotes and escapes *kept* in the
  words (ENV, LABEL, ARG), for the expander to remove later;
- `extract_builder_flags`: the leading `--flag` words, quotes and backslashes
  *removed*, as BuildKit's extractBuilderFlags does.

`split_shell_words` splits like a POSIX shell but keeps quotes and escapes; it
is only used to find heredoc words (`<<EOF`) on an instruction line.
"""

from __future__ import annotations

import re

# Go's unicode.IsSpace (Python's str.isspace also counts \x1c-\x1f).
GO_SPACE = (
    " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")


def is_space(ch: str) -> bool:
    return ch in GO_SPACE


def split_whitespace(text: str, maxsplit: int = 0) -> list[str]:
    """Split on runs of blanks (BuildKit's reWhitespace); "" gives []."""
    if text == "":
        return []
    return _WHITESPACE.split(text, maxsplit=maxsplit)


def split_whitespace_braced(text: str, escape: str = "\\") -> list[str]:
    """split_whitespace, but blanks inside `${...}` do not split: the words of
    `FROM ${IMAGE:?must be set}` (used to let the expansion error show)."""
    words: list[str] = []
    word: list[str] = []
    depth, pos, n = 0, 0, len(text)
    while pos < n:
        ch = text[pos]
        if ch == escape and pos + 1 < n:
            word.append(text[pos : pos + 2])
            pos += 2
            continue
        if text.startswith("${", pos):
            depth += 1
            word.append("${")
            pos += 2
            continue
        if ch == "}" and depth:
            depth -= 1
        elif depth == 0 and ch in "\t\v\f\r ":
            if word:
                words.append("".join(word))
                word = []
            pos += 1
            continue
        word.append(ch)
        pos += 1
    if word:
        words.append("".join(word))
    return words


def extract_builder_flags(line: str) -> tuple[str, list[str]]:
    """Split the leading `--flag` words off `line`: (rest, flags).

    A word is a flag when it starts with `--`; a lone `--` ends the flags.
    Inside flags, quotes group and are removed, and a backslash takes the next
    character literally (always backslash, whatever the escape directive).
    """
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    pos, n = 0, len(line)
    while True:
        # Looking for the start of a word.
        while pos < n and is_space(line[pos]):
            pos += 1
        if pos == n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        quote = ""
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != "\\":
                    word.append(ch)
                pos += 1
                continue
            if is_space(ch):
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--" and not blank_ok:
            return line[pos:], words
        if blank_ok or text:
            words.append(text)
        word, blank_ok = [], False


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes.

    Used for ENV, LABEL and ARG: `A="a b" B=c` gives `['A="a b"', 'B=c']`.
    The escape character protects the next character (even a quote) and is
    kept; inside single quotes it is literal. An escape at the very end of
    the text is dropped.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    blank_ok = False
    pos, n = 0, len(rest)
    while pos < n:
        ch = rest[pos]
        if not in_word:
            if is_space(ch):
                pos += 1
                continue
            in_word = True
        if not quote:
            if is_space(ch):
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok, in_word = [], False, False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch == quote:
            quote = ""
        elif ch == escape and quote != "'":
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def split_shell_words(line: str, *, raw: bool = True) -> list[str]:
    """Split `line` into shell words (escape always backslash, no expansion).

    With `raw`, quotes and backslashes stay in the words; without, they are
    removed as a shell would. An unterminated quote ends the last word.
    """
    words: list[str] = []
    word: list[str] = []
    started = False
    pos, n = 0, len(line)
    while pos < n:
        ch = line[pos]
        if is_space(ch):
            if started:
                words.append("".join(word))
                word, started = [], False
            pos += 1
            continue
        started = True
        if ch == "\\":
            if raw:
                word.append(ch)
            if pos + 1 < n:
                word.append(line[pos + 1])
            pos += 2
            continue
        if ch in "'\"":
            end = _quote_end(line, pos)
            body = line[pos + 1 : end]
            if raw:
                word.append(line[pos : end + 1])
            elif ch == '"':
                word.append(re.sub(r'\\([\\"$`])', r"\1", body))
            else:
                word.append(body)
            pos = end + 1
            continue
        word.append(ch)
        pos += 1
    if started:
        words.append("".join(word))
    return words


def _quote_end(line: str, start: int) -> int:
    """Index of the quote closing the one at `start` (len(line) if none)."""
    quote = line[start]
    pos = start + 1
    while pos < len(line):
        if line[pos] == quote:
            return pos
        if quote == '"' and line[pos] == "\\":
            pos += 1
        pos += 1
    return len(line)
