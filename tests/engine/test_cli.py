"""The one-machine CLI end to end: farm build, images, run, binfmt, and the
emulation check that fails before any step runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from buildkit import binfmt
from buildkit.builder import Builder
from buildkit.context import open_context
from buildkit.dockerfile import parse_dockerfile
from buildkit.dockerfile.buildplan import BuildOptions
from buildkit.dockerfile.plan import plan_build
from buildkit.errors import EmulationUnavailable
from buildkit.events import Recorder
from buildkit.executor import EngineConfig
from buildkit.platforms import host_platform, parse_platform
from buildkit.store.filesystem import FilesystemStore
from tests.engine.conftest import need_arm64, write_context

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

FARM = str(Path(sys.executable).with_name("farm"))

HELLO = """\
FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
RUN echo "built on $(uname -m)" > /built-on
CMD ["sh", "-c", "echo running on $(uname -m), $(cat /built-on)"]
"""


def farm(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "FARM_HOME": str(home)}
    return subprocess.run(
        [FARM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=100
    )


def test_build_images_and_run_both_platforms(home: Path, tmp_path: Path) -> None:
    need_arm64()
    ctx = write_context(tmp_path / "ctx", HELLO)
    res = farm(home, "build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64",
               "-t", "hello:1", "--metadata-file", "meta.json", ".", cwd=ctx)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "(emulated)" in res.stderr  # the arm64 RUN went through QEMU
    meta = json.loads((ctx / "meta.json").read_text())
    assert res.stdout.strip() == meta["containerimage.digest"]

    listing = farm(home, "images", cwd=ctx)
    row = next(line.split() for line in listing.stdout.splitlines() if line.startswith("hello"))
    assert row[:2] == ["hello", "1"]
    assert meta["containerimage.digest"].startswith(row[2])
    assert row[3] == "linux/amd64,linux/arm64"

    amd = farm(home, "run", "--platform", "linux/amd64", "hello:1", cwd=ctx)
    arm = farm(home, "run", "--platform", "linux/arm64", "hello:1", cwd=ctx)
    assert amd.stdout.strip() == "running on x86_64, built on x86_64", amd.stderr
    assert arm.stdout.strip() == "running on aarch64, built on aarch64", arm.stderr

    custom = farm(
        home, "run", "--platform", "linux/amd64", "hello:1", "sh", "-c", "exit 7", cwd=ctx
    )
    assert custom.returncode == 7


def test_run_of_a_missing_platform_names_what_the_image_has(home: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", HELLO)
    assert (
        farm(home, "build", "--platform", "linux/amd64", "-t", "one:1", ".", cwd=ctx).returncode
        == 0
    )
    res = farm(home, "run", "--platform", "linux/arm64", "one:1", cwd=ctx)
    assert res.returncode == 1
    assert "linux/amd64" in res.stderr and "Traceback" not in res.stderr


def test_zstd_output_layers(home: Path, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", HELLO)
    res = farm(home, "build", "--platform", "linux/amd64", "-o", "type=oci,dest=out.tar,compression=zstd",
               ".", cwd=ctx)  # fmt: skip
    assert res.returncode == 0, res.stderr
    listing = subprocess.run(["skopeo", "inspect", "--raw", "oci-archive:" + str(ctx / "out.tar")],
                             capture_output=True, text=True, check=True)  # fmt: skip
    manifest = json.loads(listing.stdout)
    types = {layer["mediaType"] for layer in manifest["layers"]}
    assert types == {"application/vnd.oci.image.layer.v1.tar+zstd"}


def test_binfmt_status_lists_native_and_emulated(home: Path, tmp_path: Path) -> None:
    res = farm(home, "binfmt", "status", cwd=tmp_path)
    assert res.returncode == 0
    lines = dict(line.split(":", 1) for line in res.stdout.splitlines() if ":" in line)
    assert lines["native"].strip() == str(host_platform())
    for plat in binfmt.status().emulated:
        assert str(plat) in lines["emulated"]


def test_unrunnable_platform_fails_before_any_step(home: Path, tmp_path: Path) -> None:
    """With no emulation for arm64 the build stops before its first step and says how to fix it."""
    ctx_dir = write_context(tmp_path / "ctx", HELLO)
    host = host_platform()
    arm = parse_platform("linux/arm64")
    recorder = Recorder()
    builder = Builder(
        FilesystemStore(home / "registry"),
        EngineConfig(home=home),
        emit=recorder,
        emulation=binfmt.Status(native=(host,), emulated=()),
    )
    with open_context(str(ctx_dir)) as ctx:
        df = parse_dockerfile(ctx.dockerfile_text)
        plans = plan_build(df, BuildOptions(target_platforms=(host, arm), build_platform=host))
        with pytest.raises(EmulationUnavailable) as err:
            builder.build(plans, ctx)
    assert "linux/arm64" in str(err.value)
    assert "farm binfmt install linux/arm64" in str(err.value)
    assert recorder.events == []  # not even the amd64 steps started
