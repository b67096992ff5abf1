"""The shell-word lexer that does the expanding, after BuildKit's `shell/lex.go`.

`_Lexer` walks one word (or heredoc body) once: quotes, the escape character,
`$name` and `${name<op>word}`, collecting the names it matched and did not;
`_Words` splits the result on unquoted whitespace as it goes. The glob and
regexp helpers of `${v#p}` and `${v/p/r}` live in `patterns`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from buildkit.dockerfile.expand.expansion import Expansion, ExpansionError
from buildkit.dockerfile.expand.patterns import _glob_regex, _go_replace_all, _trim

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# Go's unicode.IsSpace: Latin-1 space characters plus the White_Space property.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_EOF = ""


@dataclass
class _Words:
    """Word splitting as the lexer goes: raw text never splits, expanded text does."""

    words: list[str] = field(default_factory=list)
    buf: str = ""
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch in _SPACES:
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        self.buf += text
        self.in_word = True

    def finish(self) -> tuple[str, ...]:
        if self.buf:
            self.words.append(self.buf)
        return tuple(self.words)


class _Lexer:
    def __init__(
        self,
        src: str,
        env: Mapping[str, str],
        escape: str,
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"escape must be '\\' or '`', not {escape!r}")
        self.word = src
        # Go's text/scanner drops a byte-order mark at the start of its input.
        self.src = src[1:] if src.startswith("\ufeff") else src
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def run(self) -> Expansion:
        try:
            value, words = self._until(_EOF, self.raw_escapes)
        except ExpansionError as exc:
            raise ExpansionError(exc.message, self.word) from None
        return Expansion(value, frozenset(self.unmatched), frozenset(self.matched), words)

    def _peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else _EOF

    def _next(self) -> str:
        ch = self._peek()
        self.pos += len(ch)
        return ch

    def _lookup(self, name: str) -> str | None:
        if name in self.env:
            self.matched.add(name)
            return self.env[name]
        self.unmatched.add(name)
        return None

    def _until(self, stop: str, raw_escapes: bool) -> tuple[str, tuple[str, ...]]:
        """Process up to `stop` (consumed) or the end when `stop` is _EOF."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            out: list[str] = []
            words = _Words()
            while (ch := self._peek()) != _EOF:
                if stop and ch == stop:
                    self._next()
                    return "".join(out), words.finish()
                if ch == "$":
                    text = self._dollar()
                    out.append(text)
                    words.add_string(text)
                elif ch in "'\"":
                    text = self._single_quoted() if ch == "'" else self._double_quoted()
                    out.append(text)
                    words.add_raw(text)
                elif self._next() == self.escape:
                    if self.raw_escapes:
                        out.append(ch)
                        words.add_raw(ch)
                    ch = self._next()
                    if ch == _EOF:
                        break
                    out.append(ch)
                    words.add_raw(ch)
                else:
                    out.append(ch)
                    words.add_char(ch)
            if stop:
                raise ExpansionError(
                    f"unexpected end of statement while looking for matching {stop}"
                )
            return "".join(out), words.finish()
        finally:
            self.raw_escapes = saved

    def _single_quoted(self) -> str:
        quote = self._next()
        out = [quote] if self.raw_quotes else []
        while (ch := self._next()) != "'":
            if ch == _EOF:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            out.append(ch)
        if self.raw_quotes:
            out.append(ch)
        return "".join(out)

    def _double_quoted(self) -> str:
        quote = self._next()
        out = [quote] if self.raw_quotes else []
        while True:
            ch = self._peek()
            if ch == _EOF:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self._next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self._next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                if self._peek() == _EOF:
                    continue  # the loop then fails on the missing quote
                if self._peek() in ('"', "$", self.escape):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        ch = self._peek()
        if ch.isdecimal():
            start = self.pos
            while self._peek() != _EOF and self._peek().isdecimal():
                self._next()
            return self.src[start : self.pos]
        if ch != _EOF and ch in _SPECIAL_PARAMS:
            return self._next()
        start = self.pos
        while (ch := self._peek()) != _EOF and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self._next()
        return self.src[start : self.pos]

    def _dollar(self) -> str:
        self._next()  # "$"
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self._lookup(name) or ""
        self._next()  # "{"
        ch = self._peek()
        if ch == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        op = self._next()
        if op == "}":
            return self._lookup(name) or ""
        if op == _EOF:  # BuildKit says "unsupported modifier (\ufffd)"; this is clearer
            raise ExpansionError("syntax error: missing '}'")
        if op == "/":
            return self._replace(name)
        colon = op == ":"
        mod = op
        if colon:
            op = self._next()
            mod += op or "\ufffd"
            if op in ("#", "%"):
                raise ExpansionError(f"unsupported modifier ({mod}) in substitution")
        elif op not in ("+", "-", "?", "#", "%"):
            raise ExpansionError(f"unsupported modifier ({mod}) in substitution")
        # After ":" an unknown modifier is only reported once its word is read.
        word = self._word_until("}", op in ("#", "%"), "syntax error: missing '}'")
        value = self._lookup(name)
        if op == "-":
            return word if value is None or (colon and not value) else value
        if op == "+":
            return "" if value is None or (colon and not value) else word
        if op == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if colon and not value:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op in ("#", "%"):
            longest = word.startswith(op)
            pattern = word[1:] if longest else word
            return _trim(value or "", pattern, longest, suffix=op == "%")
        raise ExpansionError(f"unsupported modifier ({mod}) in substitution")

    def _word_until(self, stop: str, raw_escapes: bool, at_end: str) -> str:
        try:
            return self._until(stop, raw_escapes)[0]
        except ExpansionError:
            if self._peek() == _EOF:
                raise ExpansionError(at_end) from None
            raise

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        pattern = self._word_until("/", True, "syntax error: missing '/' in ${}")
        replacement = self._word_until("}", True, "syntax error: missing '}'")
        value = self._lookup(name) or ""
        regex = _glob_regex(pattern, greedy=True)
        if replace_all:
            return _go_replace_all(regex, value, replacement)
        m = regex.search(value)
        return value if m is None else value[: m.start()] + replacement + value[m.end() :]
