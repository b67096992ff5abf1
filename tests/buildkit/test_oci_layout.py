"""OCI archives and layouts as BuildKit writes them, read back by us and by
skopeo and umoci."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildkit.errors import BlobUnknown
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
    RuntimeConfig,
)
from buildkit.layers import tar_directory
from buildkit.oci_layout import collect_blobs, ref_name, write_oci_archive, write_oci_layout
from buildkit.platforms import Platform
from buildkit.store.base import put_bytes
from buildkit.store.filesystem import FilesystemStore

NAME = "docker.io/library/hello:1.0"
AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")


def build_image(store: FilesystemStore, tmp: Path, platform: Platform) -> Descriptor:
    """A one-layer image whose /hello names its platform; its manifest descriptor."""
    root = tmp / f"rootfs-{platform.architecture}"
    root.mkdir()
    (root / "hello").write_text(f"hello from {platform}\n")
    blob = io.BytesIO()
    layer = tar_directory(root, blob, source_date_epoch=0)
    blob.seek(0)
    store.put_blob(blob, layer.digest, media_type=layer.media_type)
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        created="1970-01-01T00:00:00Z",
        config=RuntimeConfig(cmd=("/hello",)),
        diff_ids=(layer.diff_id,),
        history=(History(created="1970-01-01T00:00:00Z", created_by="COPY hello /"),),
    )
    config_desc = put_bytes(store, config.to_json(), media_type=OCI_CONFIG)
    manifest = Manifest(config=config_desc, layers=(layer.descriptor(),)).to_json()
    desc = store.put_manifest("hello", manifest, OCI_MANIFEST)
    return Descriptor(OCI_MANIFEST, desc.digest, desc.size, platform=platform)


@pytest.fixture
def store(tmp_path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "registry")


@pytest.fixture
def multi(store, tmp_path) -> tuple[Descriptor, dict[str, Descriptor]]:
    per = {p.architecture: build_image(store, tmp_path, p) for p in (AMD64, ARM64)}
    index = Index(manifests=tuple(per.values())).to_json()
    return store.put_manifest("hello", index, OCI_INDEX), per


def archive(store, target, path: Path, **kwargs) -> Descriptor:
    with open(path, "wb") as out:
        return write_oci_archive(store, target, out, **kwargs)


def test_archive_layout_and_index_json(store, multi, tmp_path):
    target, per = multi
    out = tmp_path / "out.tar"
    entry = archive(store, target, out, name=NAME)
    with tarfile.open(out) as tf:
        ms = tf.getmembers()
        contents = {m.name: tf.extractfile(m).read() for m in ms if m.isfile()}
    names = [m.name for m in ms]
    assert names[:3] == ["oci-layout", "blobs", "blobs/sha256"] and names[-1] == "index.json"
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0) for m in ms)
    assert json.loads(contents["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(contents["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    [desc] = index["manifests"]
    assert desc["digest"] == target.digest and desc["mediaType"] == OCI_INDEX
    assert desc["annotations"] == {
        "io.containerd.image.name": NAME,
        "org.opencontainers.image.ref.name": "1.0",
    }
    assert entry.annotations == desc["annotations"]
    blobs = {
        n.removeprefix("blobs/sha256/"): b for n, b in contents.items() if n.startswith("blobs/")
    }
    assert all(hashlib.sha256(b).hexdigest() == h for h, b in blobs.items())
    # index + 2 x (manifest, config, layer)
    assert len(blobs) == 7 and set(blobs) == {d.hex for d in collect_blobs(store, target)}
    assert {per["amd64"].digest.hex, per["arm64"].digest.hex} <= set(blobs)


def test_archive_is_deterministic(store, multi, tmp_path):
    target, _ = multi
    archive(store, target, tmp_path / "a.tar", name=NAME)
    archive(store, target, tmp_path / "b.tar", name=NAME)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_single_platform_points_at_the_manifest(store, tmp_path):
    manifest = build_image(store, tmp_path, AMD64)
    entry = archive(store, manifest, tmp_path / "one.tar", name="app")
    assert entry.media_type == OCI_MANIFEST and entry.digest == manifest.digest
    assert entry.annotations["org.opencontainers.image.ref.name"] == "latest"


def test_missing_blob_is_reported(store, multi, tmp_path):
    target, per = multi
    store.blob_path(per["arm64"].digest).unlink()
    with pytest.raises(BlobUnknown):
        archive(store, target, tmp_path / "x.tar")


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("docker.io/library/app:1.0", "1.0"),
        ("app", "latest"),
        ("localhost:5000/team/app", "latest"),
        ("localhost:5000/team/app:v2", "v2"),
        ("app@sha256:" + "a" * 64, ""),
        ("app:3@sha256:" + "a" * 64, "3"),
    ],
)
def test_ref_name(name, tag):
    assert ref_name(name) == tag


def test_layout_directory(store, multi, tmp_path):
    target, _ = multi
    dest = tmp_path / "layout"
    write_oci_layout(store, target, dest, name=NAME)
    write_oci_layout(store, target, dest, name=NAME)  # again: idempotent
    assert sorted(p.name for p in dest.iterdir()) == ["blobs", "index.json", "oci-layout"]
    assert len(list((dest / "blobs" / "sha256").iterdir())) == 7


# ------------------------------------------------------------ third-party readers


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (infra/setup.sh, or apt-get install -y {tool})")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(argv, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


@pytest.mark.interop
def test_skopeo_inspect_raw_reads_our_archive(store, multi, tmp_path):
    skopeo = need("skopeo")
    target, _ = multi
    out = tmp_path / "out.tar"
    archive(store, target, out, name=NAME)
    raw = run(skopeo, "inspect", "--raw", f"oci-archive:{out}").stdout
    with store.open_blob(target.digest) as f:
        assert raw == f.read()


@pytest.mark.interop
def test_skopeo_copy_override_arch_picks_arm64(store, multi, tmp_path):
    skopeo = need("skopeo")
    target, per = multi
    out = tmp_path / "out.tar"
    archive(store, target, out, name=NAME)
    dest = tmp_path / "copied"
    run(skopeo, "--override-arch", "arm64", "copy", f"oci-archive:{out}", f"oci:{dest}:picked")
    [entry] = json.loads((dest / "index.json").read_text())["manifests"]
    assert entry["digest"] == per["arm64"].digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "picked"


@pytest.mark.interop
def test_umoci_unpacks_our_archive(store, tmp_path):
    umoci = need("umoci")
    manifest = build_image(store, tmp_path, AMD64)
    out = tmp_path / "out.tar"
    archive(store, manifest, out, name="hello:1.0")
    layout = tmp_path / "layout"
    with tarfile.open(out) as tf:
        tf.extractall(layout, filter="data")
    bundle = tmp_path / "bundle"
    run(umoci, "unpack", "--rootless", "--image", f"{layout}:1.0", str(bundle))
    assert (bundle / "rootfs" / "hello").read_text() == "hello from linux/amd64\n"
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/hello"]


@pytest.fixture
def registry2(store):
    """A stock registry:2 (docker-registry) serving our store's directory."""
    binary = need("docker-registry")
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store.root.mkdir(parents=True, exist_ok=True)
    config = store.root.parent / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {store.root}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{base}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.interop
def test_stock_registry_serves_what_we_wrote(store, multi, registry2, tmp_path):
    import urllib.request

    skopeo = need("skopeo")
    target, per = multi
    store.link_manifest("hello", target, tag="1.0")

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"http://{registry2}{path}", timeout=5) as r:
            return json.load(r)

    assert get("/v2/_catalog") == {"repositories": ["hello"]}
    assert get("/v2/hello/tags/list") == {"name": "hello", "tags": ["1.0"]}
    ref = f"docker://{registry2}/hello:1.0"
    raw = run(skopeo, "inspect", "--tls-verify=false", "--raw", ref).stdout
    with store.open_blob(target.digest) as f:
        assert raw == f.read()
    dest = tmp_path / "pulled"
    run(skopeo, "--override-arch", "arm64", "copy", "--src-tls-verify=false", ref, f"oci:{dest}:x")
    [entry] = json.loads((dest / "index.json").read_text())["manifests"]
    assert entry["digest"] == per["arm64"].digest
