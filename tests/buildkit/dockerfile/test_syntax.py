"""Dockerfile syntax: directives, comments, continuations, JSON form, flags, heredocs.

Expected values come from the Dockerfile reference and BuildKit's parser
behaviour (moby/buildkit frontend/dockerfile/parser), written out by hand.
"""

from __future__ import annotations

import pytest

from buildkit.dockerfile.syntax import Directives, Heredoc, Node, parse
from buildkit.errors import DockerfileError


def nodes(text: str) -> tuple[Node, ...]:
    return parse(text).nodes


def only(text: str) -> Node:
    (node,) = [n for n in nodes(text) if n.keyword != "from"]
    return node


def parse_error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse(text, "df/Dockerfile")
    assert info.value.path == "df/Dockerfile"
    return info.value


# ---------------------------------------------------------------- directives


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("FROM a\n", Directives()),
        (
            "# syntax=docker/dockerfile:1\nFROM a\n",
            Directives(syntax="docker/dockerfile:1", syntax_line=1),
        ),
        # keys are case-insensitive, blanks around "=" allowed, values kept as written
        (
            "#SYNTAX = docker/dockerfile:1.7-labs  \n# Check=skip=all;error=true\nFROM a\n",
            Directives(
                syntax="docker/dockerfile:1.7-labs",
                syntax_line=1,
                check="skip=all;error=true",
                check_line=2,
            ),
        ),
        ("# escape=`\nFROM a\n", Directives(escape="`")),
        ("# escape=\\\nFROM a\n", Directives(escape="\\")),
        # leading blanks before "#" are allowed
        ("   # escape=`\nFROM a\n", Directives(escape="`")),
        # a blank line ends the directives: the next one is a comment
        ("\n# escape=`\nFROM a\n", Directives()),
        # so does an ordinary comment
        ("# hello\n# escape=`\nFROM a\n", Directives()),
        # and an unknown directive (it is then only a comment)
        ("# foo=bar\n# escape=`\nFROM a\n", Directives()),
        # and an instruction
        ("FROM a\n# escape=`\n", Directives()),
        # a directive may follow another
        (
            "# escape=`\n# syntax=docker/dockerfile:1\nFROM a\n",
            Directives(escape="`", syntax="docker/dockerfile:1", syntax_line=2),
        ),
    ],
)
def test_directives(text: str, want: Directives) -> None:
    assert parse(text).directives == want


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("# escape=`\n# escape=\\\nFROM a\n", 2, "only one escape parser directive"),
        ("# syntax=a\n# SYNTAX=b\nFROM a\n", 2, "only one syntax parser directive"),
        ("# check=a\n# check=b\nFROM a\n", 2, "only one check parser directive"),
        ("# escape=x\nFROM a\n", 1, "invalid escape token 'x'"),
        ("# syntax=a\n# escape=/\nFROM a\n", 2, "does not match ` or \\"),
    ],
)
def test_directive_errors(text: str, line: int, fragment: str) -> None:
    error = parse_error(text)
    assert error.line == line
    assert fragment in error.message


def test_directive_lines_are_not_comments_of_the_first_instruction() -> None:
    (node,) = nodes("# syntax=docker/dockerfile:1\n# the base\nFROM a\n")
    assert node.comments == ("the base",)


# ---------------------------------------------------------------- lines


