"""Tables for buildkit.dockerfile.expand.

Every expected value is written by hand from the Dockerfile reference
("Environment replacement"), POSIX sh parameter expansion, or the behaviour of
BuildKit's shell lexer (frontend/dockerfile/shell/lex.go and its tests) where
BuildKit departs from sh; those departures are marked "BuildKit:".
"""

from __future__ import annotations

import pytest

from buildkit.dockerfile.expand import (
    EXPANDING_INSTRUCTIONS,
    ExpansionError,
    expand_env_pairs,
    expand_heredoc,
    expand_word,
    expand_words,
)

ENV = {
    "A": "a",
    "E": "",
    "S": "x y",
    "P": "/usr/local/bin",
    "F": "file.tar.gz",
    "U": "héllo",
    "K": "한국어",
    "B": "[ab]c",
    "T": "*x*",
    "N": "a\nb",
    "Z": "baaac",
    "R0": "<$0>",
    "RX": "$x",
    "V": "v7",
}

WORD_CASES = [
    # plain names
    ("plain", "plain"),
    ("$A", "a"),
    ("${A}", "a"),
    ("$A$A", "aa"),
    ("${A}_b", "a_b"),
    ("$A_b", ""),  # the name is A_b
    ("$A-b", "a-b"),
    ("$A.b", "a.b"),
    ("$A/b", "a/b"),
    ("$NOPE", ""),
    ("x${NOPE}y", "xy"),
    ("${E}x", "x"),
    # a $ that starts no name stays literal
    ("$", "$"),
    ("a$", "a$"),
    ("$ a", "$ a"),
    ("$/x", "$/x"),
    ("$%", "$%"),
    ("$=", "$="),
    # positional and special parameters are never set
    ("$1", ""),
    ("$12x", "x"),
    ("$0abc", "abc"),
    ("${1}", ""),
    ("$@", ""),
    ("$*", ""),
    ("$#", ""),
    ("$?", ""),
    ("$$", ""),
    ("$!", ""),
    ("$-", ""),
    ("a$@b", "ab"),
    # unicode: letters of any script make names
    ("$U", "héllo"),
    ("${K}!", "한국어!"),
    ("é$A", "éa"),
    ("$Aé", ""),  # the name is Aé
    ("$été", ""),
    # ${v:-w} ${v-w}
    ("${A:-w}", "a"),
    ("${E:-w}", "w"),
    ("${NOPE:-w}", "w"),
    ("${A-w}", "a"),
    ("${E-w}", ""),
    ("${NOPE-w}", "w"),
    ("${NOPE:-}", ""),
    # ${v:+w} ${v+w}
    ("${A:+w}", "w"),
    ("${E:+w}", ""),
    ("${NOPE:+w}", ""),
    ("${A+w}", "w"),
    ("${E+w}", "w"),
    ("${NOPE+w}", ""),
    # ${v:?m} ${v?m} when they pass
    ("${A:?m}", "a"),
    ("${A?m}", "a"),
    ("${E?m}", ""),
    # nested words
    ("${NOPE:-$A}", "a"),
    ("${NOPE:-${E:-deep}}", "deep"),
    ("${NOPE:-${A}x}", "ax"),
    ("${A:+[$A]}", "[a]"),
    ("${NOPE:-a b}", "a b"),
    ("${NOPE:-'q}'}", "q}"),
    ('${NOPE:-"$A b"}', "a b"),
    ("${NOPE:-a\\}b}", "a}b"),
    ("${NOPE:-\\$A}", "$A"),
    ("${V:+-${V}}", "-v7"),
    ("${E:+-${E}}", ""),
    # the escape character outside quotes
    ("\\$A", "$A"),
    ("\\${A}", "${A}"),
    ("a\\ b", "a b"),
    ("\\\\", "\\"),
    ("\\a", "a"),
    ("end\\", "end"),
    ("\\'x\\'", "'x'"),
    ('\\"', '"'),
    # single quotes: nothing expands
    ("'$A'", "$A"),
    ("'a\\b'", "a\\b"),
    ("'${A'", "${A"),
    ("x'$A'y$A", "x$Aya"),
    ("''", ""),
    ("'\"'", '"'),
    # double quotes: $ expands; the escape works only before " $ and itself
    ('"$A"', "a"),
    ('"${A} b"', "a b"),
    ('"a\\"b"', 'a"b'),
    ('"\\$A"', "$A"),
    ('"\\\\"', "\\"),
    ('"a\\b"', "a\\b"),
    ("\"'$A'\"", "'a'"),
    ('"a""b"', "ab"),
    ('"$"', "$"),
    ('a"b c"d', "ab cd"),
    # prefix and suffix removal
    ("${F#*.}", "tar.gz"),
    ("${F##*.}", "gz"),
    ("${F%.*}", "file.tar"),
    ("${F%%.*}", "file"),
    ("${P#/usr/}", "local/bin"),
    ("${P%/*}", "/usr/local"),
    ("${P##*/}", "bin"),
    ("${F#x*}", "file.tar.gz"),
    ("${F#?}", "ile.tar.gz"),
    ("${F%?}", "file.tar.g"),
    ("${F#}", "file.tar.gz"),
    ("${F%%}", "file.tar.gz"),
    ("${F#file.tar.gz}", ""),
    ("${NOPE#x}", ""),
    ("${F#$A}", "file.tar.gz"),
    ("${F%$NOPE}", "file.tar.gz"),
    ("${T#\\*}", "x*"),
    ("${T%\\*}", "*x"),
    ("${T##*\\*}", ""),
    # BuildKit: no bracket expressions, [ab] is three literal characters
    ("${B#[ab]}", "c"),
    ("${F#[f]}", "file.tar.gz"),
    # BuildKit: * and ? never match a newline (Go regexp's ".")
    ("${N#*b}", "a\nb"),
    # replacement
    ("${F/./-}", "file-tar.gz"),
    ("${F//./-}", "file-tar-gz"),
    ("${F/x/y}", "file.tar.gz"),
    ("${F/*./}", "gz"),
    ("${F//?/x}", "xxxxxxxxxxx"),
    ("${F//a/$A$A}", "file.taar.gz"),
    ("${NOPE/a/b}", ""),
    ("${P//\\//:}", ":usr:local:bin"),
    # BuildKit: # and % are not anchors in ${v/p/r}
    ("${F/#f/X}", "file.tar.gz"),
    # BuildKit: ${v//p/r} uses Go's ReplaceAllString; $0 is the match ...
    ("${F//a/$R0}", "file.t<a>r.gz"),
    ("${F//a/$RX}", "file.tr.gz"),
    # ... while ${v/p/r} inserts r as it is
    ("${F/a/$R0}", "file.t<$0>r.gz"),
    # ... and an empty match right after a match is not replaced
    ("${F//*/-}", "-"),
    ("${Z//a*/-}", "b-"),  # a glob: "a" then anything
    ("${A///-}", "-a-"),
]


