"""skopeo (containers/image) pushes into `farm serve` and reads back what it pushed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.registry.conftest import ProcessServer, two_platform_archive

pytestmark = pytest.mark.interop


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (Debian package skopeo)")
    result = subprocess.run(["skopeo", *args], capture_output=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(
            f"skopeo {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode()}"
        )
    return result


def push_and_read_back(archive: Path, host: str, *creds: str) -> bytes:
    skopeo("copy", "--all", "--dest-tls-verify=false", *[f"--dest-{c}" for c in creds],
           f"oci-archive:{archive}", f"docker://{host}/x:1")  # fmt: skip
    return skopeo("inspect", "--raw", "--tls-verify=false", *[f"--{c}" for c in creds],
                  f"docker://{host}/x:1").stdout  # fmt: skip


def test_skopeo_push_and_inspect(tmp_path):
    index = two_platform_archive(tmp_path / "image.tar")
    env = {"FARM_HOME": str(tmp_path / "home"), "FARM_STORAGE": "", "FARM_API_TOKENS": ""}
    with ProcessServer(env) as server:
        host = server.url.removeprefix("http://")
        assert push_and_read_back(tmp_path / "image.tar", host) == index
        out = tmp_path / "pulled"
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{host}/x:1", f"oci:{out}:1")
        blobs = sorted(p.name for p in (out / "blobs" / "sha256").iterdir())
        assert len(blobs) == 7  # the index, 2 manifests, 2 configs, 2 layers


def test_skopeo_with_credentials(tmp_path):
    index = two_platform_archive(tmp_path / "image.tar")
    env = {"FARM_HOME": str(tmp_path / "home"), "FARM_STORAGE": "", "FARM_API_TOKENS": "s3cret"}
    with ProcessServer(env) as server:
        host = server.url.removeprefix("http://")
        assert push_and_read_back(tmp_path / "image.tar", host, "creds=farm:s3cret") == index
        denied = skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{host}/x:1", check=False
        )
        assert denied.returncode != 0
        assert b"unauthorized" in denied.stderr.lower() or b"401" in denied.stderr
        wrong = skopeo("inspect", "--raw", "--tls-verify=false", "--creds=farm:wrong",
                       f"docker://{host}/x:1", check=False)  # fmt: skip
        assert wrong.returncode != 0