@pytest.mark.parametrize(
    ("text", "keyword", "args", "start", "end"),
    [
        ("RUN echo hi", "run", "echo hi", 1, 1),
        ("  run   echo hi  \n", "run", "echo hi", 1, 1),
        # continuation: escape + newline removed, next line appended as is
        ("RUN a \\\n  b\n", "run", "a   b", 1, 2),
        # blanks after the escape still continue the line
        ("RUN a \\  \t\nb\n", "run", "a b", 1, 2),
        # comment lines inside a continuation are dropped, even indented
        ("RUN a \\\n# note\n    # more\n  b\n", "run", "a   b", 1, 4),
        # a # that does not start the line is not a comment
        ("RUN echo a # b\n", "run", "echo a # b", 1, 1),
        # the file ends inside a continuation
        ("RUN a \\", "run", "a", 1, 1),
        # CRLF line endings
        ("RUN a \\\r\n b\r\n", "run", "a  b", 1, 2),
        # a byte-order mark at the start
        ("\ufeffRUN a\n", "run", "a", 1, 1),
        # blank lines and comments before the instruction move its start line
        ("\n\n# c\nRUN a\n", "run", "a", 4, 4),
        # an escaped escape at the end of a line still continues it, as in BuildKit
        ("RUN a \\\\\nb\n", "run", "a \\b", 1, 2),
    ],
)
def test_lines(text: str, keyword: str, args: str, start: int, end: int) -> None:
    (node,) = nodes(text)
    assert (node.keyword, node.args, node.start_line, node.end_line) == (
        keyword,
        args,
        start,
        end,
    )


def test_backtick_escape_continues_lines_and_leaves_backslashes_alone() -> None:
    text = "# escape=`\nFROM windows\nRUN dir c:\\ `\n  && echo done\nCOPY a \\\nWORKDIR c:\\app\n"
    _, run, copy, workdir = nodes(text)
    assert run.args == "dir c:\\   && echo done"
    assert (run.start_line, run.end_line) == (3, 4)
    # with ` as escape, a trailing backslash is an ordinary character
    assert copy.args == "a \\"
    assert workdir.args == "c:\\app"


def test_original_joins_continuations() -> None:
    node = only("FROM a\nCOPY --link \\\n  a b\n")
    assert node.original == "COPY --link   a b"


def test_empty_continuation_line_is_a_warning() -> None:
    parsed = parse("FROM a\nRUN a \\\n\n  b\n")
    assert parsed.nodes[1].args == "a   b"
    assert parsed.nodes[1].end_line == 4
    ((line, message),) = parsed.warnings
    assert line == 3
    assert message == "Empty continuation line found in: RUN a   b"


def test_a_comment_inside_a_continuation_is_no_empty_line() -> None:
    assert parse("FROM a\nRUN a \\\n# c\n b\n").warnings == ()


@pytest.mark.parametrize(
    ("text", "comments"),
    [
        ("# one\n# two\nFROM a\n", ("one", "two")),
        # only one space after "#" is removed; trailing blanks go
        ("#  indented  \nFROM a\n", (" indented",)),
        ("#tight\nFROM a\n", ("tight",)),
        # a blank line between comment and instruction detaches it
        ("# far\n\nFROM a\n", ()),
        ("# far\n\n# near\nFROM a\n", ("near",)),
        ("FROM a\n", ()),
    ],
)
def test_comments_above_an_instruction(text: str, comments: tuple[str, ...]) -> None:
    assert nodes(text)[0].comments == comments


def test_comments_belong_to_the_next_instruction_only() -> None:
    first, second = nodes("# base\nFROM a\nRUN b\n")
    assert first.comments == ("base",)
    assert second.comments == ()


