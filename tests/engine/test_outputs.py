"""Outputs: an OCI archive, a local directory, the store's tags, --metadata-file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.engine.conftest import AMD64, ARM64, BASE, build, need_arm64, write_context

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

DOCKERFILE = BASE + "RUN uname -m > /arch\n"


def test_oci_archive_has_one_annotated_index(tmp_path: Path) -> None:
    need_arm64()
    dest = tmp_path / "out.tar"
    built = build(
        tmp_path,
        DOCKERFILE,
        platforms=[AMD64, ARM64],
        tags=["app:1.0"],
        outputs=[f"type=oci,dest={dest}"],
    )
    with tarfile.open(dest) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        layout = json.load(tar.extractfile("oci-layout"))  # type: ignore[arg-type]
        (entry,) = index["manifests"]
        assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert entry["digest"] == built.digest
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1.0"
        assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/app:1.0"
        inner = json.load(tar.extractfile("blobs/sha256/" + built.digest.split(":")[1]))  # type: ignore[arg-type]
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert {m["platform"]["architecture"] for m in inner["manifests"]} == {"amd64", "arm64"}
    for platform in (AMD64, ARM64):
        for digest in [built.manifest_digest(platform), *built.layer_digests(platform)]:
            assert "blobs/sha256/" + digest.split(":")[1] in names
    # type=oci alone does not tag the store.
    assert not (built.home / "registry/docker/registry/v2/repositories/app").exists()
    assert not list(tmp_path.glob(".out.tar.part"))


def test_local_output_one_directory_per_platform(tmp_path: Path) -> None:
    need_arm64()
    dest = tmp_path / "rootfs"
    build(tmp_path, DOCKERFILE, platforms=[AMD64, ARM64], outputs=[f"type=local,dest={dest}"])
    assert sorted(os.listdir(dest)) == ["linux_amd64", "linux_arm64"]
    assert (dest / "linux_amd64/arch").read_text() == "x86_64\n"
    assert (dest / "linux_arm64/arch").read_text() == "aarch64\n"
    assert (dest / "linux_arm64/bin/busybox").is_file()


def test_local_output_one_platform_is_the_root(tmp_path: Path) -> None:
    dest = tmp_path / "rootfs"
    build(tmp_path, DOCKERFILE, outputs=[f"type=local,dest={dest}"])
    assert (dest / "arch").read_text() == "x86_64\n"
    assert (dest / "etc/passwd").is_file()


def test_tags_point_at_the_built_image(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    built = build(tmp_path, DOCKERFILE, tags=["app:1", "team/app:2", "app"])
    assert str(store.resolve("app", "1").digest) == built.digest
    assert str(store.resolve("team/app", "2").digest) == built.digest
    assert str(store.resolve("app", "latest").digest) == built.digest


def test_metadata_file_from_the_cli(tmp_path: Path) -> None:
    need_arm64()
    context = write_context(tmp_path / "context", DOCKERFILE)
    home = tmp_path / "farm-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_HOME"] = str(home)
    meta = tmp_path / "meta.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("farm")), "build", "--progress", "plain",
         "--platform", "linux/amd64,linux/arm64", "-t", "app:1", "--metadata-file", str(meta), "."],
        cwd=context, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(meta.read_text())
    index_digest = done.stdout.strip().splitlines()[-1]
    assert data["containerimage.digest"] == index_digest
    assert data["containerimage.descriptor"]["digest"] == index_digest
    assert (
        data["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    )
    assert data["image.name"] == "app:1"
    link = home / "registry/docker/registry/v2/repositories/app/_manifests/tags/1/current/link"
    assert link.read_text() == index_digest
    index_blob = (
        home
        / f"registry/docker/registry/v2/blobs/sha256/{index_digest[7:9]}/{index_digest[7:]}/data"
    )
    manifests = json.loads(index_blob.read_text())["manifests"]
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in manifests
    }
    assert data["farm.platforms"] == platforms
