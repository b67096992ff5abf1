"""--cache-to / --cache-from type=registry against a real registry (Debian's
`docker-registry`, filesystem storage, a free loopback port): a second
machine (FARM_HOME) reuses the first's steps through the registry; skopeo
reads the cache artifact; a missing cache is a warning; corrupt blobs and
lying manifests are rejected before any record is written."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildkit.cache import index
from buildkit.cache.artifact import CACHE_ARTIFACT_TYPE, build_manifest
from buildkit.cache.index import CachedLayer
from buildkit.cache.options import parse_cache_option
from buildkit.cache.registry import export_cache_to_registry, import_cache_from_registry
from buildkit.digest import Digest
from buildkit.errors import DigestMismatch
from buildkit.events import Recorder
from buildkit.image import OCI_LAYER_GZIP, OCI_MANIFEST, parse_manifest
from buildkit.reference import parse_reference
from buildkit.registry.client import RegistryConfig
from buildkit.registry.credentials import Credential
from buildkit.store.base import put_bytes
from buildkit.store.filesystem import FilesystemStore
from tests.engine.test_cache_export import DOCKERFILE
from tests.services.test_registry_client import (
    PASSWORD,
    USER,
    Registry,
    bcrypt_htpasswd,
    client_for,
    need_tool,
    run_registry,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

STEPS = ("RUN", "COPY", "ADD")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with run_registry(tmp_path / "registry") as reg:
        yield reg


def _build(home: Path, ctx: Path, **options) -> tuple[Recorder, str, list[str]]:
    from tests.engine.conftest import settings_for
    from workers.embedded import LocalBuild, run_build

    recorder, warnings = Recorder(), []
    local = run_build(
        LocalBuild(context=str(ctx), **options), settings_for(home), recorder, warn=warnings.append
    )
    return recorder, local.result.descriptor.digest, warnings


def _steps(recorder: Recorder, kind: str) -> list[str]:
    return [e.name for e in recorder.of_kind(kind) if e.name.startswith(STEPS)]


def _context(tmp_path: Path) -> Path:
    from tests.engine.conftest import need_sandbox, write_context

    need_sandbox()
    return write_context(tmp_path / "ctx", DOCKERFILE, {"app.txt": "hello\n"})


# ------------------------------------------------------------ builds


@pytest.mark.sandbox
def test_second_home_reuses_the_registry_cache(registry: Registry, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    ref = f"{registry.host}/cache/app:buildcache"
    first, digest1, _ = _build(
        tmp_path / "a", ctx, cache_to=(parse_cache_option(f"type=registry,ref={ref},mode=max"),)
    )
    assert len(_steps(first, "step.done")) == 6
    assert registry.requests("PUT", "/v2/cache/app/manifests/buildcache")

    second, digest2, warnings = _build(
        tmp_path / "b", ctx, cache_from=(parse_cache_option(f"type=registry,ref={ref}"),)
    )
    assert _steps(second, "step.done") == [] and len(_steps(second, "step.cached")) == 6
    assert digest1 == digest2
    assert not [w for w in warnings if "--cache-from" in w]
    assert registry.requests("GET", "/v2/cache/app/blobs/sha256:")

    skopeo = need_tool("skopeo")
    shown = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    manifest = json.loads(shown)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == CACHE_ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == CACHE_ARTIFACT_TYPE
    assert len(manifest["layers"]) == 6  # mode=max: every filesystem step's layer
    by_digest = f"{registry.host}/cache/app@{Digest.of(shown)}"
    third, digest3, _ = _build(
        tmp_path / "c", ctx, cache_from=(parse_cache_option(by_digest, flag="--cache-from"),)
    )
    assert _steps(third, "step.done") == [] and digest3 == digest1


@pytest.mark.sandbox
def test_a_missing_cache_ref_is_only_a_warning(registry: Registry, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    ref = f"{registry.host}/cache/none:buildcache"
    built, _, warnings = _build(tmp_path / "h", ctx, cache_from=(parse_cache_option(ref),))
    assert len(_steps(built, "step.done")) == 6
    assert f"WARNING: --cache-from {ref}: no cache at {ref} yet" in warnings


@pytest.mark.sandbox
def test_credentials_of_the_build_are_used(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    with run_registry(tmp_path / "auth", htpasswd=bcrypt_htpasswd(USER, PASSWORD)) as reg:
        ref = f"{reg.host}/cache/app:buildcache"
        config = RegistryConfig(credentials={reg.host: Credential(USER, PASSWORD)})
        _build(
            tmp_path / "a", ctx, registry=config,
            cache_to=(parse_cache_option(f"type=registry,ref={ref},mode=max"),),
        )  # fmt: skip
        second, _, _ = _build(
            tmp_path / "b", ctx, registry=config, cache_from=(parse_cache_option(ref),)
        )
    assert _steps(second, "step.done") == []


# ------------------------------------------------------------ damaged caches


def _records(store: FilesystemStore) -> list[index.CacheRecord]:
    found = []
    for n in (1, 2):
        blob = put_bytes(store, f"layer {n}\n".encode() * 500, media_type=OCI_LAYER_GZIP)
        layer = CachedLayer(
            blob.digest, Digest(f"sha256:{n + 500:064x}"), blob.size, OCI_LAYER_GZIP
        )
        found.append(index.record(store, f"sha256:{n:064x}", layer, now=1000.0))
    return found


def _blob_file(registry: Registry, digest: str) -> Path:
    hex_ = Digest(digest).hex
    root = registry.log.parent / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return root / hex_[:2] / hex_ / "data"


def test_a_corrupted_blob_is_rejected_and_nothing_is_recorded(
    registry: Registry, tmp_path: Path
) -> None:
    one = FilesystemStore(tmp_path / "one")
    records = _records(one)
    ref = f"{registry.host}/cache/app:buildcache"
    with client_for() as client:
        export_cache_to_registry(one, records, client, ref)
    bad = records[1].layer.digest
    path = _blob_file(registry, bad)
    path.write_bytes(b"X" * len(path.read_bytes()))  # same size, other content
    two = FilesystemStore(tmp_path / "two")
    with client_for() as client, pytest.raises(DigestMismatch, match=bad):
        import_cache_from_registry(two, client, ref, now=2000.0)
    assert index.list_records(two) == []
    assert not two.has_blob(bad)


def test_a_manifest_naming_a_wrong_blob_is_rejected(registry: Registry, tmp_path: Path) -> None:
    """The manifest and its record say the layer has another size than the
    registry's blob: the download is refused, no record written."""
    one = FilesystemStore(tmp_path / "one")
    records = _records(one)
    liar = records[1].layer
    wrong = dataclasses.replace(records[1], layer=dataclasses.replace(liar, size=liar.size + 7))
    built = build_manifest([records[0], wrong])
    ref = parse_reference(f"{registry.host}/cache/app:lies")
    with client_for() as client:
        for layer in built.layers:
            real = dataclasses.replace(layer, size=one.blob_size(layer.digest))
            client.push_blob(ref, real, lambda d=layer.digest: one.open_blob(d))
        client.push_blob(ref, built.config, lambda: io.BytesIO(built.config_data))
        client.put_manifest(ref, built.data, OCI_MANIFEST)
        assert parse_manifest(client.get_manifest(ref).data).layers[1].size == liar.size + 7
        two = FilesystemStore(tmp_path / "two")
        with pytest.raises(DigestMismatch, match=rf"{liar.digest}.*expected {liar.size + 7}"):
            import_cache_from_registry(two, client, ref, now=2000.0)
    assert index.list_records(two) == []
    assert not two.has_blob(liar.digest)
