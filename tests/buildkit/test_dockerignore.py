""".dockerignore reading and matching, against Docker's documented behaviour."""

from __future__ import annotations

import pytest

from buildkit.dockerignore import IgnoreMatcher, clean_path, read_patterns
from buildkit.errors import ContextError

CASES: list[tuple[list[str], str, bool]] = [
    # Plain names and Go filepath.Match globs.
    (["abc"], "abc", True),
    (["abc"], "abcd", False),
    (["abc"], "x/abc", False),
    (["*"], "anything", True),
    (["*"], "dir/file", True),  # the parent `dir` matches
    (["*.go"], "main.go", True),
    (["*.go"], "cmd/main.go", False),  # `*` does not cross `/`
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp", True),
    (["*/temp*"], "temp", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["*/*/temp*"], "somedir/temporary.txt", False),
    (["temp?"], "tempa", True),
    (["temp?"], "temp", False),
    (["temp?"], "tempab", False),
    (["a?b"], "a/b", False),
    (["ab[b-d]"], "abc", True),
    (["ab[e-g]"], "abc", False),
    (["ab[^c]"], "abc", False),
    (["ab[^e-g]"], "abc", True),
    (["[!a]"], "!", True),  # Go negates with ^, so ! is just a member
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["[\\]a]"], "]", True),
    (["abc.def"], "abcXdef", False),  # `.` is literal, not a regexp dot
    (["a(b)c+{d}$"], "a(b)c+{d}$", True),
    (["dist/*.whl"], "dist/pkg-1.0+local-py3-none-any.whl", True),
    (["a[b-d]e"], "ae", False),
    (["a*/b"], "abc/b", True),
    (["a*/b"], "a/c/b", False),
    # `**`: any number of directories, including none.
    (["**/*.go"], "main.go", True),
    (["**/*.go"], "a/b/c/main.go", True),
    (["**/*.go"], "main.gox", False),
    (["**"], "a/b/c", True),
    (["**/foo/bar"], "foo/bar", True),
    (["**/foo/bar"], "x/y/foo/bar", True),
    (["**/dir"], "dir/file", True),
    (["**file"], "dir/myfile", True),  # a leading ** with no `/` is a plain suffix
    (["**/.foo"], "bar.foo", False),
    (["dir/**"], "dir", False),
    (["dir/**"], "dir/a/b", True),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["a**/*.txt"], "a/dir/dir/file.txt", True),
    (["**/dir2/*"], "dir/dir2/file", True),
    (["**/dir2/*"], "dir/dir2/sub/file", True),  # via the parent dir/dir2/sub
    # A directory pattern excludes everything below it.
    (["node_modules"], "node_modules/pkg/index.js", True),
    (["docs"], "docsite/index.md", False),
    # Leading `/` and `./`, trailing `/`, `..`, spaces: all cleaned away.
    (["/foo/bar"], "foo/bar", True),
    (["./foo"], "foo", True),
    (["foo/"], "foo", True),  # trailing `/` is cleaned: a file `foo` matches too
    (["foo/"], "foo/x", True),
    (["a//b/../c"], "a/c", True),
    (["  spaced  "], "spaced", True),
    (["/"], "x", False),
    # Exceptions: the last matching line wins.
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["!README.md", "*.md"], "README.md", True),
    (["*", "!src"], "src/main.c", False),
    (["*", "!src"], "build/out.o", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/pkg-1.0-py3-none-any.whl", False),
    (["!/keep", "keep", "! /keep"], "keep", False),
    # A pattern that matched a parent keeps matching below it (BuildKit's
    # walker), so an exception on the parent alone does not re-include it.
    (["a/b", "!a"], "a/b", True),
    (["a", "!a/b"], "a/b/c", False),
    (["a", "!a/b"], "a/c", True),
    # The root itself is never excluded.
    (["*"], ".", False),
    (["**"], "", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matches(patterns: list[str], path: str, excluded: bool) -> None:
    matcher = IgnoreMatcher.from_text("\n".join(patterns) + "\n")
    assert matcher.matches(path, is_dir=False) is excluded
    assert matcher.matches(path, is_dir=True) is excluded  # files and dirs alike


@pytest.mark.parametrize(
    ("text", "path", "excluded"),
    [
        ("# comment\n*.md\n", "a.md", True),
        ("# *.md\n", "a.md", False),  # a comment, not a pattern
        (" # spaced\n", "# spaced", True),  # `#` must be in column 1
        ("\n\n   \n*.md\n\n", "a.md", True),
        ("*.md   \n", "a.md", True),
        ("*.md\r\n!README.md\r\n", "README.md", False),
        ("\ufeff*.md\n", "a.md", True),
        ("*.md\n!  README.md  \n", "README.md", False),
    ],
)
def test_from_text(text: str, path: str, excluded: bool) -> None:
    assert IgnoreMatcher.from_text(text).matches(path) is excluded


def test_read_patterns_normalises_like_docker() -> None:
    text = "test1\n/test2\n/a/file/here\n\nlastfile\n# comment\n! /inverted/abs/path\n./x/\n"
    assert read_patterns(text) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "x",
    ]


@pytest.mark.parametrize(
    ("path", "want"),
    [("", "."), ("a/../..", ".."), ("//a//b/", "/a/b"), ("/..", "/"), ("./a/./b", "a/b")],
)
def test_clean_path_is_go_clean(path: str, want: str) -> None:
    assert clean_path(path) == want


@pytest.mark.parametrize("bad", ["!", "[", "a[", "[^bc", "[]a]", "[-x]", "[x-]", "[a-b-c]", "a\\"])
def test_malformed_patterns_are_context_errors(bad: str) -> None:
    with pytest.raises(ContextError) as err:
        IgnoreMatcher([bad])
    assert ".dockerignore" in str(err.value)


@pytest.mark.parametrize(
    ("patterns", "directory", "skippable"),
    [
        (["build"], "build", True),
        (["build", "!build/keep.txt"], "build", False),
        (["build", "!other/keep.txt"], "build", True),
        (["build", "!build/sub/**"], "build", False),
        (["build", "!build/sub/**"], "build/other", True),
        # A glob in an exception: Docker walks every excluded directory.
        (["build", "!**/keep.txt"], "build", False),
        (["build", "!*.txt"], "build", False),
    ],
)
def test_can_skip_dir(patterns: list[str], directory: str, skippable: bool) -> None:
    assert IgnoreMatcher(patterns).can_skip_dir(directory) is skippable


def test_match_step_carries_parent_results() -> None:
    matcher = IgnoreMatcher(["vendor", "!vendor/keep"])
    excluded, state = matcher.match_step("vendor", None)
    assert excluded
    assert matcher.match_step("vendor/keep", state)[0] is False
    assert matcher.match_step("vendor/drop", state)[0] is True


def test_empty_matcher_excludes_nothing() -> None:
    matcher = IgnoreMatcher.from_text("# nothing here\n\n")
    assert not matcher
    assert not matcher.matches("anything/at/all")
    assert matcher.can_skip_dir("x")
