"""buildkit.copy: COPY against real directories, expectations from Docker's reference.

Every expected tree below was written by hand from the Dockerfile reference
(COPY/ADD sections) and BuildKit's documented behaviour, not from our output.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from buildkit.copy import CopyError, copy_sources
from buildkit.dockerfile.instructions import Copy
from buildkit.dockerfile.syntax import Heredoc
from buildkit.errors import ContextError, UserError
from buildkit.globs import BadPattern, match_component, match_path
from buildkit.modes import ChmodError, parse_chmod
from buildkit.users import UnknownUserError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
MTIME = 1_600_000_000 * 10**9


def spec(*sources: str, dest: str, **kw: Any) -> Copy:
    return Copy(line=1, end_line=1, original="COPY", sources=sources, dest=dest, **kw)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    os.utime(path, ns=(MTIME, MTIME))


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    write(c / "a.txt", "A")
    write(c / "b.txt", "B", 0o600)
    write(c / "run.sh", "#!/bin/sh\n", 0o755)
    write(c / "home.md", "home md")
    write(c / "homer.txt", "homer")
    write(c / "home" / "x.txt", "hx")
    write(c / "home" / "y.md", "hy")
    write(c / "home" / "sub" / "z.txt", "hz")
    write(c / "dir" / "file1", "1")
    write(c / "dir" / "sub" / "file2", "2")
    os.symlink("file1", c / "dir" / "link")
    os.symlink("/etc/passwd", c / "dir" / "abs")
    write(c / "arr[0].txt", "arr")
    write(c / "x" / "a.txt", "xa")
    write(c / "y" / "a.txt", "ya")
    write(c / "x" / "y" / "a.txt", "xya")
    write(c / "x" / "y" / "b.txt", "xyb")
    write(c / "src" / "a.txt", "sa")
    write(c / "src" / "x" / "b.txt", "sxb")
    write(c / "src" / "x" / "y" / "c.txt", "sxyc")
    write(c / "src" / "x" / "y" / "d.md", "sxyd")
    os.symlink("/etc", c / "toetc")
    os.symlink("../../../..", c / "updir")
    os.symlink("a.txt", c / "alink")
    return c


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "rootfs"
    (d / "existing").mkdir(parents=True)
    (d / "etc").mkdir()
    (d / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n")
    (d / "etc" / "group").write_text("root:x:0:\nstaff:x:50:alice\n")
    return d


BASELINE = {"existing", "etc", "etc/passwd", "etc/group"}


def tree(root: Path) -> dict[str, str]:
    """path → file content, "->target" for a symlink, "/" for a directory (baseline left out)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel in BASELINE:
                continue
            if path.is_symlink():
                out[rel] = "->" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "/"
            else:
                out[rel] = path.read_text()
    return out


def run(ctx: Path, dest: Path, *sources: str, to: str, workdir: str = "/", **kw: Any) -> list[str]:
    return copy_sources(
        spec(*sources, dest=to, **kw), src_root=ctx, dest_root=dest, workdir=workdir
    )


