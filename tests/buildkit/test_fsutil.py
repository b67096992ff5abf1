"""buildkit.fsutil: paths resolved inside a root, against real directory trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from buildkit.fsutil import (
    PathResolutionError,
    clean_abs,
    mkdir_all,
    open_regular_in_root,
    resolve_in_root,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An image root full of hostile symlinks, next to a host secret outside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("host secret\n")
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "a" / "b").mkdir(parents=True)
    os.symlink("/etc", r / "link_abs")
    os.symlink("../../etc", r / "link_rel")
    os.symlink("/../../../../etc", r / "escape")
    os.symlink("../..", r / "a" / "up")
    os.symlink("/", r / "slash")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("/etc/passwd", r / "lastlink")
    os.symlink("../outside/secret", r / "climb")
    os.symlink(str(tmp_path / "outside" / "secret"), r / "hostabs")
    return r


@pytest.mark.parametrize(
    ("path", "follow_last", "want"),
    [
        ("etc/passwd", True, "etc/passwd"),
        ("/etc/passwd", True, "etc/passwd"),
        ("/link_abs/passwd", True, "etc/passwd"),  # absolute target: from the root
        ("link_rel/passwd", True, "etc/passwd"),  # `..` stops at the root
        ("escape/passwd", True, "etc/passwd"),
        ("../../etc", True, "etc"),
        ("a/up/etc", True, "etc"),
        ("a/up/../../..", True, ""),
        ("slash/etc/passwd", True, "etc/passwd"),
        ("missing/x/../y", True, "missing/y"),
        ("lastlink", True, "etc/passwd"),
        ("lastlink", False, "lastlink"),  # lstat view: the link itself
        ("link_abs/passwd", False, "etc/passwd"),  # only the last component is kept
        ("climb", True, "outside/secret"),  # inside the root, not the host's
        ("hostabs", True, "PLACEHOLDER"),
        ("", True, ""),
        ("/", True, ""),
    ],
)
def test_resolve_in_root(root: Path, path: str, follow_last: bool, want: str) -> None:
    if want == "PLACEHOLDER":
        # An absolute target naming the host path is re-rooted under the root.
        want = str(root.parent / "outside" / "secret").lstrip("/")
    got = resolve_in_root(root, path, follow_last=follow_last)
    assert got == root.joinpath(*[p for p in want.split("/") if p])
    assert got == root or root in got.parents


@pytest.mark.parametrize("path", ["loop1", "loop1/x", "a/b/../../loop2"])
def test_resolve_symlink_loop(root: Path, path: str) -> None:
    with pytest.raises(PathResolutionError, match="too many levels"):
        resolve_in_root(root, path)


def test_resolve_through_file_is_an_error(root: Path) -> None:
    with pytest.raises(PathResolutionError, match="not a directory"):
        resolve_in_root(root, "etc/passwd/x/y")


@pytest.mark.parametrize(
    ("path", "want"),
    [("", "/"), (".", "/"), ("a/../../b", "/b"), ("//x//y/", "/x/y"), ("/a/./b/..", "/a")],
)
def test_clean_abs(path: str, want: str) -> None:
    assert clean_abs(path) == want


def test_mkdir_all_creates_with_owner_and_mode(root: Path) -> None:
    created = mkdir_all(root, "/new/deeper/dir", mode=0o750, uid=1000, gid=1001, mtime_ns=10**18)
    assert created == [root / "new", root / "new" / "deeper", root / "new" / "deeper" / "dir"]
    for path in created:
        info = os.lstat(path)
        assert stat.S_IMODE(info.st_mode) == 0o750
        assert (info.st_uid, info.st_gid) == (1000, 1001)
        assert info.st_mtime_ns == 10**18


def test_mkdir_all_keeps_existing(root: Path) -> None:
    os.chmod(root / "a", 0o700)
    assert mkdir_all(root, "a/b/c") == [root / "a" / "b" / "c"]
    assert stat.S_IMODE(os.lstat(root / "a").st_mode) == 0o700


def test_mkdir_all_through_symlink_to_slash_stays_inside(root: Path, tmp_path: Path) -> None:
    assert mkdir_all(root, "/slash/made_here") == [root / "made_here"]
    assert not Path("/made_here").exists()
    assert mkdir_all(root, "climb_dir/../a/up/x") == [root / "x"]


def test_mkdir_all_over_a_file(root: Path) -> None:
    with pytest.raises(PathResolutionError, match="/etc/passwd"):
        mkdir_all(root, "/etc/passwd/sub")


def test_open_regular_in_root(root: Path) -> None:
    assert open_regular_in_root(root, "/etc/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    assert open_regular_in_root(root, "lastlink") == b"root:x:0:0::/root:/bin/sh\n"
    # Links that point at the host's secret resolve inside the root, where there is none.
    assert open_regular_in_root(root, "climb") is None
    assert open_regular_in_root(root, "hostabs") is None
    assert open_regular_in_root(root, "etc") is None  # a directory
    assert open_regular_in_root(root, "missing") is None
    os.mkfifo(root / "etc" / "fifo")
    assert open_regular_in_root(root, "/etc/fifo") is None  # never blocks on a fifo
    os.symlink("/dev/zero", root / "etc" / "zero")
    assert open_regular_in_root(root, "/etc/zero") is None
    (root / "big").write_bytes(b"x" * 100)
    with pytest.raises(PathResolutionError, match="larger than"):
        open_regular_in_root(root, "big", max_bytes=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_open_regular_ignores_device_nodes(root: Path) -> None:
    os.mknod(root / "etc" / "group", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
    assert open_regular_in_root(root, "/etc/group") is None
