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

import json as jsonlib
import re
from dataclasses import dataclass, field

from buildkit.dockerfile.heredoc import chomp, heredocs_in_line
from buildkit.dockerfile.words import GO_SPACE, extract_builder_flags, is_space
from buildkit.errors import DockerfileError


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
               (`("--from=build", "--link")`), except that quotes and
               backslashes are removed as BuildKit does (`--chown="a b"` →
               `--chown=a b`).
    args:      the argument text after the flags, continuations joined (the
               escape character and its newline removed, comment lines inside
               a continuation dropped), leading and trailing space stripped.
    json:      the decoded strings when `args` is a JSON array of strings
               (the exec form), else None. Only set for the instructions that
               have an exec form (RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD,
               VOLUME) and for HEALTHCHECK, where it is the part after the
               type word (`HEALTHCHECK CMD ["curl", "x"]` → ("curl", "x")).
    heredocs:  heredocs named on the instruction's line, in order (RUN, COPY
               and ADD in shell form, also as an ONBUILD trigger).
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
    # without the leading "#" and one following space. Parser directives and
    # comment lines inside a continuation are not included.
    comments: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedDockerfile:
    path: str
    directives: Directives
    nodes: tuple[Node, ...]
    # (line, message) pairs for problems that do not stop the parse, such as
    # empty continuation lines, which BuildKit also only warns about.
    warnings: tuple[tuple[int, str], ...] = field(default=())


# ---------------------------------------------------------------- parsing

