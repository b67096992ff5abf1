"""The step cache in a registry, against an in-memory registry (httpx.MockTransport):
export, import, a missing cache, a foreign manifest, corrupt blobs, digest references.
The real registry and real builds: tests/services/test_cache_registry.py."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from buildkit.cache import index
from buildkit.cache.artifact import CACHE_ARTIFACT_TYPE, CacheError
from buildkit.cache.registry import export_cache_to_registry, import_cache_from_registry
from buildkit.digest import Digest
from buildkit.errors import DigestMismatch
from buildkit.image import OCI_CONFIG, OCI_MANIFEST, Descriptor, Manifest
from buildkit.registry.client import RegistryClient, RegistryConfig
from buildkit.store.base import read_blob
from buildkit.store.filesystem import FilesystemStore
from tests.buildkit.cache.test_local import add, key

HOST = "127.0.0.1:5000"
REF = f"{HOST}/cache/app:buildcache"
_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


class FakeRegistry:
    """Just enough of the distribution API: blobs, monolithic uploads, manifests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: set[str] = set()
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.requests.append(f"{method} {path}")
        if method == "POST" and path.endswith("/blobs/uploads/"):
            name = path[len("/v2/") : -len("/blobs/uploads/")]
            upload = uuid.uuid4().hex
            self.uploads.add(upload)
            return httpx.Response(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}"})
        if method == "PUT" and "/blobs/uploads/" in path:
            assert path.rsplit("/", 1)[1] in self.uploads
            digest = request.url.params["digest"]
            assert Digest.of(request.content) == digest
            self.blobs[digest] = request.content
            return httpx.Response(201)
        m = _PATH.match(path)
        assert m, path
        name, ref = m["name"], m["ref"]
        if m["kind"] == "blobs":
            if ref not in self.blobs:
                return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})
            return httpx.Response(200, content=b"" if method == "HEAD" else self.blobs[ref])
        if method == "PUT":
            digest = str(Digest.of(request.content))
            for key in (ref, digest):
                self.manifests[(name, key)] = (request.content, request.headers["content-type"])
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if (name, ref) not in self.manifests:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        data, media_type = self.manifests[(name, ref)]
        return httpx.Response(200, content=data, headers={"Content-Type": media_type})


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def client(fake: FakeRegistry):
    with RegistryClient(RegistryConfig(retries=0), transport=httpx.MockTransport(fake)) as c:
        yield c


def test_export_then_import(tmp_path, fake, client):
    one = FilesystemStore(tmp_path / "one")
    records = [add(one, 1), add(one, 2), add(one, 3, layer=False)]
    pushed = export_cache_to_registry(one, [records[0], key(2), key(3), key(99)], client, REF)
    assert [r.key for r in pushed.records] == [key(1), key(2), key(3)]
    assert pushed.reference == REF
    assert sorted(pushed.blobs.values()) == ["uploaded"] * 3  # two layers and the config
    data, media_type = fake.manifests[("cache/app", "buildcache")]
    manifest = Manifest.from_dict(json.loads(data))
    assert media_type == OCI_MANIFEST
    assert (manifest.artifact_type, manifest.config.media_type) == (CACHE_ARTIFACT_TYPE,) * 2
    assert pushed.manifest is not None and pushed.manifest.digest == Digest.of(data)

    again = export_cache_to_registry(one, records, client, REF)
    assert set(again.blobs.values()) == {"exists"} and again.manifest == pushed.manifest

    two = FilesystemStore(tmp_path / "two")
    got = import_cache_from_registry(two, client, REF, now=5000.0)
    assert got.warning == "" and len(got.records) == 3
    listed = index.list_records(two)
    assert [(r.key, r.layer, r.created) for r in listed] == [
        (r.key, r.layer, r.created) for r in records
    ]
    assert all(r.last_used == 5000.0 for r in listed)
    for r in records[:2]:
        assert read_blob(two, r.layer.digest) == read_blob(one, r.layer.digest)
    # by digest, too; the records are there already: nothing new is written
    by_digest = f"{HOST}/cache/app@{pushed.manifest.digest}"
    assert import_cache_from_registry(two, client, by_digest, now=6000.0).records == ()


def test_missing_cache_is_a_warning(tmp_path, client):
    store = FilesystemStore(tmp_path / "s")
    got = import_cache_from_registry(store, client, f"{HOST}/cache/none", now=1.0)
    assert got.manifest is None and got.records == ()
    assert got.warning == f"no cache at {HOST}/cache/none:latest yet"


def test_an_image_is_not_a_cache(tmp_path, fake, client):
    config = b"{}"
    fake.blobs[str(Digest.of(config))] = config
    image = Manifest(Descriptor(OCI_CONFIG, Digest.of(config), len(config))).to_json()
    fake.manifests[("cache/app", "buildcache")] = (image, OCI_MANIFEST)
    with pytest.raises(CacheError, match="not a Farm cache manifest"):
        import_cache_from_registry(FilesystemStore(tmp_path / "s"), client, REF, now=1.0)


def test_a_corrupt_blob_is_rejected_and_nothing_is_recorded(tmp_path, fake, client):
    one = FilesystemStore(tmp_path / "one")
    records = [add(one, 1), add(one, 2)]
    export_cache_to_registry(one, records, client, REF)
    bad = records[1].layer.digest
    fake.blobs[bad] = b"not the layer"
    two = FilesystemStore(tmp_path / "two")
    with pytest.raises(DigestMismatch, match=bad):
        import_cache_from_registry(two, client, REF, now=1.0)
    assert index.list_records(two) == [] and not two.has_blob(bad)


def test_records_whose_blob_is_gone_are_not_pushed(tmp_path, client):
    one = FilesystemStore(tmp_path / "one")
    records = [add(one, 1), add(one, 2)]
    one.delete_blob(records[1].layer.digest)
    pushed = export_cache_to_registry(one, [r.key for r in records], client, REF)
    assert [r.key for r in pushed.records] == [key(1)]


def test_export_to_a_digest_must_be_that_digest(tmp_path, client):
    one = FilesystemStore(tmp_path / "one")
    with pytest.raises(CacheError, match="pins"):
        export_cache_to_registry(one, [add(one, 1)], client, f"{HOST}/cache/app@{key(7)}")
