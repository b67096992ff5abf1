"""skopeo, umoci and buildah read a two-platform OCI archive Farm wrote.

One build (amd64 + arm64, `type=oci,dest=out.tar`) per module; each test reads
it with an independent tool: the index and its platforms (skopeo), picking the
arm64 manifest out of it (skopeo copy --override-arch), unpacking that image
into a runtime bundle (umoci), and running it under QEMU (buildah).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import (
    Buildah,
    FarmBuilder,
    add_rootfs_tarballs,
    need_arm64,
    need_root_and_overlay,
    need_tool,
    run,
)
from tests.interop.oci import load_image

pytestmark = [pytest.mark.interop, pytest.mark.sandbox]

DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
ENV GREETING="hello there" MODE=interop
WORKDIR /app
RUN uname -m > /app/arch && echo "$GREETING from $TARGETARCH" > /app/greeting
CMD ["/bin/sh", "-c", "cat /app/arch"]
"""

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """out.tar: the two-platform build as an OCI archive."""
    need_root_and_overlay()
    need_arm64()
    base = tmp_path_factory.mktemp("readers")
    context = base / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    add_rootfs_tarballs(context)
    (base / "home").mkdir()
    return FarmBuilder(base / "home").build_oci(
        context, base / "out.tar", platforms=("linux/amd64", "linux/arm64")
    )


@pytest.fixture
def arm64_layout(archive: Path, tmp_path: Path) -> Path:
    """The arm64 image alone, copied out of the archive by skopeo into oci:DIR:latest."""
    skopeo = need_tool("skopeo")
    layout = tmp_path / "arm64"
    run(
        skopeo, "copy", "--override-arch", "arm64", f"oci-archive:{archive}", f"oci:{layout}:latest"
    )
    return layout


def _skopeo_inspect(*args: str | Path) -> dict:
    return json.loads(run(need_tool("skopeo"), "inspect", *args).stdout)


@pytest.mark.timeout(60)
def test_skopeo_reads_the_index_with_both_platforms(archive: Path) -> None:
    index = _skopeo_inspect("--raw", f"oci-archive:{archive}")

    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    platforms = sorted(
        (m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]
    )
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    assert {m["mediaType"] for m in index["manifests"]} == {OCI_MANIFEST}


@pytest.mark.timeout(60)
def test_skopeo_inspects_the_amd64_image_and_its_config(archive: Path) -> None:
    ref = f"oci-archive:{archive}"
    summary = _skopeo_inspect("--override-arch", "amd64", ref)
    config = _skopeo_inspect("--override-arch", "amd64", "--config", ref)

    assert (summary["Os"], summary["Architecture"]) == ("linux", "amd64")
    assert len(summary["Layers"]) == 3  # the ADDed root, WORKDIR's mkdir, the RUN
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "cat /app/arch"]
    assert config["config"]["WorkingDir"] == "/app"
    assert "GREETING=hello there" in config["config"]["Env"]
    assert "MODE=interop" in config["config"]["Env"]
    assert len(config["rootfs"]["diff_ids"]) == 3


@pytest.mark.timeout(60)
def test_skopeo_copy_takes_the_arm64_manifest(arm64_layout: Path) -> None:
    image = load_image(arm64_layout)

    assert image.manifest["mediaType"] == OCI_MANIFEST
    assert (image.config["os"], image.config["architecture"]) == ("linux", "arm64")
    # skopeo copies every blob it names; all of them are there and intact.
    for desc in (image.manifest["config"], *image.manifest["layers"]):
        assert image.blob(desc["digest"]).stat().st_size == desc["size"]


@pytest.mark.timeout(60)
def test_umoci_unpacks_the_arm64_rootfs_and_config(arm64_layout: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    run(need_tool("umoci"), "unpack", "--image", f"{arm64_layout}:latest", bundle)

    rootfs = bundle / "rootfs"
    assert (rootfs / "app/arch").read_text() == "aarch64\n"  # uname -m ran under QEMU
    assert (rootfs / "app/greeting").read_text() == "hello there from arm64\n"
    assert (rootfs / "bin/sh").is_symlink()
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/bin/sh", "-c", "cat /app/arch"]
    assert runtime["process"]["cwd"] == "/app"
    assert "GREETING=hello there" in runtime["process"]["env"]
    assert "MODE=interop" in runtime["process"]["env"]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("source", ["archive", "copied-layout"])
def test_buildah_runs_the_arm64_image_under_qemu(
    source: str, archive: Path, buildah: Buildah, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if source == "archive":
        ref = ("--arch", "arm64", f"oci-archive:{archive}")
    else:
        ref = (f"oci:{request.getfixturevalue('arm64_layout')}:latest",)
    container = buildah("from", "--pull-never", *ref).stdout.strip().splitlines()[-1]

    inspect = json.loads(buildah("inspect", "--type", "container", container).stdout)
    assert inspect["OCIv1"]["architecture"] == "arm64"
    ran = buildah("run", "--isolation", "chroot", container, "--", "/bin/sh", "-c", "uname -m")
    assert ran.stdout.strip() == "aarch64"
    written = buildah("run", "--isolation", "chroot", container, "--", "cat", "/app/greeting")
    assert written.stdout == "hello there from arm64\n"


@pytest.mark.timeout(60)
def test_skopeo_rejects_a_missing_platform(archive: Path) -> None:
    """The other tests pass on what they should: asking for a platform the index
    does not hold fails."""
    result = subprocess.run(
        [need_tool("skopeo"), "inspect", "--override-arch", "s390x", f"oci-archive:{archive}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "s390x" in result.stderr
