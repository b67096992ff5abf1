"""The filesystem store: the exact CNCF Distribution layout, atomic writes,
concurrent writers, and Farm's JSON records."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from buildkit.digest import Digest
from buildkit.errors import BlobUnknown, DigestMismatch, ManifestUnknown, ReferenceFormatError
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Index,
    Manifest,
    ManifestInvalid,
    descriptor_for,
)
from buildkit.store.base import NameUnknown, Store, put_bytes, read_blob
from buildkit.store.filesystem import FilesystemStore
from tests.buildkit.store_contract import FilesystemHarness, StoreContract


@pytest.fixture
def store(tmp_path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "registry")


def v2(store: FilesystemStore) -> Path:
    return store.root / "docker" / "registry" / "v2"


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def leftovers(store: FilesystemStore) -> list[str]:
    return files(store.tmp) if store.tmp.exists() else []


def manifest_bytes(store: Store, marker: str = "x") -> bytes:
    config = put_bytes(store, f'{{"marker":"{marker}"}}'.encode(), media_type=OCI_CONFIG)
    return Manifest(config=config).to_json()


def test_is_a_store(store):
    assert isinstance(store, Store)


def test_blob_path_and_descriptor(store):
    desc = store.put_blob(io.BytesIO(b"hello"), media_type="text/plain")
    digest = Digest.of(b"hello")
    assert (desc.digest, desc.size, desc.media_type) == (digest, 5, "text/plain")
    path = v2(store) / "blobs" / "sha256" / digest.hex[:2] / digest.hex / "data"
    assert path.read_bytes() == b"hello"
    assert files(v2(store)) == [f"blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"]
    assert store.has_blob(digest) and store.blob_size(digest) == 5
    assert read_blob(store, digest) == b"hello"
    assert leftovers(store) == []


def test_put_blob_with_expected_digest_is_idempotent(store):
    digest = Digest.of(b"data")
    assert store.put_blob(io.BytesIO(b"data"), digest).digest == digest
    assert store.put_blob(io.BytesIO(b"data"), digest).digest == digest
    assert store.put_blob(io.BytesIO(b"data")).digest == digest
    assert len(files(v2(store))) == 1 and leftovers(store) == []


def test_digest_mismatch_leaves_nothing(store):
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestMismatch):
        store.put_blob(io.BytesIO(b"data" * 100_000), wrong)
    assert not store.has_blob(wrong) and not store.has_blob(Digest.of(b"data" * 100_000))
    assert not (v2(store) / "blobs").exists()
    assert leftovers(store) == []


def test_interrupted_write_leaves_nothing(store):
    class Broken(io.RawIOBase):
        def read(self, n=-1):
            raise OSError("connection reset")

    with pytest.raises(OSError, match="reset"):
        store.put_blob(Broken())
    assert leftovers(store) == [] and not (v2(store) / "blobs").exists()


def test_missing_blob(store):
    with pytest.raises(BlobUnknown):
        store.open_blob(Digest.of(b"nope"))
    with pytest.raises(BlobUnknown):
        store.blob_size(Digest.of(b"nope"))
    with pytest.raises(BlobUnknown):
        store.link_blob("app", Digest.of(b"nope"))
    assert not (v2(store) / "repositories").exists()


def test_layer_link_exact(store):
    desc = put_bytes(store, b"layer")
    store.link_blob("team/app", desc.digest)
    link = v2(store) / "repositories/team/app/_layers/sha256" / desc.digest.hex / "link"
    assert link.read_bytes() == f"sha256:{desc.digest.hex}".encode()  # no newline
    assert store.blob_linked("team/app", desc.digest)
    assert not store.blob_linked("other", desc.digest)


def test_manifest_and_tag_links_exact(store):
    data = manifest_bytes(store)
    desc = store.put_manifest("app", data, OCI_MANIFEST)
    store.link_manifest("app", desc, tag="1.0")
    h = desc.digest.hex
    repo = v2(store) / "repositories" / "app" / "_manifests"
    assert files(repo) == [
        f"revisions/sha256/{h}/link",
        "tags/1.0/current/link",
        f"tags/1.0/index/sha256/{h}/link",
    ]
    for name in files(repo):
        assert (repo / name).read_bytes() == b"sha256:" + h.encode()
    assert read_blob(store, desc.digest) == data  # byte for byte


def test_tag_index_link_written_before_current(store, monkeypatch):
    desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
    order: list[str] = []
    real = os.replace

    def spy(src, dst):
        order.append(Path(dst).relative_to(v2(store)).as_posix())
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    store.link_manifest("app", desc, tag="v1")
    assert order[-2:] == [
        f"repositories/app/_manifests/tags/v1/index/sha256/{desc.digest.hex}/link",
        "repositories/app/_manifests/tags/v1/current/link",
    ]


def test_link_manifest_needs_the_blob(store):
    ghost = descriptor_for(b"{}", OCI_MANIFEST)
    with pytest.raises(ManifestUnknown):
        store.link_manifest("app", ghost, tag="x")
    assert not (v2(store) / "repositories").exists()


def test_resolve_tags_repositories_delete(store):
    m1 = store.put_manifest("team/app", manifest_bytes(store, "1"), OCI_MANIFEST)
    m2 = store.put_manifest("team/app", manifest_bytes(store, "2"), OCI_MANIFEST)
    index_data = Index(manifests=(m1, m2)).to_json()
    idx = store.put_manifest("team/app", index_data, OCI_INDEX)
    store.link_manifest("team/app", idx, tag="latest")
    store.link_manifest("team/app", m1, tag="one")
    store.link_manifest("base", m2, tag="1")
    assert store.resolve("team/app", "latest") == idx
    assert store.resolve("team/app", "latest").media_type == OCI_INDEX
    assert store.resolve("team/app", str(m1.digest)) == m1
    assert store.tags("team/app") == ["latest", "one"]
    assert store.repositories() == ["base", "team/app"]
    store.delete_tag("team/app", "one")
    assert store.tags("team/app") == ["latest"]
    assert store.resolve("team/app", str(m1.digest)) == m1  # the revision stays
    with pytest.raises(ManifestUnknown):
        store.resolve("team/app", "one")
    with pytest.raises(ManifestUnknown):
        store.delete_tag("team/app", "one")
    with pytest.raises(ManifestUnknown):
        store.resolve("base", str(m1.digest))  # stored, but not a revision of base
    with pytest.raises(NameUnknown):
        store.resolve("nobody", "latest")
    with pytest.raises(NameUnknown):
        store.tags("nobody")


@pytest.mark.parametrize(
    "name",
    ["App", "-app", "app-", "a//b", "/a", "a/", "a..b", "a___b", "_a", "a:b", "a" * 256, ""],
)
def test_invalid_repository_names(store, name):
    with pytest.raises(ReferenceFormatError):
        store.tags(name)


@pytest.mark.parametrize("name", ["a", "a.b", "a_b", "a__b", "a---b", "x/y/z9", "127.0.0.1"])
def test_valid_repository_names(store, name):
    desc = put_bytes(store, b"x")
    store.link_blob(name, desc.digest)
    assert store.blob_linked(name, desc.digest)


@pytest.mark.parametrize("tag", [".x", "-x", "", "a/b", "a:b", "x" * 129, "ü"])
def test_invalid_tags(store, tag):
    desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
    with pytest.raises(ReferenceFormatError):
        store.link_manifest("app", desc, tag=tag)
    with pytest.raises(ReferenceFormatError):
        store.resolve("app", tag)


def test_concurrent_writers_leave_a_consistent_store(store):
    blob = os.urandom(1 << 20)
    manifests = [
        store.put_manifest("app", manifest_bytes(store, str(i)), OCI_MANIFEST) for i in range(8)
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def write_blob():
        start.wait()
        try:
            for _ in range(5):
                store.put_blob(io.BytesIO(blob))
        except BaseException as exc:
            errors.append(exc)

    def move_tag(desc):
        start.wait()
        try:
            for _ in range(5):
                store.link_manifest("app", desc, tag="latest")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write_blob) for _ in range(8)]
    threads += [threading.Thread(target=move_tag, args=(d,)) for d in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_blob(store, Digest.of(blob)) == blob
    assert store.resolve("app", "latest") in manifests
    index_dir = v2(store) / "repositories/app/_manifests/tags/latest/index/sha256"
    assert sorted(p.name for p in index_dir.iterdir()) == sorted(d.digest.hex for d in manifests)
    assert leftovers(store) == []


def test_json_records(store):
    assert store.get_json("builds/b1") is None
    store.put_json("builds/b1", {"status": "done", "n": 1})
    store.put_json("builds/b2.v1", {"status": "queued"})
    store.put_json("cache/x", [1])
    assert store.get_json("builds/b1") == {"status": "done", "n": 1}
    assert (store.root / "farm" / "builds" / "b1.json").read_bytes() == b'{"n":1,"status":"done"}'
    assert store.list_json("builds") == ["builds/b1", "builds/b2.v1"]
    assert store.list_json("nothing") == []
    assert store.delete_json("builds/b1") and not store.delete_json("builds/b1")
    assert store.list_json("builds") == ["builds/b2.v1"]
    assert leftovers(store) == []
    for bad in ["../x", "/abs", "a//b", ".tmp/x", ""]:
        with pytest.raises(ValueError):
            store.put_json(bad, {})


def test_put_manifest_links_config_and_layers(store):
    config = put_bytes(store, b'{"a":1}', media_type=OCI_CONFIG)
    layer = put_bytes(store, b"layer", media_type="application/vnd.oci.image.layer.v1.tar")
    desc = store.put_manifest(
        "app", Manifest(config=config, layers=(layer,)).to_json(), OCI_MANIFEST
    )
    links = v2(store) / "repositories" / "app" / "_layers" / "sha256"
    assert sorted(p.name for p in links.iterdir()) == sorted([config.digest.hex, layer.digest.hex])
    assert store.blob_linked("app", layer.digest) and store.resolve("app", str(desc.digest)) == desc


def test_put_manifest_refuses_dangling_references(store):
    config = put_bytes(store, b"{}", media_type=OCI_CONFIG)
    ghost = descriptor_for(b"never stored", "application/vnd.oci.image.layer.v1.tar")
    data = Manifest(config=config, layers=(ghost,)).to_json()
    with pytest.raises(BlobUnknown):
        store.put_manifest("app", data, OCI_MANIFEST)
    with pytest.raises(NameUnknown):
        store.resolve("app", str(Digest.of(data)))
    other = store.put_manifest("other", manifest_bytes(store), OCI_MANIFEST)
    index = Index(manifests=(other,)).to_json()
    with pytest.raises(ManifestUnknown):  # a revision of "other", not of "app"
        store.put_manifest("app", index, OCI_INDEX)
    assert store.repositories() == ["other"]


def test_put_manifest_refuses_invalid_json_and_media_type_mismatch(store):
    with pytest.raises(ManifestInvalid):
        store.put_manifest("app", b"{not json", OCI_MANIFEST)
    with pytest.raises(ManifestInvalid, match="declares"):
        store.put_manifest("app", manifest_bytes(store), OCI_INDEX)
    assert store.repositories() == []


# ------------------------------------------------------------ for the garbage collector


def test_list_blobs_mtime_and_delete(store):
    assert store.list_blobs() == []
    a = put_bytes(store, b"a")
    b = put_bytes(store, b"b")
    assert store.list_blobs() == sorted([a.digest, b.digest])
    os.utime(store.blob_path(a.digest), (1000, 1000))
    assert store.blob_mtime(a.digest) == 1000
    assert store.delete_blob(a.digest) is True
    assert store.delete_blob(a.digest) is False
    assert not store.has_blob(a.digest)
    assert not store.blob_path(a.digest).parent.exists()
    assert store.list_blobs() == [b.digest]
    with pytest.raises(BlobUnknown):
        store.blob_mtime(a.digest)
    put_bytes(store, b"a")  # written again after a delete
    assert store.list_blobs() == sorted([a.digest, b.digest])
    assert leftovers(store) == []


def test_revisions_and_linked_blobs(store):
    data = manifest_bytes(store)
    desc = store.put_manifest("team/app", data, OCI_MANIFEST)
    config = put_bytes(store, b'{"marker":"x"}', media_type=OCI_CONFIG)  # manifest_bytes' config
    assert store.revisions("team/app") == [desc.digest]
    assert store.linked_blobs("team/app") == [config.digest]
    store.link_manifest("team/app", desc, "1")
    store.delete_tag("team/app", "1")
    assert store.revisions("team/app") == [desc.digest]  # a revision outlives its tag
    with pytest.raises(NameUnknown):
        store.revisions("nobody")
    with pytest.raises(NameUnknown):
        store.linked_blobs("nobody")


# ------------------------------------------------------------ for the registry API's DELETE


def test_delete_manifest_removes_the_revision_and_its_tags(store):
    data = manifest_bytes(store)
    desc = store.put_manifest("app", data, OCI_MANIFEST)
    other = store.put_manifest("app", manifest_bytes(store, "y"), OCI_MANIFEST)
    store.link_manifest("app", desc, "1")
    store.link_manifest("app", desc, "latest")
    store.link_manifest("app", other, "2")
    assert store.delete_manifest("app", desc.digest) == ["1", "latest"]
    assert store.tags("app") == ["2"]
    assert store.revisions("app") == [other.digest]
    for ref in (desc.digest, "1", "latest"):
        with pytest.raises(ManifestUnknown):
            store.resolve("app", ref)
    assert store.has_blob(desc.digest)  # the blob is the garbage collector's
    with pytest.raises(ManifestUnknown):
        store.delete_manifest("app", desc.digest)
    with pytest.raises(NameUnknown):
        store.delete_manifest("nobody", desc.digest)
    assert leftovers(store) == []


def test_unlink_blob_removes_only_the_repository_link(store):
    blob = put_bytes(store, b"layer")
    store.link_blob("a", blob.digest)
    store.link_blob("b", blob.digest)
    assert store.unlink_blob("a", blob.digest) is True
    assert store.unlink_blob("a", blob.digest) is False
    assert not store.blob_linked("a", blob.digest)
    assert store.blob_linked("b", blob.digest)
    assert store.has_blob(blob.digest)
    assert not (v2(store) / "repositories/a/_layers/sha256" / blob.digest.hex).exists()


# ------------------------------------------------------------ the contract every driver keeps


class TestFilesystemContract(StoreContract):
    @pytest.fixture
    def harness(self, tmp_path) -> FilesystemHarness:
        return FilesystemHarness(tmp_path / "registry")
