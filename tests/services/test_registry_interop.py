"""A stock registry (Debian's `docker-registry`: CNCF Distribution 2.8) with
its S3 driver serves what Farm's S3 store wrote to the same bucket, and skopeo
pulls it: the Distribution layout is the contract, not an approximation."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from buildkit.digest import Digest
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageConfig,
    Index,
    Manifest,
)
from buildkit.platforms import Platform
from buildkit.store.base import Store, put_bytes
from buildkit.store.s3 import S3Store
from tests.services.conftest import (
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    free_port,
    stop,
    wait_for_http,
)

pytestmark = [pytest.mark.services, pytest.mark.interop]

PREFIX = "registry-root"
REPO = "team/app"
TAG = "1.0"
PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A small deterministic tar."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True)
class Written:
    index: bytes
    index_digest: Digest
    manifests: tuple[Digest, ...]
    blobs: tuple[Digest, ...]


def write_image(store: Store) -> Written:
    """A two-platform image, as Farm's publisher writes one: blobs, manifests,
    the index, and the tag last."""
    entries = []
    blobs = []
    for platform in PLATFORMS:
        tar = layer_tar({"etc/platform": str(platform).encode(), "hello": b"hello\n"})
        layer = put_bytes(store, gzip.compress(tar, mtime=0), media_type=OCI_LAYER_GZIP)
        config = ImageConfig(
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
            diff_ids=(Digest.of(tar),),
        )
        config_desc = put_bytes(store, config.to_json(), media_type=OCI_CONFIG)
        manifest = Manifest(config=config_desc, layers=(layer,)).to_json()
        desc = store.put_manifest(REPO, manifest, OCI_MANIFEST)
        entries.append(replace(desc, platform=platform))
        blobs += [layer.digest, config_desc.digest]
    index = Index(manifests=tuple(entries)).to_json()
    index_desc = store.put_manifest(REPO, index, OCI_INDEX)
    store.link_manifest(REPO, index_desc, tag=TAG)
    return Written(index, index_desc.digest, tuple(e.digest for e in entries), tuple(blobs))


def registry_config(s3_endpoint: str, bucket: str, port: int) -> str:
    return json.dumps(  # YAML is a superset of JSON
        {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "s3": {
                    "accesskey": S3_ACCESS_KEY,
                    "secretkey": S3_SECRET_KEY,
                    "region": S3_REGION,
                    "regionendpoint": s3_endpoint,
                    "bucket": bucket,
                    "rootdirectory": f"/{PREFIX}",
                    "forcepathstyle": True,
                    "secure": False,
                    "v4auth": True,
                },
                "redirect": {"disable": True},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": "farm-interop-test"},
            "health": {"storagedriver": {"enabled": False}},
        },
        indent=2,
    )


@pytest.fixture
def registry(s3_endpoint: str, bucket: str, tmp_path: Path) -> Iterator[str]:
    """`127.0.0.1:PORT` of a docker-registry serving `bucket`/PREFIX."""
    binary = need_tool("docker-registry")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(registry_config(s3_endpoint, bucket, port))
    log = tmp_path / "registry.log"
    # The registry's AWS SDK refuses a custom CA bundle with its own transport.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return json.load(response)


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [need_tool("skopeo"), "--insecure-policy", *args], capture_output=True, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(
            f"skopeo {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode()}"
        )
    return result


def test_registry_serves_what_farm_wrote(s3, bucket, registry, tmp_path):
    written = write_image(S3Store(bucket, PREFIX, client=s3))

    assert get_json(f"http://{registry}/v2/_catalog") == {"repositories": [REPO]}
    assert get_json(f"http://{registry}/v2/{REPO}/tags/list") == {"name": REPO, "tags": [TAG]}

    ref = f"docker://{registry}/{REPO}:{TAG}"
    raw = skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout
    assert raw == written.index  # byte for byte
    by_digest = f"docker://{registry}/{REPO}@{written.manifests[1]}"
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", by_digest).stdout)
    assert inspected["Architecture"] == "arm64" and inspected["Digest"] == written.manifests[1]

    out = tmp_path / "oci"
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:{TAG}")
    oci_index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in oci_index["manifests"]] == [written.index_digest]
    stored = {f"sha256:{p.name}" for p in (out / "blobs" / "sha256").iterdir()}
    assert stored == {written.index_digest, *written.manifests, *written.blobs}
    assert (out / "blobs" / "sha256" / written.index_digest.hex).read_bytes() == written.index