@pytest.mark.parametrize(
    ("sources", "to", "workdir", "want"),
    [
        # A file to a destination without a slash becomes that file.
        (("a.txt",), "/dst", "/", {"dst": "A"}),
        # ... with a slash, or an existing directory, it goes inside.
        (("a.txt",), "/dst/", "/", {"dst": "/", "dst/a.txt": "A"}),
        (("a.txt",), "/existing", "/", {"existing/a.txt": "A"}),
        (("a.txt",), "/deep/er/f", "/", {"deep": "/", "deep/er": "/", "deep/er/f": "A"}),
        # A relative destination is relative to WORKDIR.
        (("a.txt",), "rel/", "/app", {"app": "/", "app/rel": "/", "app/rel/a.txt": "A"}),
        (("a.txt",), ".", "/existing", {"existing/a.txt": "A"}),
        (("a.txt",), "./", "/app", {"app": "/", "app/a.txt": "A"}),
        # A directory copies its contents, not itself; symlinks inside stay links.
        (
            ("dir",),
            "/out",
            "/",
            {
                "out": "/",
                "out/file1": "1",
                "out/sub": "/",
                "out/sub/file2": "2",
                "out/link": "->file1",
                "out/abs": "->/etc/passwd",
            },
        ),
        (("dir/sub/",), "/existing/", "/", {"existing/file2": "2"}),
        (("dir/sub",), "/", "/", {"file2": "2"}),
        # `../` and a leading `/` cannot leave the context; trailing slashes mean nothing.
        (("../a.txt",), "/dst", "/", {"dst": "A"}),
        (("/../../a.txt",), "/dst", "/", {"dst": "A"}),
        # Several sources into a directory.
        (("a.txt", "b.txt"), "/m/", "/", {"m": "/", "m/a.txt": "A", "m/b.txt": "B"}),
        (("a.txt", "dir/sub"), "/existing", "/", {"existing/a.txt": "A", "existing/file2": "2"}),
        # Wildcards: Go's filepath.Match, one component at a time.
        (
            ("*.txt",),
            "/w/",
            "/",
            {
                "w": "/",
                "w/a.txt": "A",
                "w/b.txt": "B",
                "w/homer.txt": "homer",
                "w/arr[0].txt": "arr",
            },
        ),
        (("?.txt",), "/w/", "/", {"w": "/", "w/a.txt": "A", "w/b.txt": "B"}),
        (("[ab].txt",), "/w/", "/", {"w": "/", "w/a.txt": "A", "w/b.txt": "B"}),
        (("[^a].txt",), "/w/", "/", {"w": "/", "w/b.txt": "B"}),
        (("arr[[]0].txt",), "/w/", "/", {"w": "/", "w/arr[0].txt": "arr"}),
        (("*/a.txt",), "/w/", "/", {"w": "/", "w/a.txt": "ya"}),  # x/a.txt then y/a.txt
        (("x/*/*.txt",), "/w/", "/", {"w": "/", "w/a.txt": "xya", "w/b.txt": "xyb"}),
        (("*/y/b.txt",), "/w/", "/", {"w": "/", "w/b.txt": "xyb"}),  # files on the way skipped
        # `**` without --parents is Go's `*` for one component.
        (("**.sh",), "/w/", "/", {"w": "/", "w/run.sh": "#!/bin/sh\n"}),
        # A wildcard matching one directory copies its contents.
        (
            ("di?",),
            "/w",
            "/",
            {
                "w": "/",
                "w/file1": "1",
                "w/sub": "/",
                "w/sub/file2": "2",
                "w/link": "->file1",
                "w/abs": "->/etc/passwd",
            },
        ),
        # A wildcard matching nothing copies nothing (BuildKit allows empty wildcards).
        (("nomatch*",), "/w/", "/", {}),
        (("a.txt", "nomatch*"), "/w/", "/", {"w": "/", "w/a.txt": "A"}),
        # A source that is a symlink is followed; the copy is named after the link.
        (("alink",), "/d/", "/", {"d": "/", "d/alink": "A"}),
        # A symlink climbing out of the context resolves inside it.
        (("updir/a.txt",), "/d", "/", {"d": "A"}),
    ],
)
def test_copy(
    ctx: Path, dest: Path, sources: tuple[str, ...], to: str, workdir: str, want: dict[str, str]
) -> None:
    run(ctx, dest, *sources, to=to, workdir=workdir)
    assert tree(dest) == want


