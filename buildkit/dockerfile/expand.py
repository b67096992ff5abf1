"""Variable expansion in Dockerfile words, with BuildKit's rules.

This follows the behaviour of BuildKit's shell lexer
(`frontend/dockerfile/shell/lex.go`), including its quirks; it is a separate
implementation, not a port. Pure: no I/O, no process environment.

Which instructions the builder expands (Dockerfile reference, "Environment
replacement"): ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
WORKDIR, and ONBUILD *when combined with* one of those -- the ONBUILD line
itself is stored unexpanded and its trigger is expanded when it runs in the
child build, as the instruction it wraps. BuildKit also expands ARG names and
default values (its ArgCommand implements Expand), so `ARG` is in
`EXPANDING_INSTRUCTIONS` although the reference's list omits it. Some flag
values are expanded too -- `COPY --from/--chown`, `ADD --chown`, every
`RUN --mount` field (seen in BuildKit's instructions package), `FROM --platform`
(with the global ARGs) -- the planner handles those flag by flag.
RUN, CMD, ENTRYPOINT, HEALTHCHECK and SHELL are not expanded by the
builder: in shell form the shell does it at run time, in exec form nobody does.

Heredoc bodies of COPY/ADD are expanded when the delimiter was not quoted
(`expand_heredoc`); RUN heredocs are left to the shell.

Within one instruction every word is expanded against the environment from
*before* the instruction (`expand_env_pairs`): the reference's example is
`ENV abc=hello`, `ENV abc=bye def=$abc` -> def is "hello".

Rules, as BuildKit has them:

- `$name` / `${name}`: a name is letters, digits and `_` (Unicode letters and
  digits count); `$` followed by digits takes all the digits (`$12`); `$` then
  one of `@ * # ? - $ ! 0` names that special parameter, which is never set, so
  it expands to "" (and is reported unmatched). `$` before anything else, or at
  the end, stays a literal `$`.
- `${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?m} ${v?m}` as in POSIX sh. The word is
  always expanded first, even when unused: its errors are raised and its names
  reported either way. `${v?}` fails with "v: is not allowed to be unset",
  `${v:?}` on an empty v with "v: is not allowed to be empty".
- `${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}`: p is a glob where `*` is
  any run and `?` one character (neither matches a newline); `\\*`, `\\?`,
  `\\\\` match themselves, `\\}` and `\\/` are a plain `}` and `/`; `[...]` is
  NOT a bracket expression, just those characters. The escape character is
  kept in p and r rather than consumed. In `${v//p/r}` r is a Go regexp
  template: `$0`/`${0}` is the match, `$$` a `$`, any other `$name` is "".
- Single quotes keep everything literally. Double quotes expand `$`; the escape
  character escapes only `"`, `$` and itself there, and stays literal before
  anything else. Outside quotes the escape character makes the next character
  literal and is dropped (dropped too at the very end of the word).
- Word splitting (`expand_words`) happens after expansion, on unquoted
  whitespace, including whitespace that came out of a variable or a `${v:-w}`
  word -- even a quoted one. Empty quotes make no word.
- `${v:#p}` and `${v:%p}`, `${v=w}`, `${v:=w}`, `${#v}`, `${v:1}` are errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The reference's list (ONBUILD aside, see above), plus ARG.
EXPANDING_INSTRUCTIONS: frozenset[str] = frozenset(
    {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
    | {"ARG"}
)

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# Go's unicode.IsSpace: Latin-1 space characters plus the White_Space property.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_EOF = ""


class ExpansionError(Exception):
    """A word that cannot be expanded. `str()` is BuildKit's message.

    BuildKit shows it as `failed to process "<word>": <message>`; `word` holds
    the word so the planner can do the same, adding the file and line.
    """

    def __init__(self, message: str, word: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.word = word


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word.

    value:     the word expanded, quotes removed (ProcessWord).
    unmatched: names referenced but not set (for the UndefinedVar check).
    matched:   names referenced and set (which build args a plan uses).
    words:     the value split on unquoted whitespace (ProcessWords).
    """

    value: str
    unmatched: frozenset[str] = frozenset()
    matched: frozenset[str] = frozenset()
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairsExpansion:
    """`ENV`/`LABEL` pairs expanded, keys and values, all against one env."""

    pairs: tuple[tuple[str, str], ...]
    unmatched: frozenset[str] = frozenset()
    matched: frozenset[str] = frozenset()


def expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> Expansion:
    """Expand `word` as BuildKit's ProcessWord does (also fills `.words`)."""
    return _Lexer(word, env, escape).run()


def expand_words(
    word: str, env: Mapping[str, str], *, escape: str = "\\"
) -> tuple[list[str], Expansion]:
    """Expand and split `word` as BuildKit's ProcessWords does (EXPOSE uses it)."""
    result = _Lexer(word, env, escape).run()
    return list(result.words), result


def expand_heredoc(content: str, env: Mapping[str, str], *, escape: str = "\\") -> Expansion:
    """Expand a COPY/ADD heredoc body whose delimiter was not quoted.

    BuildKit lexes the body with quotes and escape characters kept: only `$`
    expansions change the text (`\\$x` stays `\\$x`).
    """
    return _Lexer(content, env, escape, raw_quotes=True, raw_escapes=True).run()


def expand_env_pairs(
    pairs: Iterable[tuple[str, str]], env: Mapping[str, str], *, escape: str = "\\"
) -> PairsExpansion:
    """Expand the key and value of each pair with the env from before the instruction.

    `ENV A=1 B=$A` gives B the *old* A: BuildKit expands the whole instruction
    before applying any of it (Dockerfile reference, "Environment replacement").
    """
    out: list[tuple[str, str]] = []
    matched: set[str] = set()
    unmatched: set[str] = set()
    for key, value in pairs:
        k = expand_word(key, env, escape=escape)
        v = expand_word(value, env, escape=escape)
        out.append((k.value, v.value))
        for e in (k, v):
            matched |= e.matched
            unmatched |= e.unmatched
    return PairsExpansion(tuple(out), frozenset(unmatched), frozenset(matched))


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