_DIRECTIVE = re.compile(r"#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
# Instructions whose arguments may be a JSON array (BuildKit's parseMaybeJSON
# and parseMaybeJSONToList); HEALTHCHECK has one after its type word.
_JSON_FORM = frozenset({"run", "cmd", "entrypoint", "shell", "copy", "add", "volume"})
_HEREDOC_FORM = frozenset({"run", "copy", "add"})
_KEYWORD_SPLIT = re.compile(r"[\t\v\f\r ]+")


def parse(text: str, path: str = "Dockerfile") -> ParsedDockerfile:
    """Split a Dockerfile into directives and one Node per instruction.

    Raises DockerfileError for a bad or repeated parser directive, an
    unterminated heredoc, or a JSON array holding something else than strings.
    """
    return _Parser(text, path).run()


def _split_lines(text: str) -> list[str]:
    """Lines as Go's bufio.ScanLines gives them: split on \\n, one \\r dropped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return _trim_newline(line).lstrip(GO_SPACE).startswith("#")


def _comment_text(line: str) -> str:
    text = line.lstrip(GO_SPACE)[1:].rstrip()
    return text[1:] if text.startswith(" ") else text


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.lines = _split_lines(text)
        self.pos = 0  # index of the next line to read
        self.escape = "\\"
        self.continuation = re.compile(r"\\[ \t]*$")
        self.directives: dict[str, tuple[str, int]] = {}
        self.directives_done = False
        self.warnings: list[tuple[int, str]] = []

    def error(self, message: str, line: int, keyword: str = "") -> DockerfileError:
        return DockerfileError(message, path=self.path, line=line, instruction=keyword.upper())

    def run(self) -> ParsedDockerfile:
        nodes: list[Node] = []
        comments: list[str] = []
        while self.pos < len(self.lines):
            self.pos += 1
            lineno = self.pos
            stripped = _trim_newline(self.lines[lineno - 1]).lstrip(GO_SPACE)
            if not self.directives_done and self._directive(stripped, lineno):
                continue
            if stripped.startswith("#"):
                comments.append(_comment_text(stripped))
                continue
            if stripped == "":
                comments = []
                continue
            node = self._instruction(stripped, lineno, tuple(comments))
            comments = []
            if node is not None:
                nodes.append(node)
        return ParsedDockerfile(
            path=self.path,
            directives=self._directives(),
            nodes=tuple(nodes),
            warnings=tuple(self.warnings),
        )

    # ------------------------------------------------------------ directives

    def _directive(self, line: str, lineno: int) -> bool:
        """Record `line` if it is a parser directive; False ends the directives."""
        match = _DIRECTIVE.fullmatch(line)
        key = match.group(1).lower() if match else ""
        if match is None or key not in _KNOWN_DIRECTIVES:
            self.directives_done = True
            return False
        if key in self.directives:
            first = self.directives[key][1]
            raise self.error(
                f"only one {key} parser directive can be used (first on line {first})", lineno
            )
        value = match.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                raise self.error(f"invalid escape token {value!r} does not match ` or \\", lineno)
            self.escape = value
            self.continuation = re.compile(re.escape(value) + r"[ \t]*$")
        self.directives[key] = (value, lineno)
        return True

    def _directives(self) -> Directives:
        syntax, syntax_line = self.directives.get("syntax", ("", 0))
        check, check_line = self.directives.get("check", ("", 0))
        return Directives(
            escape=self.escape,
            syntax=syntax,
            syntax_line=syntax_line,
            check=check,
            check_line=check_line,
        )

    # ------------------------------------------------------------ instructions

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """(line without its continuation escape, whether the line ends here)."""
        match = self.continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()], False

    def _instruction(self, first: str, start: int, comments: tuple[str, ...]) -> Node | None:
        line, done = self._trim_continuation(first)
        empty_line = 0
        while not done and self.pos < len(self.lines):
            self.pos += 1
            raw = _trim_newline(self.lines[self.pos - 1])
            if _is_comment(raw):
                continue
            if raw.lstrip(GO_SPACE) == "":
                empty_line = empty_line or self.pos
                continue
            part, done = self._trim_continuation(raw)
            line += part
        line = line.strip(GO_SPACE)
        if empty_line:
            self.warnings.append((empty_line, f"Empty continuation line found in: {line}"))
        if line == "":
            return None
        keyword, flags, args = split_command(line)
        json_words = self._json(keyword, args, start)
        heredocs: tuple[Heredoc, ...] = ()
        if self._can_contain_heredoc(keyword, args, json_words, start) and "<<" in line:
            heredocs = self._read_heredocs(line, keyword, start)
        return Node(
            keyword=keyword.lower(),
            flags=tuple(flags),
            args=args,
            json=json_words,
            start_line=start,
            end_line=self.pos,
            original=line,
            heredocs=heredocs,
            comments=comments,
        )

    def _json(self, keyword: str, args: str, lineno: int) -> tuple[str, ...] | None:
        lower = keyword.lower()
        if lower == "healthcheck":
            _, args = split_first_word(args)
        elif lower not in _JSON_FORM:
            return None
        words = decode_json_array(args)
        if isinstance(words, bool):
            raise self.error(
                "when using JSON array syntax, arrays must be comprised of strings only",
                lineno,
                keyword,
            )
        return words

    def _can_contain_heredoc(
        self, keyword: str, args: str, json_words: tuple[str, ...] | None, lineno: int
    ) -> bool:
        if keyword.lower() == "onbuild":
            # The trigger decides: `ONBUILD RUN <<EOF` reads a heredoc.
            keyword, _, args = split_command(args) if args else ("", [], "")
            json_words = self._json(keyword, args, lineno)
        return keyword.lower() in _HEREDOC_FORM and json_words is None

    def _read_heredocs(self, line: str, keyword: str, start: int) -> tuple[Heredoc, ...]:
        heredocs: list[Heredoc] = []
        for word in heredocs_in_line(line):
            body: list[str] = []
            while True:
                if self.pos >= len(self.lines):
                    raise self.error(
                        f"unterminated heredoc <<{word.name}: no line {word.name!r} "
                        f"ends it before the end of the file",
                        start,
                        keyword,
                    )
                self.pos += 1
                raw = self.lines[self.pos - 1]
                candidate = _trim_newline(raw)
                if word.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == word.name:
                    break
                body.append(raw + "\n")
            content = "".join(body)
            heredocs.append(
                Heredoc(
                    name=word.name,
                    content=chomp(content) if word.chomp else content,
                    expand=word.expand,
                    chomp=word.chomp,
                )
            )
        return tuple(heredocs)


def split_command(line: str) -> tuple[str, list[str], str]:
    """`COPY --link a b` → ("COPY", ["--link"], "a b"); the keyword as written."""
    parts = _KEYWORD_SPLIT.split(line.strip(GO_SPACE), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    args, flags = extract_builder_flags(parts[1])
    return parts[0], flags, args.strip(GO_SPACE)


def split_first_word(text: str) -> tuple[str, str]:
    """("CMD", "curl x") from "CMD   curl x": split at the first blank run."""
    end = 0
    while end < len(text) and not is_space(text[end]):
        end += 1
    return text[:end], text[end:].lstrip(GO_SPACE)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def decode_json_array(text: str) -> tuple[str, ...] | bool | None:
    """The strings of a JSON array; None if `text` is no JSON array; False if
    it is one but holds something else than strings (an error in BuildKit)."""
    text = text.lstrip(GO_SPACE)
    if not text.startswith("["):
        return None
    try:
        value = jsonlib.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        return False
    return tuple(value)
