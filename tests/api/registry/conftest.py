"""Real HTTP: each test module starts uvicorn on a free 127.0.0.1 port (in a
thread, or as a `farm serve` subprocess) over a fresh store."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.registry.config import RegistryConfig
from buildkit.digest import Digest
from buildkit.image import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from buildkit.store.filesystem import FilesystemStore
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


class ThreadServer:
    """uvicorn serving `app` in a thread, on a socket bound before it starts."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessServer:
    """`farm serve` in a subprocess, with its own environment."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProcessServer:
        cmd = [sys.executable, "-c", "from api.cli import main; main()", "serve",
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"farm serve exited {self.proc.returncode}:\n{out}")
            try:
                httpx.get(self.url + "/v2/", timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("farm serve did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Registry:
    url: str
    store: FilesystemStore
    home: Path

    def client(self, **kwargs) -> httpx.Client:  # type: ignore[no-untyped-def]
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def make_registry(tmp: Path, **config) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    home = tmp / "home"
    store = FilesystemStore(home / "registry")
    settings = Settings(home=home, api_tokens="")
    cfg = RegistryConfig(uploads_dir=home / "uploads", **config)
    app = create_app(settings, store=store, config=cfg)
    with ThreadServer(app) as server:
        yield Registry(server.url, store, home)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    yield from make_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def http(registry: Registry) -> Iterator[httpx.Client]:
    with registry.client() as client:
        yield client


# ---------------------------------------------------------------- content


def layer_tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def descriptor(data: bytes, media_type: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"mediaType": media_type, "digest": Digest.of(data), "size": len(data), **extra}


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = Digest.of(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def image(marker: str, arch: str = "amd64") -> tuple[dict[str, bytes], bytes]:
    """Blobs (by digest) and manifest bytes of a small image."""
    layer = layer_tar_gz({f"{marker}.txt": marker.encode()})
    config = json.dumps(
        {"architecture": arch, "os": "linux",
         "rootfs": {"type": "layers", "diff_ids": [Digest.of(gzip.decompress(layer))]}},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, OCI_CONFIG),
            "layers": [descriptor(layer, OCI_LAYER_GZIP)],
        },
        indent=3,  # not canonical on purpose: stored byte for byte
    ).encode()
    return {Digest.of(layer): layer, Digest.of(config): config}, manifest


def push_image(
    client: httpx.Client, repo: str, ref: str, marker: str = "x", arch: str = "amd64"
) -> tuple[str, bytes]:
    blobs, manifest = image(marker, arch)
    for data in blobs.values():
        push_blob(client, repo, data)
    r = client.put(
        f"/v2/{repo}/manifests/{ref}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], manifest


def codes(response: httpx.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


def two_platform_archive(path: Path) -> bytes:
    """An OCI archive of a linux/amd64 + linux/arm64 image index; its index bytes."""
    from buildkit.image import OCI_INDEX
    from buildkit.oci_layout import write_oci_archive
    from buildkit.store.base import put_bytes

    source = FilesystemStore(path.parent / (path.name + ".store"))
    children = []
    for arch in ("amd64", "arm64"):
        blobs, manifest = image(f"hello-{arch}", arch)
        for data in blobs.values():
            put_bytes(source, data)
        put_bytes(source, manifest, media_type=OCI_MANIFEST)
        children.append(
            descriptor(manifest, OCI_MANIFEST, platform={"architecture": arch, "os": "linux"})
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, indent=2
    ).encode()
    desc = put_bytes(source, index, media_type=OCI_INDEX)
    with open(path, "wb") as f:
        write_oci_archive(source, desc, f, name="docker.io/library/x:1")
    return index
