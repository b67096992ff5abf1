"""Dockerfile syntax: text → nodes, one per instruction.

This is the first of the frontend's three steps (syntax → typed instructions →
per-platform plan). It knows the lexical rules of a Dockerfile and nothing of
what instructions mean:

- parser directives at the top (`# syntax=`, `# escape=`, `# check=`);
- comments, blank lines, line continuations with the escape character
  (default backslash, or backtick);
- JSON (exec) form versus shell form of the arguments;
- heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) attached to the node that names them;
- `--flag` words before the arguments.

Words stay unexpanded: `$VAR` is expanded later, per stage, by the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heredoc:
    """One heredoc attached to an instruction.

    `name` is the delimiter word (`EOF`); `content` the body, ending with a
    newline, tabs already stripped for `<<-`; `expand` is False when the
    delimiter was quoted (`<<"EOF"`, `<<'EOF'`), so variables in the body stay
    as written; `chomp` is True for `<<-`.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False


@dataclass(frozen=True)
class Directives:
    """Parser directives from the top of the file.

    `syntax` is the value as written (`docker/dockerfile:1.7-labs`) or "";
    `escape` is `\\` or `` ` ``; `check` is the raw value of `# check=` or "".
    Each `*_line` is the 1-based line of the directive, 0 when absent.
    """

    escape: str = "\\"
    syntax: str = ""
    syntax_line: int = 0
    check: str = ""
    check_line: int = 0


@dataclass(frozen=True)
class Node:
    """One instruction as written.

    keyword:   the instruction, lower-cased (`run`, `copy`, ...).
    flags:     the `--flag[=value]` words before the arguments, as written
               (`("--from=build", "--link")`).
    args:      the argument text after the flags, continuations joined (the
               escape character and its newline removed, comment lines inside
               a continuation dropped), leading and trailing space stripped.
    json:      the decoded strings when `args` is a JSON array of strings
               (the exec form), else None.
    heredocs:  heredocs named on the instruction's line, in order.
    start_line, end_line: 1-based lines the instruction spans (heredoc
               bodies included in end_line).
    original:  the instruction's text as written, continuations joined,
               heredoc bodies excluded.
    """

    keyword: str
    flags: tuple[str, ...]
    args: str
    json: tuple[str, ...] | None
    start_line: int
    end_line: int
    original: str
    heredocs: tuple[Heredoc, ...] = ()
    # Comment lines directly above the instruction (no blank line between),
    # without the leading "#" and one following space.
    comments: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedDockerfile:
    path: str
    directives: Directives
    nodes: tuple[Node, ...]
    # (line, message) pairs for problems that do not stop the parse, such as
    # empty continuation lines, which BuildKit also only warns about.
    warnings: tuple[tuple[int, str], ...] = field(default=())
