"""Interoperability tests: third-party tools (skopeo, umoci, buildah) read
what Farm writes, and buildah builds the same Dockerfiles for comparison.

Every test gets its own FARM_HOME, and its own buildah storage (`--root`,
`--runroot` under the test's tmp dir, the vfs driver so nothing is mounted
over the overlay the tests may run on). The `buildah` fixture removes its
containers, images and any mount left under its root when the test ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from buildkit import binfmt
from buildkit.events import discard
from buildkit.platforms import parse_platform, parse_platforms
from tests.fixtures.rootfs import busybox_rootfs_tarball
from workers.embedded import LocalBuild, Output, run_build
from workers.settings import Settings

TOOLS = ("skopeo", "umoci", "buildah")


def need_root_and_overlay() -> None:
    if os.geteuid() != 0:
        pytest.skip("Farm's sandbox and buildah's chroot isolation need root")
    if "overlay" not in Path("/proc/filesystems").read_text():
        pytest.skip("no overlayfs")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


def need_arm64() -> None:
    if not binfmt.status().can_run(parse_platform("linux/arm64")):
        pytest.skip("linux/arm64 is neither native nor emulated here (farm binfmt install)")


def run(*argv: str | Path, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run a tool; on failure, fail the test with its output."""
    cmd = [str(a) for a in argv]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def add_rootfs_tarballs(context: Path, arches: tuple[str, ...] = ("amd64", "arm64")) -> None:
    """`rootfs-<arch>.tar` (the busybox roots) in `context`, hardlinked from the cache."""
    for arch in arches:
        target = context / f"rootfs-{arch}.tar"
        source = busybox_rootfs_tarball(arch)
        try:
            os.link(source, target)
        except OSError:  # another filesystem
            shutil.copyfile(source, target)


class FarmBuilder:
    """`farm build` in this process, with its own FARM_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.settings = Settings(home=home, storage=f"file://{home / 'registry'}")

    def build_oci(
        self,
        context: Path,
        dest: Path,
        *,
        platforms: tuple[str, ...] = ("linux/amd64",),
        build_args: Mapping[str, str] | None = None,
    ) -> Path:
        request = LocalBuild(
            context=str(context),
            platforms=parse_platforms(list(platforms)),
            build_args=dict(build_args or {}),
            outputs=(Output("oci", dest=str(dest)),),
            cwd=context,
        )
        run_build(request, self.settings, discard, warn=lambda text: None)
        return dest


@pytest.fixture
def farm(tmp_path: Path) -> FarmBuilder:
    need_root_and_overlay()
    home = tmp_path / "farm-home"
    home.mkdir()
    return FarmBuilder(home)


class Buildah:
    """buildah over a private storage: `buildah --root R --runroot RR --storage-driver vfs`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.runroot = base / "runroot"
        self.argv = (
            need_tool("buildah"),
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--storage-driver", "vfs",
        )  # fmt: skip

    def __call__(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # stdin closed: nothing may wait for an answer (a short-name prompt).
        return run(*self.argv, *args, timeout=timeout, stdin=subprocess.DEVNULL)

    def cleanup(self) -> None:
        for args in (("rm", "--all"), ("rmi", "--all", "--force")):
            subprocess.run([*self.argv, *args], capture_output=True, timeout=60)
        # vfs mounts nothing, but chroot isolation may leave a bind mount behind
        # when a run is killed: unmount whatever is still under our storage.
        for mountpoint in reversed(_mounts_under(self.base)):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)


def _mounts_under(base: Path) -> list[str]:
    prefix = os.path.realpath(base) + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mountpoint = line.split()[1].replace("\\040", " ")
        if mountpoint.startswith(prefix):
            found.append(mountpoint)
    return found


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[Buildah]:
    need_root_and_overlay()
    tool = Buildah(tmp_path / "buildah")
    try:
        yield tool
    finally:
        tool.cleanup()