@pytest.mark.parametrize(
    ("sources", "to"),
    [
        (("a.txt", "b.txt"), "/file"),
        (("*.txt",), "/file"),  # several matches need a directory too
        (("a.txt", "b.txt"), "/etc/passwd"),
    ],
)
def test_several_sources_need_a_directory(
    ctx: Path, dest: Path, sources: tuple[str, ...], to: str
) -> None:
    with pytest.raises(CopyError, match="destination must be a directory and end with a /"):
        run(ctx, dest, *sources, to=to)
    assert tree(dest) == {}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nope.txt", 'source "nope.txt" not found in build context: /nope.txt'),
        ("dir/nope", 'source "dir/nope" not found'),
        ("a.txt/x", 'source "a.txt/x" not found'),
        ("nodir/*.txt", "source 'nodir/\\*.txt': /nodir: no such directory"),
        ("toetc/passwd", 'source "toetc/passwd" not found'),  # /etc of the context, not the host
        ("[a.txt", "invalid source pattern '\\[a.txt'"),
    ],
)
def test_missing_sources(ctx: Path, dest: Path, source: str, message: str) -> None:
    with pytest.raises(ContextError, match=message):
        run(ctx, dest, source, to="/d/")
    assert tree(dest) == {}


def test_source_name_in_errors(ctx: Path, dest: Path) -> None:
    with pytest.raises(ContextError, match="not found in stage build"):
        copy_sources(
            spec("nothere", dest="/"),
            src_root=ctx,
            dest_root=dest,
            workdir="/",
            source_name="stage build",
        )


def test_directory_onto_a_file(ctx: Path, dest: Path) -> None:
    (dest / "f").write_text("old")
    with pytest.raises(CopyError, match="cannot copy directory /dir onto file /f"):
        run(ctx, dest, "dir", to="/f")


def test_file_onto_a_directory(ctx: Path, dest: Path) -> None:
    (dest / "out" / "file1").mkdir(parents=True)
    with pytest.raises(CopyError, match="onto directory /out/file1"):
        run(ctx, dest, "dir", to="/out")
    (dest / "d" / "a.txt").mkdir(parents=True)
    with pytest.raises(CopyError, match=r"cannot copy file /a\.txt onto directory /d/a\.txt"):
        run(ctx, dest, "a.txt", to="/d/")


def test_directory_onto_a_nested_file(ctx: Path, dest: Path) -> None:
    (dest / "out").mkdir()
    (dest / "out" / "sub").write_text("a file")
    with pytest.raises(CopyError, match="cannot copy to non-directory: /out/sub"):
        run(ctx, dest, "dir", to="/out")


def test_merges_into_existing_directories_and_replaces_files(ctx: Path, dest: Path) -> None:
    (dest / "out" / "sub").mkdir(parents=True)
    (dest / "out" / "keep").write_text("kept")
    (dest / "out" / "file1").write_text("old")
    run(ctx, dest, "dir", to="/out")
    got = tree(dest)
    assert got["out/keep"] == "kept"
    assert got["out/file1"] == "1"
    assert got["out/sub/file2"] == "2"


