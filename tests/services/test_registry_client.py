"""The registry client against a real registry (Debian's `docker-registry`,
CNCF Distribution 2.8, filesystem driver, on a free loopback port), against
the same registry with htpasswd auth, and against small fake endpoints for
what a stock registry cannot be made to do on demand (Bearer tokens, 5xx,
corrupt content). Farm-built images go through `workers.embedded.run_build`."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import re
import shutil
import subprocess
import tarfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from buildkit.digest import Digest
from buildkit.errors import AuthError, DigestMismatch, ManifestUnknown, RegistryError
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)
from buildkit.images import base_record_key, load_reference, read_base_record
from buildkit.platforms import Platform
from buildkit.reference import parse_reference
from buildkit.registry.client import RegistryClient, RegistryConfig
from buildkit.registry.credentials import Credential
from buildkit.registry.pull import pull_image
from buildkit.registry.push import push_image
from buildkit.store.base import Store, put_bytes, read_blob
from buildkit.store.filesystem import FilesystemStore
from tests.services.conftest import free_port, stop, wait_for_http

pytestmark = pytest.mark.services

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
USER, PASSWORD = "farm", "s3cret-pw"


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


# ------------------------------------------------------------ a real registry


@dataclass
class Registry:
    host: str
    log: Path

    def requests(self, method: str, path_prefix: str) -> list[str]:
        """Access-log lines of `method` requests whose path starts with `path_prefix`
        (`... "POST /v2/a/blobs/uploads/?mount=... HTTP/1.1" 201 0 ...`)."""
        pattern = re.compile(
            rf'^.*"{method} {re.escape(path_prefix)}\S* HTTP/[0-9.]+" \d+.*$', re.M
        )
        return pattern.findall(self.log.read_text(errors="replace"))


def bcrypt_htpasswd(user: str, password: str) -> str:
    """An htpasswd line (bcrypt, the only scheme registry:2 accepts), from the C
    library's crypt(3) through Python's `crypt` (3.11; removed in 3.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            pytest.skip("no crypt module to make a bcrypt htpasswd line")
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("the C library's crypt(3) has no bcrypt")
    return f"{user}:{hashed}\n"


@contextlib.contextmanager
def run_registry(directory: Path, *, htpasswd: str = "") -> Iterator[Registry]:
    binary = need_tool("docker-registry")
    directory.mkdir(parents=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "farm-client-test"},
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd:
        (directory / "htpasswd").write_text(htpasswd)
        config["auth"] = {"htpasswd": {"realm": "farm-test", "path": str(directory / "htpasswd")}}
    (directory / "config.yml").write_text(json.dumps(config, indent=2))  # YAML ⊃ JSON
    log = directory / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(directory / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", proc, log)
        yield Registry(f"127.0.0.1:{port}", log)
    finally:
        stop(proc)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with run_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    with run_registry(tmp_path / "auth-registry", htpasswd=bcrypt_htpasswd(USER, PASSWORD)) as reg:
        yield reg


def client_for(**config: Any) -> RegistryClient:
    config.setdefault("backoff", 0.01)
    config.setdefault("retries", 2)
    return RegistryClient(RegistryConfig(**config))


# ------------------------------------------------------------ a synthetic image


def layer_tgz(files: dict[str, bytes]) -> tuple[bytes, Digest]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    diff_id = Digest.of(raw.getvalue())
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


@dataclass
class Image:
    top: Descriptor
    children: tuple[Descriptor, ...]
    blobs: dict[str, bytes] = field(default_factory=dict)


def write_image(store: Store, platforms: tuple[Platform, ...] = (AMD64, ARM64)) -> Image:
    """An index over one small image per platform (a shared layer plus its own)."""
    shared, shared_diff = layer_tgz({"etc/shared": b"same for all\n"})
    blobs: dict[str, bytes] = {}
    children = []
    for plat in platforms:
        own, own_diff = layer_tgz({"etc/arch": f"{plat}\n".encode()})
        config = ImageConfig(plat.architecture, plat.os, diff_ids=(shared_diff, own_diff))
        layers = []
        for data in (shared, own):
            desc = put_bytes(store, data, media_type=OCI_LAYER_GZIP)
            layers.append(Descriptor(OCI_LAYER_GZIP, desc.digest, desc.size))
            blobs[desc.digest] = data
        cfg = put_bytes(store, config.to_json(), media_type=OCI_CONFIG)
        blobs[cfg.digest] = config.to_json()
        manifest = Manifest(Descriptor(OCI_CONFIG, cfg.digest, cfg.size), tuple(layers))
        m = put_bytes(store, manifest.to_json(), media_type=OCI_MANIFEST)
        blobs[m.digest] = manifest.to_json()
        children.append(Descriptor(OCI_MANIFEST, m.digest, m.size, platform=plat))
    index = Index(tuple(children))
    top = put_bytes(store, index.to_json(), media_type=OCI_INDEX)
    blobs[top.digest] = index.to_json()
    return Image(Descriptor(OCI_INDEX, top.digest, top.size), tuple(children), blobs)


@pytest.fixture
def source(tmp_path: Path) -> tuple[FilesystemStore, Image]:
    store = FilesystemStore(tmp_path / "source-store")
    return store, write_image(store)


# ------------------------------------------------------------ against docker-registry


def test_push_then_pull_by_tag_and_digest(registry: Registry, source, tmp_path: Path) -> None:
    store, image = source
    ref = f"{registry.host}/team/app:1"
    with client_for() as client:
        client.ping(registry.host)
        report = push_image(client, store, image.top, image.children, ref)
    assert report.digest == image.top.digest
    assert report.count("uploaded") == 5  # shared layer once, two own layers, two configs

    fresh = FilesystemStore(tmp_path / "fresh")
    with client_for() as client:
        got = pull_image(client, ref, AMD64, fresh)
        assert got.manifest_descriptor.digest == image.children[0].digest
        assert got.config.architecture == "amd64"
        for blob in (got.manifest.config, *got.manifest.layers):
            assert read_blob(fresh, blob.digest) == image.blobs[blob.digest]
        # the manifest and index bytes are kept as they were pushed
        assert read_blob(fresh, image.top.digest) == image.blobs[image.top.digest]
        record = read_base_record(fresh, f"{registry.host}/team/app:1")
        assert record is not None and record["digest"] == image.top.digest
        assert fresh.repositories() == []  # a base, not a repository served at /v2/

        pull_image(client, ref, ARM64, fresh)
        record = read_base_record(fresh, f"{registry.host}/team/app:1")
        assert record["platforms"] == {  # type: ignore[index]
            "linux/amd64": image.children[0].digest,
            "linux/arm64": image.children[1].digest,
        }
        by_digest = pull_image(
            client,
            f"{registry.host}/team/app@{image.top.digest}",
            ARM64,
            FilesystemStore(tmp_path / "d"),
        )
        assert by_digest.manifest_descriptor.digest == image.children[1].digest
        with pytest.raises(
            ManifestUnknown,
            match=r"no image for linux/s390x \(available: linux/amd64, linux/arm64\)",
        ):
            pull_image(client, ref, Platform("linux", "s390x"), fresh)
        with pytest.raises(ManifestUnknown, match="manifest unknown"):
            pull_image(client, f"{registry.host}/team/app:nope", AMD64, fresh)
    # The engine's loader finds it under bases/.
    assert load_reference(fresh, ref, ARM64).config.architecture == "arm64"


def test_cached_base_is_reused_unless_refresh(registry: Registry, source, tmp_path: Path) -> None:
    store, image = source
    ref = f"{registry.host}/team/app:1"
    with client_for() as client:
        push_image(client, store, image.top, image.children, ref)
    fresh = FilesystemStore(tmp_path / "fresh")
    with client_for() as client:
        pull_image(client, ref, AMD64, fresh)
    # Retag upstream to another image: a cached pull does not see it, refresh does.
    other = write_image(store, (AMD64,))
    with client_for() as client:
        push_image(client, store, other.top, other.children, ref)
        before = len(registry.requests("GET", "/v2/team/app/manifests/1"))
        assert (
            pull_image(client, ref, AMD64, fresh).manifest_descriptor.digest
            == image.children[0].digest
        )
        assert len(registry.requests("GET", "/v2/team/app/manifests/1")) == before
        refreshed = pull_image(client, ref, AMD64, fresh, refresh=True)
        assert refreshed.manifest_descriptor.digest == other.children[0].digest
    assert read_base_record(fresh, ref)["digest"] == other.top.digest  # type: ignore[index]


def test_skopeo_reads_what_farm_pushed(registry: Registry, source) -> None:
    skopeo = need_tool("skopeo")
    store, image = source
    ref = f"{registry.host}/team/app:1"
    with client_for() as client:
        push_image(client, store, image.top, image.children, ref)
    raw = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert raw == image.blobs[image.top.digest]
    shown = json.loads(
        subprocess.run(
            [
                skopeo,
                "inspect",
                "--tls-verify=false",
                "--override-arch",
                "arm64",
                f"docker://{ref}",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert shown["Digest"] == image.top.digest  # skopeo shows the digest of what the tag names
    assert shown["Architecture"] == "arm64"
    assert len(shown["Layers"]) == 2


def test_second_push_to_another_repository_mounts(registry: Registry, source) -> None:
    store, image = source
    with client_for() as client:
        push_image(client, store, image.top, image.children, f"{registry.host}/team/one:1")
        report = push_image(client, store, image.top, image.children, f"{registry.host}/team/two:1")
    assert report.count("mounted") == 5 and report.count("uploaded") == 0
    mounts = registry.requests("POST", "/v2/team/two/blobs/uploads/?mount=")
    assert len(mounts) == 5
    assert all('&from=team%2Fone HTTP/1.1" 201 ' in line for line in mounts), mounts
    # No blob data went to team/two: no upload PUT or PATCH there.
    assert registry.requests("PUT", "/v2/team/two/blobs/uploads/") == []
    assert registry.requests("PATCH", "/v2/team/two/blobs/uploads/") == []
    assert len(registry.requests("PUT", "/v2/team/one/blobs/uploads/")) == 5
    # A third push finds every blob already there (HEAD first).
    with client_for() as client:
        again = push_image(client, store, image.top, image.children, f"{registry.host}/team/two:2")
    assert again.count("exists") == 5


def test_pulled_bases_are_mount_sources(registry: Registry, source, tmp_path: Path) -> None:
    store, image = source
    with client_for() as client:
        push_image(client, store, image.top, image.children, f"{registry.host}/base:1")
    fresh = FilesystemStore(tmp_path / "fresh")
    with client_for() as client:
        got = pull_image(client, f"{registry.host}/base:1", AMD64, fresh)
    # A new process: it knows the blobs' location only from the bases/ record.
    with client_for() as client:
        report = push_image(
            client, fresh, got.manifest_descriptor, (), f"{registry.host}/derived:1"
        )
    assert report.count("mounted") == 3


def test_htpasswd_registry(auth_registry: Registry, source, tmp_path: Path) -> None:
    store, image = source
    ref = f"{auth_registry.host}/team/app:1"
    with (
        client_for() as anonymous,
        pytest.raises(AuthError, match="requires a user name and password"),
    ):
        push_image(anonymous, store, image.top, image.children, ref)
    wrong = {auth_registry.host: Credential(USER, "wrong")}
    with client_for(credentials=wrong) as client, pytest.raises(AuthError) as caught:
        push_image(client, store, image.top, image.children, ref)
    assert "authentication failed" in str(caught.value)
    assert auth_registry.host in str(caught.value)
    right = {auth_registry.host: Credential(USER, PASSWORD)}
    with client_for(credentials=right) as client:
        push_image(client, store, image.top, image.children, ref)
        got = pull_image(client, ref, ARM64, FilesystemStore(tmp_path / "fresh"))
    assert got.manifest_descriptor.digest == image.children[1].digest


# ------------------------------------------------------------ fake endpoints


@dataclass
class Fake:
    """A tiny HTTP server on 127.0.0.1: `handle(method, path, headers, body)`
    returns (status, headers, body); every request is recorded."""

    handle: Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    host: str = ""


@contextlib.contextmanager
def serve(fake: Fake) -> Iterator[Fake]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.seen.append((self.command, self.path, headers))
            status, out_headers, out = fake.handle(self.command, self.path, headers, body)
            self.send_response(status)
            for k, v in out_headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)

        do_GET = do_HEAD = do_PUT = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


MANIFEST = Manifest(Descriptor(OCI_CONFIG, Digest.of(b"{}"), 2)).to_json()
MANIFEST_HEADERS = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": Digest.of(MANIFEST)}


def bearer_registry(users: dict[str, str] | None) -> Fake:
    """Answers /v2/* only with `Bearer tok-<n>` issued by its /token endpoint
    (for `users`, with Basic auth; anonymously when None)."""
    issued: list[str] = []

    def handle(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path.startswith("/token"):
            if users is not None:
                want = {
                    "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()
                    for u, p in users.items()
                }
                if headers.get("authorization") not in want:
                    return 401, {}, b'{"details":"bad credentials"}'
            issued.append(f"tok-{len(issued) + 1}")
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"token": issued[-1], "expires_in": 300}).encode(),
            )
        if headers.get("authorization") not in {f"Bearer {t}" for t in issued}:
            realm = f"http://{fake.host}/token"
            challenge = (
                f'Bearer realm="{realm}",service="fake-registry",scope="repository:x/y:pull"'
            )
            return (
                401,
                {"WWW-Authenticate": challenge},
                b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            )
        if path == "/v2/x/y/manifests/1":
            return 200, MANIFEST_HEADERS, MANIFEST
        return 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'

    fake = Fake(handle)
    return fake


def test_bearer_token_with_basic_credentials() -> None:
    with serve(bearer_registry({USER: PASSWORD})) as fake:
        creds = {fake.host: Credential(USER, PASSWORD)}
        with client_for(credentials=creds) as client:
            ref = parse_reference(f"{fake.host}/x/y:1")
            assert client.get_manifest(ref).data == MANIFEST
            assert client.get_manifest(ref).digest == Digest.of(MANIFEST)
            assert client.head_manifest(ref).digest == Digest.of(MANIFEST)
    tokens = [(p, h) for m, p, h in fake.seen if p.startswith("/token")]
    assert len(tokens) == 1  # cached for the scope
    path, headers = tokens[0]
    assert "service=fake-registry" in path and "scope=repository%3Ax%2Fy%3Apull" in path
    assert headers["authorization"].startswith("Basic ")
    registry_calls = [h.get("authorization", "") for m, p, h in fake.seen if p.startswith("/v2/")]
    assert registry_calls == ["", "Bearer tok-1", "Bearer tok-1", "Bearer tok-1"]


def test_bearer_token_anonymous() -> None:
    with serve(bearer_registry(None)) as fake, client_for() as client:
        assert client.get_manifest(parse_reference(f"{fake.host}/x/y:1")).data == MANIFEST
    (token_headers,) = [h for m, p, h in fake.seen if p.startswith("/token")]
    assert "authorization" not in token_headers


def test_bearer_token_refused() -> None:
    with serve(bearer_registry({USER: PASSWORD})) as fake:
        creds = {fake.host: Credential(USER, "wrong")}
        with client_for(credentials=creds) as client, pytest.raises(AuthError) as caught:
            client.get_manifest(parse_reference(f"{fake.host}/x/y:1"))
    assert f"refused user '{USER}' for {fake.host}" in str(caught.value)


def test_5xx_is_retried_with_backoff() -> None:
    calls: list[int] = []

    def handle(method, path, headers, body):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) <= 2:
            return 503, {}, b"busy"
        return 200, MANIFEST_HEADERS, MANIFEST

    slept: list[float] = []
    with serve(Fake(handle)) as fake:
        config = RegistryConfig(retries=3, backoff=0.5)
        with RegistryClient(config, sleep=slept.append) as client:
            assert client.get_manifest(parse_reference(f"{fake.host}/x/y:1")).data == MANIFEST
        assert slept == [0.5, 1.0]
        calls.clear()
        with client_for(retries=1) as client, pytest.raises(RegistryError, match="503"):
            client.get_manifest(parse_reference(f"{fake.host}/x/y:1"))
        assert len(calls) == 2


def test_connection_errors_are_retried_then_reported() -> None:
    slept: list[float] = []
    port = free_port()  # nothing listens there
    config = RegistryConfig(retries=2, backoff=0.01)
    with (
        RegistryClient(config, sleep=slept.append) as client,
        pytest.raises(RegistryError, match="cannot connect") as caught,
    ):
        client.ping(f"127.0.0.1:{port}")
    assert slept == [0.01, 0.02]
    assert caught.value.__cause__ is not None


def test_corrupt_content_is_a_digest_mismatch() -> None:
    good = b"the real layer"
    digest = Digest.of(good)

    def handle(method, path, headers, body):  # type: ignore[no-untyped-def]
        if "/blobs/" in path:
            return 200, {}, b"something else"
        # a manifest that is not the one its digest names
        return 200, {"Content-Type": OCI_MANIFEST}, MANIFEST

    with serve(Fake(handle)) as fake, client_for() as client:
        ref = parse_reference(f"{fake.host}/x/y:1")
        with pytest.raises(DigestMismatch), client.open_blob(ref, digest) as blob:
            blob.read()
        with pytest.raises(DigestMismatch):
            client.get_manifest(parse_reference(f"{fake.host}/x/y@{Digest.of(b'other')}"))


# ------------------------------------------------------------ the engine: build, push, FROM


@pytest.mark.sandbox
def test_build_push_and_from_a_pulled_base(registry: Registry, tmp_path: Path) -> None:
    from tests.engine.conftest import BASE, need_sandbox, settings_for, write_context
    from workers.embedded import LocalBuild, run_build

    need_sandbox()
    from buildkit.events import Recorder
    from buildkit.platforms import parse_platforms

    ref = f"{registry.host}/busybox:1"
    home = tmp_path / "home-1"
    home.mkdir()
    context = write_context(tmp_path / "ctx-1", BASE)
    warned: list[str] = []
    local = run_build(
        LocalBuild(
            context=str(context),
            platforms=parse_platforms(["linux/amd64", "linux/arm64"]),
            tags=(ref, "busybox:local"),
            push=True,
            registry=RegistryConfig(backoff=0.01),
            cwd=context,
        ),
        settings_for(home),
        Recorder(),
        warn=warned.append,
    )
    pushed = local.result.descriptor
    assert pushed.media_type == OCI_INDEX
    built = FilesystemStore(home / "registry")
    assert built.repositories() == ["busybox"]  # the local tag; the remote one is not a repository
    with client_for() as client:
        remote = client.get_manifest(parse_reference(ref))
    assert remote.digest == pushed.digest and remote.data == read_blob(built, pushed.digest)

    # A fresh machine builds FROM the pushed image: it is pulled, remembered under bases/.
    home2 = tmp_path / "home-2"
    home2.mkdir()
    context2 = write_context(tmp_path / "ctx-2", f"FROM {ref}\nRUN echo hi > /hello\n")
    local2 = run_build(
        LocalBuild(
            context=str(context2), tags=("derived:1",), registry=RegistryConfig(), cwd=context2
        ),
        settings_for(home2),
        Recorder(),
        warn=warned.append,
    )
    store2 = FilesystemStore(home2 / "registry")
    assert store2.repositories() == ["derived"]
    assert store2.get_json(base_record_key(ref))["digest"] == pushed.digest  # type: ignore[index]
    (platform_result,) = local2.result.platforms
    base_layers = [lr.digest for lr in local.result.platforms[0].state.layers]
    assert [lr.digest for lr in platform_result.state.layers][: len(base_layers)] == base_layers


def test_tags_of_other_registries_warn_without_push() -> None:
    from workers.embedded import LocalBuild, Output, _registry_outputs, parse_output

    warned: list[str] = []
    outs = _registry_outputs(
        LocalBuild(context=".", tags=("127.0.0.1:5000/a:1", "app:1")), warned.append
    )
    assert outs == (Output("image"),)
    (warning,) = warned
    assert "127.0.0.1:5000/a:1 names another registry" in warning and "--push" in warning
    warned.clear()
    outs = _registry_outputs(
        LocalBuild(context=".", tags=("ghcr.io/o/a:1",), push=True), warned.append
    )
    assert outs == (Output("image", push=True),) and warned == []
    assert parse_output("type=registry,name=ghcr.io/o/a:1") == Output(
        "image", name="ghcr.io/o/a:1", push=True
    )
    assert parse_output("type=image,push=true").push
