"""Deletions in a RUN step: whiteouts and opaque directories in the layer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]


def test_deleting_a_lower_file_writes_a_whiteout(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + "RUN rm /etc/group /bin/yes\n")
    top = built.layer_members(-1)
    assert "etc/.wh.group" in top
    assert "bin/.wh.yes" in top
    assert all(m.isfile() and m.size == 0 for n, m in top.items() if ".wh." in n)
    # No overlayfs character-device whiteout leaks into the layer.
    assert not [m for m in top.values() if m.ischr()]
    root = built.rootfs(tmp_path / "root")
    assert not (root / "etc/group").exists()
    assert not (root / "bin/yes").is_symlink()
    assert (root / "etc/passwd").is_file()
    assert not list(root.rglob(".wh.*"))


def test_recreated_directory_is_opaque(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "RUN mkdir -p /d/sub && touch /d/a /d/b /d/sub/c\n"
        + "RUN rm -rf /d && mkdir /d && touch /d/new\n",
    )
    top = built.layer_members(-1)
    assert "d/.wh..wh..opq" in top
    assert "d/new" in top
    assert "d/a" not in top
    root = built.rootfs(tmp_path / "root")
    assert sorted(p.name for p in (root / "d").iterdir()) == ["new"]


def test_a_file_replaced_by_a_directory_and_back(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "RUN echo x > /thing && mkdir /dir && echo y > /dir/f\n"
        + "RUN rm /thing && mkdir /thing && touch /thing/inside && rm -r /dir && echo z > /dir\n",
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "thing").is_dir() and (root / "thing/inside").is_file()
    assert stat.S_ISREG((root / "dir").lstat().st_mode)
    assert (root / "dir").read_text() == "z\n"


def test_deleted_then_recreated_file_in_the_same_step(tmp_path: Path) -> None:
    built = build(
        tmp_path, BASE + "RUN rm /etc/passwd && echo 'root:x:0:0::/:/bin/sh' > /etc/passwd\n"
    )
    top = built.layer_members(-1)
    assert "etc/passwd" in top and "etc/.wh.passwd" not in top
    root = built.rootfs(tmp_path / "root")
    assert (root / "etc/passwd").read_text() == "root:x:0:0::/:/bin/sh\n"