# ---------------------------------------------------------------- JSON form


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ('RUN ["echo", "hi"]', ("echo", "hi")),
        ('CMD [ "a b" , "c" ]', ("a b", "c")),
        ('ENTRYPOINT ["a\\"b", "\\u00e9"]', ('a"b', "é")),
        ("CMD []", ()),
        ('SHELL ["/bin/sh", "-c"]', ("/bin/sh", "-c")),
        ('COPY ["a b", "/c d/"]', ("a b", "/c d/")),
        ('ADD ["a", "/b"]', ("a", "/b")),
        ('VOLUME ["/data"]', ("/data",)),
        # not JSON: the shell form
        ("RUN echo hi", None),
        ("RUN [ -f x ] && echo y", None),
        ('RUN ["echo", "hi"] && true', None),
        ("CMD ['single', 'quotes']", None),
        ("RUN [NaN]", None),
        ('CMD ["unterminated"', None),
        # only instructions with an exec form get one
        ('ENV ["a"]', None),
        ('LABEL ["a"]', None),
        ('EXPOSE ["80"]', None),
        # HEALTHCHECK: the part after the type word
        ('HEALTHCHECK CMD ["curl", "-f", "x"]', ("curl", "-f", "x")),
        ("HEALTHCHECK CMD curl -f x", None),
        # flags come off before the JSON
        ('COPY --from=b ["a", "b"]', ("a", "b")),
    ],
)
def test_json_form(line: str, want: tuple[str, ...] | None) -> None:
    assert only("FROM a\n" + line).json == want


@pytest.mark.parametrize(
    "line", ['RUN ["echo", 1]', 'CMD [["a"]]', "ENTRYPOINT [null]", 'HEALTHCHECK CMD ["a", true]']
)
def test_json_arrays_of_non_strings_are_errors(line: str) -> None:
    error = parse_error("FROM a\n" + line)
    assert error.line == 2
    assert error.instruction == line.split()[0]
    assert "arrays must be comprised of strings only" in error.message


def test_deeply_nested_json_is_the_shell_form() -> None:
    assert only("FROM a\nRUN " + "[" * 100_000).json is None


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("line", "flags", "args"),
    [
        ("COPY --from=build --link a b", ("--from=build", "--link"), "a b"),
        ("RUN --mount=type=cache,target=/x  make", ("--mount=type=cache,target=/x",), "make"),
        # flags only lead: a later --word is an argument
        ("RUN echo --not-a-flag", (), "echo --not-a-flag"),
        ("COPY a --from=b c", (), "a --from=b c"),
        # quotes and backslashes inside flags are removed, as BuildKit does
        ('COPY --chown="a b" x y', ("--chown=a b",), "x y"),
        ("COPY --chown=a\\ b x y", ("--chown=a b",), "x y"),
        # a lone -- ends the flags
        ("RUN --network=none -- --weird", ("--network=none",), "--weird"),
        ("RUN -x", (), "-x"),
        ("CMD --version", ("--version",), ""),
    ],
)
def test_flags(line: str, flags: tuple[str, ...], args: str) -> None:
    node = only("FROM a\n" + line)
    assert (node.flags, node.args) == (flags, args)


# ---------------------------------------------------------------- heredocs


