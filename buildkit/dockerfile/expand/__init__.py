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

The package holds the results (`expansion`), the lexer (`lexer`) and the glob
and regexp helpers of the pattern operators (`patterns`); this module holds
the entry points and re-exports everything public.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from buildkit.dockerfile.expand.expansion import Expansion, ExpansionError, PairsExpansion
from buildkit.dockerfile.expand.lexer import _Lexer

__all__ = [
    "EXPANDING_INSTRUCTIONS",
    "Expansion",
    "ExpansionError",
    "PairsExpansion",
    "expand_env_pairs",
    "expand_heredoc",
    "expand_word",
    "expand_words",
]

# The reference's list (ONBUILD aside, see above), plus ARG.
EXPANDING_INSTRUCTIONS: frozenset[str] = frozenset(
    {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
    | {"ARG"}
)


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
