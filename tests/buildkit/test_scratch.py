"""Reading the mount table for stale scratch dirs: the kernel's octal escapes,
names that are not UTF-8, separators `str.splitlines` would also split on."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildkit.scratch import collect_stale, mounts_under

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]


@pytest.fixture
def mount_tmpfs() -> Iterator:  # type: ignore[type-arg]
    mounted: list[bytes] = []

    def mount(point: bytes) -> None:
        os.makedirs(point, exist_ok=True)
        subprocess.run([b"mount", b"-t", b"tmpfs", b"tmpfs", point], check=True)
        mounted.append(point)

    yield mount
    for point in reversed(mounted):
        subprocess.run([b"umount", b"-l", point], check=False)


@pytest.mark.parametrize("name", ["a b", "a\tb", "a\nb", "a\\b", "a\\040b", "a\rb", "a\x85b"])
def test_escaped_names_are_found(tmp_path: Path, mount_tmpfs, name: str) -> None:  # type: ignore[no-untyped-def]
    point = tmp_path / "tmp" / name / "merged"
    mount_tmpfs(os.fsencode(point))
    assert mounts_under(tmp_path / "tmp" / name) == [point]
    assert mounts_under(tmp_path / "tmp" / (name + "x")) == []  # a prefix is no parent


def test_a_mount_named_in_latin_1_elsewhere_breaks_nothing(tmp_path: Path, mount_tmpfs) -> None:  # type: ignore[no-untyped-def]
    mount_tmpfs(os.fsencode(tmp_path) + b"/caf\xe9")
    scratch = tmp_path / "home" / "tmp"
    (scratch / "ovl-x").mkdir(parents=True)
    (scratch / "ovl-x.lock").touch()  # a killed build's dir, its lock free
    assert collect_stale(scratch) == ["ovl-x"]
    assert list(scratch.iterdir()) == []