@pytest.mark.parametrize(
    ("text", "heredocs", "end_line"),
    [
        (
            "RUN <<EOF\necho $HOME\n  indented\nEOF\n",
            (Heredoc(name="EOF", content="echo $HOME\n  indented\n"),),
            4,
        ),
        # <<- strips leading tabs from the body and the terminator line
        (
            "RUN <<-EOT\n\techo a\n\t\techo b\n  echo c\n\tEOT\n",
            (Heredoc(name="EOT", content="echo a\necho b\n  echo c\n", chomp=True),),
            5,
        ),
        # a quoted delimiter turns off expansion
        (
            'COPY <<"EOF" /x\n$HOME\nEOF\n',
            (Heredoc(name="EOF", content="$HOME\n", expand=False),),
            3,
        ),
        (
            "COPY <<'EOF' /x\na\nEOF\n",
            (Heredoc(name="EOF", content="a\n", expand=False),),
            3,
        ),
        (
            "COPY <<-'EOF' /x\n\ta\n\tEOF\n",
            (Heredoc(name="EOF", content="a\n", expand=False, chomp=True),),
            3,
        ),
        # several on one line, read one after another
        (
            "COPY <<one.txt <<two.txt /dst/\n1\none.txt\n2\ntwo.txt\n",
            (Heredoc(name="one.txt", content="1\n"), Heredoc(name="two.txt", content="2\n")),
            5,
        ),
        # an empty body
        ("RUN <<EOF\nEOF\n", (Heredoc(name="EOF", content=""),), 2),
        # blanks between << and the name (Dockerfile 1.16+)
        ("RUN << EOF\nx\nEOF\n", (Heredoc(name="EOF", content="x\n"),), 3),
        # a file-descriptor prefix
        ("RUN cat 3<<EOF\nx\nEOF\n", (Heredoc(name="EOF", content="x\n"),), 3),
        # heredoc inside a command, with a redirection after it
        (
            "RUN python3 <<EOF > /hello\nprint(1)\nEOF\n",
            (Heredoc(name="EOF", content="print(1)\n"),),
            3,
        ),
        # ADD takes heredocs too
        ("ADD <<EOF /x\nhi\nEOF\n", (Heredoc(name="EOF", content="hi\n"),), 3),
        # the terminator must match exactly: "EOF " and "  EOF" are body lines
        (
            "RUN <<EOF\nEOF \n  EOF\nEOF\n",
            (Heredoc(name="EOF", content="EOF \n  EOF\n"),),
            4,
        ),
        # comments and escapes in a body are kept as written
        (
            "RUN <<EOF\n# not dropped \\\nEOF\n",
            (Heredoc(name="EOF", content="# not dropped \\\n"),),
            3,
        ),
    ],
)
def test_heredocs(text: str, heredocs: tuple[Heredoc, ...], end_line: int) -> None:
    node = only("FROM a\n" + text)
    assert node.heredocs == heredocs
    assert node.end_line == end_line + 1
    assert "\n" not in node.original


@pytest.mark.parametrize(
    "text",
    [
        # not RUN, COPY or ADD: the << is plain text and the next lines are instructions
        "ENV A=<<EOF\nRUN b\n",
        "LABEL a=<<EOF\nRUN b\n",
        # the JSON form takes no heredoc
        'RUN ["cat", "<<EOF"]\nRUN b\n',
        # quoted or glued << are not heredocs
        'RUN echo "<<EOF"\nRUN b\n',
        "RUN cat<<EOF\nRUN b\n",
        # a here-string
        "RUN cat <<<word\nRUN b\n",
    ],
)
def test_not_heredocs(text: str) -> None:
    first, second = nodes("FROM a\n" + text)[1:]
    assert first.heredocs == ()
    assert (second.keyword, second.args) == ("run", "b")


def test_onbuild_trigger_takes_heredocs() -> None:
    node = only("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert node.heredocs == (Heredoc(name="EOF", content="echo hi\n"),)
    assert node.args == "RUN <<EOF"


def test_instructions_continue_after_a_heredoc() -> None:
    all_nodes = nodes("FROM a\nRUN <<EOF\nx\nEOF\nRUN y\n")
    assert [(n.keyword, n.start_line, n.end_line) for n in all_nodes] == [
        ("from", 1, 1),
        ("run", 2, 4),
        ("run", 5, 5),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FROM a\nRUN <<EOF\necho hi\n", "unterminated heredoc <<EOF"),
        ("FROM a\nRUN <<EOF\necho\n  EOF\n", "unterminated heredoc <<EOF"),
        # <<- strips tabs only, not spaces
        ("FROM a\nRUN <<-EOF\n  EOF\n", "unterminated heredoc"),
        # the second of two is missing
        ("FROM a\nCOPY <<A <<B /x\n1\nA\n2\n", "unterminated heredoc <<B"),
    ],
)
def test_unterminated_heredoc(text: str, fragment: str) -> None:
    error = parse_error(text)
    assert error.line == 2
    assert fragment in error.message
    assert error.instruction in ("RUN", "COPY")


def test_keyword_is_lower_cased_and_parse_is_pure() -> None:
    text = "from a\nRuN b\n"
    assert [n.keyword for n in nodes(text)] == ["from", "run"]
    assert parse(text) == parse(text)