def test_existing_symlink_is_replaced_not_written_through(
    ctx: Path, dest: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file")
    (dest / "out").mkdir()
    os.symlink(str(victim), dest / "out" / "file1")
    os.symlink(str(victim), dest / "single")
    run(ctx, dest, "dir", to="/out")
    run(ctx, dest, "a.txt", to="/single")
    assert victim.read_text() == "host file"
    assert not (dest / "out" / "file1").is_symlink()
    assert (dest / "out" / "file1").read_text() == "1"
    assert (dest / "single").read_text() == "A"


def test_destination_through_a_symlink_to_slash_stays_in_the_root(
    ctx: Path, dest: Path, tmp_path: Path
) -> None:
    os.symlink("/", dest / "slash")
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    os.symlink(str(hostdir), dest / "hostlink")
    os.symlink("../../../../..", dest / "climb")
    run(ctx, dest, "a.txt", to="/slash/farm-copy-test")
    run(ctx, dest, "a.txt", to="/hostlink/")
    run(ctx, dest, "dir", to="/climb/cl")
    assert (dest / "farm-copy-test").read_text() == "A"
    assert not Path("/farm-copy-test").exists()
    assert list(hostdir.iterdir()) == []
    inside = dest / str(hostdir).lstrip("/") / "a.txt"
    assert inside.read_text() == "A"
    assert (dest / "cl" / "file1").read_text() == "1"


@needs_root
def test_owners_modes_and_mtimes(ctx: Path, dest: Path) -> None:
    os.chown(ctx / "b.txt", 1234, 5678)
    os.chown(ctx / "dir" / "sub", 1234, 5678)
    run(ctx, dest, "b.txt", "run.sh", "dir", to="/o/")
    for rel in ("o", "o/b.txt", "o/run.sh", "o/sub", "o/sub/file2"):
        info = os.lstat(dest / rel)
        assert (info.st_uid, info.st_gid) == (0, 0), rel  # from the context: root
    assert stat.S_IMODE(os.lstat(dest / "o" / "b.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(dest / "o" / "run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest / "o").st_mode) == 0o755  # created
    assert os.lstat(dest / "o" / "b.txt").st_mtime_ns == MTIME


@needs_root
def test_copy_from_a_stage_keeps_owners(ctx: Path, dest: Path) -> None:
    os.chown(ctx / "dir" / "file1", 1234, 5678)
    os.lchown(ctx / "dir" / "link", 42, 43)
    copy_sources(spec("/dir", dest="/o", from_="build"), src_root=ctx, dest_root=dest, workdir="/")
    assert (os.lstat(dest / "o" / "file1").st_uid, os.lstat(dest / "o" / "file1").st_gid) == (
        1234,
        5678,
    )
    assert os.lstat(dest / "o" / "link").st_uid == 42
    # The destination directory the COPY created belongs to root.
    assert os.lstat(dest / "o").st_uid == 0


@needs_root
@pytest.mark.parametrize(
    ("chown", "want"),
    [("alice", (1000, 1000)), ("1001", (1001, 1001)), ("alice:staff", (1000, 50)), ("7:8", (7, 8))],
)
def test_chown(ctx: Path, dest: Path, chown: str, want: tuple[int, int]) -> None:
    os.chown(ctx / "dir" / "file1", 1234, 5678)
    run(ctx, dest, "dir", "a.txt", to="/new/o/", chown=chown)
    for rel in ("new", "new/o", "new/o/file1", "new/o/link", "new/o/sub", "new/o/a.txt"):
        info = os.lstat(dest / rel)
        assert (info.st_uid, info.st_gid) == want, rel
    assert os.lstat(dest / "existing").st_uid == 0


def test_chown_unknown_user(ctx: Path, dest: Path) -> None:
    with pytest.raises(UnknownUserError, match="unable to find user bob"):
        run(ctx, dest, "a.txt", to="/o", chown="bob")
    assert tree(dest) == {}


@pytest.mark.parametrize(
    ("chmod", "want"),
    [
        ("640", {"o": 0o755, "o/a.txt": 0o640, "o/run.sh": 0o640, "o/d": 0o640}),
        ("0755", {"o": 0o755, "o/a.txt": 0o755, "o/run.sh": 0o755, "o/d": 0o755}),
        # X: execute for directories and files that already have it.
        (
            "u=rwX,go=rX",
            {"o": 0o755, "o/a.txt": 0o644, "o/run.sh": 0o755, "o/d": 0o755, "o/b.txt": 0o644},
        ),
        ("+x", {"o/a.txt": 0o755, "o/b.txt": 0o711, "o/d": 0o777}),
        ("go-w", {"o/d": 0o755, "o/a.txt": 0o644}),
        ("u+x,g=u", {"o/a.txt": 0o774, "o/b.txt": 0o770}),
        ("a=r", {"o/a.txt": 0o444, "o/d": 0o444}),
    ],
)
def test_chmod(ctx: Path, dest: Path, chmod: str, want: dict[str, int]) -> None:
    write(ctx / "tree" / "a.txt", "A", 0o644)
    write(ctx / "tree" / "b.txt", "B", 0o600)
    write(ctx / "tree" / "run.sh", "R", 0o755)
    (ctx / "tree" / "d").mkdir()
    os.chmod(ctx / "tree" / "d", 0o777)
    run(ctx, dest, "tree", to="/o", chmod=chmod)
    for rel, mode in want.items():
        assert stat.S_IMODE(os.lstat(dest / rel).st_mode) == mode, rel


@pytest.mark.parametrize("chmod", ["999", "u+q", "x=r", "rwx", "", "12345"])
def test_bad_chmod(ctx: Path, dest: Path, chmod: str) -> None:
    if not chmod:
        run(ctx, dest, "a.txt", to="/o", chmod=chmod)  # no flag: no change
        return
    with pytest.raises(ChmodError, match="invalid chmod parameter"):
        run(ctx, dest, "a.txt", to="/o", chmod=chmod)


@pytest.mark.parametrize(
    ("sources", "excludes", "want"),
    [
        # The reference's example: everything starting with hom, but no .txt.
        (
            ("hom*",),
            ("*.txt",),
            {"m": "/", "m/home.md": "home md", "m/y.md": "hy", "m/sub": "/", "m/sub/z.txt": "hz"},
        ),
        (("hom*",), ("*.txt", "*.md"), {"m": "/", "m/sub": "/", "m/sub/z.txt": "hz"}),
        (("home",), ("**/*.txt",), {"m": "/", "m/y.md": "hy", "m/sub": "/"}),
        (("home",), ("sub",), {"m": "/", "m/x.txt": "hx", "m/y.md": "hy"}),
        # An exception re-includes something inside an excluded directory.
        (
            ("src",),
            ("x", "!x/y/c.txt"),
            {"m": "/", "m/a.txt": "sa", "m/x": "/", "m/x/y": "/", "m/x/y/c.txt": "sxyc"},
        ),
    ],
)
def test_exclude(
    ctx: Path, dest: Path, sources: tuple[str, ...], excludes: tuple[str, ...], want: dict[str, str]
) -> None:
    run(ctx, dest, *sources, to="/m/", excludes=excludes)
    assert tree(dest) == want


@pytest.mark.parametrize(
    ("sources", "want"),
    [
        # The reference's examples.
        (
            ("./x/a.txt", "./y/a.txt"),
            {"p": "/", "p/x": "/", "p/x/a.txt": "xa", "p/y": "/", "p/y/a.txt": "ya"},
        ),
        (("./x/./y/*.txt",), {"p": "/", "p/y": "/", "p/y/a.txt": "xya", "p/y/b.txt": "xyb"}),
        (
            ("./src/**/*.txt",),
            {
                "p": "/",
                "p/src": "/",
                "p/src/a.txt": "sa",
                "p/src/x": "/",
                "p/src/x/b.txt": "sxb",
                "p/src/x/y": "/",
                "p/src/x/y/c.txt": "sxyc",
            },
        ),
        # A directory keeps its own path.
        (("dir/sub",), {"p": "/", "p/dir": "/", "p/dir/sub": "/", "p/dir/sub/file2": "2"}),
        (("x/./y",), {"p": "/", "p/y": "/", "p/y/a.txt": "xya", "p/y/b.txt": "xyb"}),
    ],
)
def test_parents(ctx: Path, dest: Path, sources: tuple[str, ...], want: dict[str, str]) -> None:
    run(ctx, dest, *sources, to="/p/", parents=True)
    assert tree(dest) == want


def test_without_parents_the_last_source_wins(ctx: Path, dest: Path) -> None:
    run(ctx, dest, "./x/a.txt", "./y/a.txt", to="/no_parents/")
    assert tree(dest) == {"no_parents": "/", "no_parents/a.txt": "ya"}


@needs_root
def test_heredocs(ctx: Path, dest: Path) -> None:
    docs = (Heredoc(name="EOF", content="hello\n"),)
    copy_sources(
        spec(dest="/etc/greeting", heredocs=docs), src_root=ctx, dest_root=dest, workdir="/"
    )
    info = os.lstat(dest / "etc" / "greeting")
    assert (dest / "etc" / "greeting").read_text() == "hello\n"
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o644, 0)
    two = (Heredoc(name="one", content="1\n"), Heredoc(name="two", content="2\n"))
    copy_sources(
        spec(dest="/docs/", heredocs=two, chmod="755", chown="alice"),
        src_root=ctx,
        dest_root=dest,
        workdir="/",
    )
    assert (dest / "docs" / "two").read_text() == "2\n"
    info = os.lstat(dest / "docs" / "one")
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o755, 1000, 1000)
    with pytest.raises(CopyError, match="destination must be a directory"):
        copy_sources(spec(dest="/single", heredocs=two), src_root=ctx, dest_root=dest, workdir="/")