@pytest.mark.parametrize(("word", "want"), WORD_CASES)
def test_expand_word(word: str, want: str) -> None:
    assert expand_word(word, ENV).value == want


ERROR_CASES = [
    ("${E:?}", "E: is not allowed to be empty"),
    ("${NOPE:?}", "NOPE: is not allowed to be unset"),
    ("${NOPE?}", "NOPE: is not allowed to be unset"),
    ("${E:?need E}", "E: need E"),
    ("${NOPE?need $A}", "NOPE: need a"),
    ("x${NOPE:?}y", "NOPE: is not allowed to be unset"),
    # the word of ${v:-w} is expanded even when v is set
    ("${A:-${NOPE:?boom}}", "NOPE: boom"),
    ("${", "syntax error: missing '}'"),
    ("${A", "syntax error: missing '}'"),
    ("${A:-x", "syntax error: missing '}'"),
    ("${A:-'x}'", "syntax error: missing '}'"),
    ("${A:", "syntax error: missing '}'"),
    ("${}", "syntax error: bad substitution"),
    ("${:}", "syntax error: bad substitution"),
    ("${:-x}", "syntax error: bad substitution"),
    ("${{A}}", "syntax error: bad substitution"),
    ("${A=x}", "unsupported modifier (=) in substitution"),
    ("${A:=x}", "unsupported modifier (:=) in substitution"),
    ("${#A}", "unsupported modifier (A) in substitution"),
    ("${A:1}", "unsupported modifier (:1) in substitution"),
    ("${A:1:2}", "unsupported modifier (:1) in substitution"),
    ("${A:#x}", "unsupported modifier (:#) in substitution"),
    ("${A:%x}", "unsupported modifier (:%) in substitution"),
    ("${A B}", "unsupported modifier ( ) in substitution"),
    ("${A^^}", "unsupported modifier (^) in substitution"),
    ("${A/x", "syntax error: missing '/' in ${}"),
    ("${A//}", "syntax error: missing '/' in ${}"),
    ("${A/x/y", "syntax error: missing '}'"),
    ("'abc", "unexpected end of statement while looking for matching single-quote"),
    ('"abc', "unexpected end of statement while looking for matching double-quote"),
    ('"abc\\', "unexpected end of statement while looking for matching double-quote"),
    ("${A#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
]


@pytest.mark.parametrize(("word", "message"), ERROR_CASES)
def test_expand_word_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand_word(word, ENV)
    assert str(info.value) == message
    assert info.value.word == word


BACKTICK_CASES = [
    ("`$A", "$A"),
    ("C:\\path\\$A", "C:\\path\\a"),
    ('"`"x"', '"x'),
    ("a` b", "a b"),
    ('"\\$A"', "\\a"),
    ('"``"', "`"),
    ("${NOPE:-`}}", "}"),
    # the glob's own escape is always a backslash
    ("${T#\\*}", "x*"),
]


@pytest.mark.parametrize(("word", "want"), BACKTICK_CASES)
def test_expand_word_backtick_escape(word: str, want: str) -> None:
    assert expand_word(word, ENV, escape="`").value == want


WORDS_CASES = [
    ("a b  c", ["a", "b", "c"]),
    ("  lead trail  ", ["lead", "trail"]),
    ("", []),
    ("$NOPE", []),
    ("$S", ["x", "y"]),
    ('"$S"', ["x y"]),
    ("'a b' c", ["a b", "c"]),
    ("a\\ b c", ["a b", "c"]),
    ("pre$S", ["prex", "y"]),
    ('pre"$S"post', ["prex ypost"]),
    ('"" a', ["a"]),
    ("''", []),
    ("${NOPE:-1 2}", ["1", "2"]),
    # BuildKit: a ${v:-w} result splits even where w was quoted
    ('${NOPE:-"1 2"}', ["1", "2"]),
    ("a\tb\nc", ["a", "b", "c"]),
    ("a\u00a0b\u3000c", ["a", "b", "c"]),
    ("80 $A/udp", ["80", "a/udp"]),
]


@pytest.mark.parametrize(("word", "want"), WORDS_CASES)
def test_expand_words(word: str, want: list[str]) -> None:
    words, result = expand_words(word, ENV)
    assert words == want
    assert result.words == tuple(want)


def test_expand_words_keeps_the_joined_value() -> None:
    words, result = expand_words("80 ${PORTS}", {"PORTS": "443/tcp  53/udp"})
    assert words == ["80", "443/tcp", "53/udp"]
    assert result.value == "80 443/tcp  53/udp"
    assert result.matched == {"PORTS"}


MATCH_CASES = [
    ("$A $NOPE", {"A"}, {"NOPE"}),
    ("${A:-$NOPE}", {"A"}, {"NOPE"}),  # the unused word is still looked at
    ("${NOPE:+$A}", {"A"}, {"NOPE"}),
    ("$1 $@", set(), {"1", "@"}),
    ("'$A' \\$B", set(), set()),
    ("${E}", {"E"}, set()),  # set to "" is set
    ('"$A"', {"A"}, set()),
    ("${F//a/$Y}", {"F"}, {"Y"}),
    ("${F%$A}", {"A", "F"}, set()),
    ("plain", set(), set()),
]


@pytest.mark.parametrize(("word", "matched", "unmatched"), MATCH_CASES)
def test_matched_and_unmatched(word: str, matched: set[str], unmatched: set[str]) -> None:
    result = expand_word(word, ENV)
    assert result.matched == matched
    assert result.unmatched == unmatched


HEREDOC_CASES = [
    ("hello $A\n", "hello a\n"),
    ("${NOPE:-x} ${A}\n", "x a\n"),
    # quotes and escape characters stay in the text
    ('echo "$A"\n', 'echo "a"\n'),
    ("C:\\dir \\$A\n", "C:\\dir \\$A\n"),
    # BuildKit: single quotes still stop expansion in a heredoc body
    ("echo '$A'\n", "echo '$A'\n"),
]


@pytest.mark.parametrize(("content", "want"), HEREDOC_CASES)
def test_expand_heredoc(content: str, want: str) -> None:
    assert expand_heredoc(content, ENV).value == want


def test_env_pairs_use_the_environment_from_before_the_instruction() -> None:
    # Dockerfile reference: ENV abc=hello / ENV abc=bye def=$abc -> def=hello
    result = expand_env_pairs([("abc", "bye"), ("def", "$abc")], {"abc": "hello"})
    assert result.pairs == (("abc", "bye"), ("def", "hello"))
    assert result.matched == {"abc"}


def test_env_pairs_expand_keys_and_collect_names() -> None:
    result = expand_env_pairs([("${K}_X", "1"), ("Y", "${NOPE:-d}")], {"K": "k"})
    assert result.pairs == (("k_X", "1"), ("Y", "d"))
    assert result.matched == {"K"}
    assert result.unmatched == {"NOPE"}


def test_env_pairs_raise_on_the_first_bad_word() -> None:
    with pytest.raises(ExpansionError) as info:
        expand_env_pairs([("A", "ok"), ("B", "${v?}")], {})
    assert str(info.value) == "v: is not allowed to be unset"
    assert info.value.word == "${v?}"


def test_a_leading_byte_order_mark_is_dropped() -> None:
    # Go's text/scanner, which BuildKit's lexer reads through, skips it.
    assert expand_word("\ufeff$A", ENV).value == "a"


def test_escape_must_be_backslash_or_backtick() -> None:
    with pytest.raises(ValueError):
        expand_word("$A", ENV, escape="^")


def test_expanding_instructions() -> None:
    assert {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL"} <= EXPANDING_INSTRUCTIONS
    assert {"STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ARG"} <= EXPANDING_INSTRUCTIONS
    assert not {"RUN", "CMD", "ENTRYPOINT", "ONBUILD", "SHELL"} & EXPANDING_INSTRUCTIONS
