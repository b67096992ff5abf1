import os
from pathlib import Path

import pytest

from buildkit.overlay import merged

pytestmark = pytest.mark.sandbox


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def test_merged_view_with_upper_captures_writes_and_unmounts(tmp_path):
    home = tmp_path / "home"
    low1, low2, upper = tmp_path / "l1", tmp_path / "l2", tmp_path / "up"
    for d in (low1, low2, upper):
        d.mkdir()
    (low2 / "a").write_text("old")
    (low1 / "a").write_text("new")
    (low2 / "b").write_text("b")
    with merged(home, [low1, low2], upper) as root:
        assert (root / "a").read_text() == "new"
        (root / "c").write_text("c")
        os.unlink(root / "b")
        mountpoint = str(root)
        assert mountpoint in _mounts()
    assert mountpoint not in _mounts()
    assert (upper / "c").read_text() == "c"
    # The deletion is an overlay whiteout: a 0/0 character device.
    st = os.lstat(upper / "b")
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert (low2 / "b").exists()


def test_readonly_view_of_one_lower(tmp_path):
    low = tmp_path / "low"
    low.mkdir()
    (low / "f").write_text("x")
    with merged(tmp_path / "home", [low]) as root:
        assert (root / "f").read_text() == "x"
        with pytest.raises(OSError):
            (root / "g").write_text("no")


def test_many_layers_fit_in_the_mount_options(tmp_path):
    lowers = []
    for i in range(120):
        d = tmp_path / f"layer-with-a-rather-long-directory-name-{i:03d}"
        d.mkdir()
        (d / f"f{i}").write_text(str(i))
        lowers.append(d)
    with merged(tmp_path / "home", lowers) as root:
        assert sorted(os.listdir(root)) == sorted(f"f{i}" for i in range(120))


def test_parallel_views_of_the_same_lowers(tmp_path):
    """Stages of one build mount views of the same snapshots from several threads."""
    import concurrent.futures

    low = tmp_path / "low"
    low.mkdir()
    (low / "f").write_text("x")
    home = tmp_path / "home"

    def view(_: int) -> str:
        with merged(home, [low]) as root:
            return (root / "f").read_text()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(view, range(64))) == ["x"] * 64


def test_views_are_nosuid_and_nodev(tmp_path):
    """The host never runs an image's setuid program or opens its device nodes
    through a view."""
    low = tmp_path / "low"
    low.mkdir()
    with merged(tmp_path / "home", [low]) as root:
        line = next(entry for entry in _mounts().splitlines() if entry.split()[4] == str(root))
        flags = line.split()[5].split(",")
        assert "nosuid" in flags and "nodev" in flags