def test_hardlinks_are_kept_within_one_copy(ctx: Path, dest: Path) -> None:
    write(ctx / "hl" / "one", "same")
    os.link(ctx / "hl" / "one", ctx / "hl" / "two")
    run(ctx, dest, "hl", to="/h")
    assert os.lstat(dest / "h" / "one").st_ino == os.lstat(dest / "h" / "two").st_ino
    assert os.lstat(dest / "h" / "one").st_ino != os.lstat(ctx / "hl" / "one").st_ino


def test_fifos_are_copied(ctx: Path, dest: Path) -> None:
    os.mkfifo(ctx / "dir" / "pipe")
    run(ctx, dest, "dir", to="/o")
    assert stat.S_ISFIFO(os.lstat(dest / "o" / "pipe").st_mode)


def test_link_copies_the_same_files(ctx: Path, dest: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    run(ctx, dest, "dir", "a.txt", to="/o/", link=True)
    run(ctx, other, "dir", "a.txt", to="/o/")
    assert tree(dest) == tree(other)


def test_errors_are_user_errors() -> None:
    assert issubclass(CopyError, UserError)
    assert issubclass(ChmodError, UserError)


@pytest.mark.parametrize(
    ("pattern", "name", "want"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", ".hidden.txt", True),  # Go's `*` matches a leading dot
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "bx", False),
        ("[^a-c]x", "dx", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        ("arr[[]0].txt", "arr[0].txt", True),
        ("**", "anything", True),
    ],
)
def test_go_match(pattern: str, name: str, want: bool) -> None:
    assert match_component(pattern, name) is want


@pytest.mark.parametrize("pattern", ["[a", "a\\", "[]a]", "[z-a]", "[a-]"])
def test_go_bad_patterns(pattern: str) -> None:
    with pytest.raises(BadPattern):
        match_component(pattern, "a")


@pytest.mark.parametrize(
    ("pattern", "path", "want"),
    [
        ("src/**/*.txt", "src/a.txt", True),
        ("src/**/*.txt", "src/x/y/c.txt", True),
        ("src/**/*.txt", "src/x/y/d.md", False),
        ("**/c.txt", "c.txt", True),
        ("src/*", "src/x/y", False),
    ],
)
def test_match_path_double_star(pattern: str, path: str, want: bool) -> None:
    assert match_path(pattern, path, double_star=True) is want


@pytest.mark.parametrize(
    ("chmod", "mode", "is_dir", "want"),
    [
        ("755", 0o600, False, 0o755),
        ("0o644", 0o777, True, 0o644),
        ("4755", 0o644, False, 0o4755),
        ("u+x", 0o644, False, 0o744),
        ("+x", 0o644, False, 0o755),
        ("a-w", 0o666, False, 0o444),
        ("go=", 0o777, False, 0o700),
        ("u=rwX,go=rX", 0o600, True, 0o755),
        ("u=rwX,go=rX", 0o600, False, 0o644),
        ("u=rwX,go=rX", 0o700, False, 0o755),
        ("g=u", 0o640, False, 0o660),
        ("o=g,u-w", 0o654, False, 0o455),
        ("u+s,g+s", 0o755, False, 0o6755),
        ("+t", 0o777, True, 0o1777),
        ("u+rw,g+r", 0o000, False, 0o640),
    ],
)
def test_parse_chmod(chmod: str, mode: int, is_dir: bool, want: int) -> None:
    assert parse_chmod(chmod)(mode, is_dir) == want
