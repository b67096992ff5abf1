"""The filesystem store: the contract every driver keeps (`store_contract.py`),
plus what only a directory has: paths on disk, directories made and removed,
atomic renames from `<root>/farm/.tmp/`, fsync, mtimes."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from buildkit.digest import Digest
from buildkit.errors import BlobUnknown, ManifestUnknown, StorageError
from buildkit.image import OCI_MANIFEST, descriptor_for
from buildkit.store.base import put_bytes
from buildkit.store.filesystem import FilesystemStore
from tests.buildkit.store_contract import FilesystemHarness, StoreContract, manifest_bytes


class TestFilesystemContract(StoreContract):
    @pytest.fixture
    def harness(self, tmp_path) -> FilesystemHarness:
        return FilesystemHarness(tmp_path / "registry")


@pytest.fixture
def store(tmp_path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "registry")


def v2(store: FilesystemStore) -> Path:
    return store.root / "docker" / "registry" / "v2"


def test_blob_path(store):
    digest = put_bytes(store, b"hello").digest
    path = v2(store) / "blobs" / "sha256" / digest.hex[:2] / digest.hex / "data"
    assert store.blob_path(digest) == path
    assert path.read_bytes() == b"hello"


def test_refused_links_make_no_directories(store):
    with pytest.raises(BlobUnknown):
        store.link_blob("app", Digest.of(b"nope"))
    with pytest.raises(ManifestUnknown):
        store.link_manifest("app", descriptor_for(b"{}", OCI_MANIFEST), tag="x")
    assert not (v2(store) / "repositories").exists()


def test_every_file_is_fsynced_then_renamed_from_tmp(store, monkeypatch):
    renames: list[tuple[Path, Path]] = []
    synced: set[int] = set()
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    def fsync(fd):
        synced.add(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
    store.link_manifest("app", desc, tag="v1")
    store.put_json("builds/b1", {"ok": True})
    # config, its _layers link, manifest, revision, tag index/ and current/, the record
    # (link_manifest finds the revision and the _layers link as they are: not rewritten)
    assert len(renames) == 7
    assert all(src.parent == store.tmp for src, _ in renames)
    assert all(dst.stat().st_ino in synced for _, dst in renames)  # the file itself
    assert all(dst.parent.stat().st_ino in synced for _, dst in renames)  # its directory


def test_an_unchanged_link_is_not_written_again(store, monkeypatch):
    desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
    store.link_manifest("app", desc, tag="v1")
    renames: list[str] = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (renames.append(str(d)), real(s, d)))
    store.link_manifest("app", desc, tag="v1")
    assert renames == []


def test_corrupt_link_is_a_storage_error_naming_the_file(store):
    desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
    store.link_manifest("app", desc, tag="t")
    link = v2(store) / "repositories/app/_manifests/tags/t/current/link"
    link.write_bytes(b"sha256:nonsense\n")
    with pytest.raises(StorageError, match=f"corrupt link {link}"):
        store.resolve("app", "t")


def test_blob_mtime_and_delete_removes_the_blob_directory(store):
    a = put_bytes(store, b"a")
    os.utime(store.blob_path(a.digest), (1000, 1000))
    assert store.blob_mtime(a.digest) == 1000
    assert store.delete_blob(a.digest) is True
    assert not store.blob_path(a.digest).parent.exists()


def test_putting_a_blob_again_makes_it_new_for_prune(store):
    """Re-used by a build (put again, with or without its digest), an old blob
    is as fresh as a new one: prune's grace period spares it."""
    for expected in (None, Digest.of(b"old")):
        a = put_bytes(store, b"old")
        os.utime(store.blob_path(a.digest), (1000, 1000))
        store.put_blob(io.BytesIO(b"old"), expected)
        assert store.blob_mtime(a.digest) > time.time() - 60


def test_unlinks_remove_the_link_directory(store):
    blob = put_bytes(store, b"layer")
    store.link_blob("a", blob.digest)
    desc = store.put_manifest("a", manifest_bytes(store), OCI_MANIFEST)
    store.link_manifest("a", desc, tag="1")
    assert store.unlink_blob("a", blob.digest)
    assert store.delete_manifest("a", desc.digest) == ["1"]
    repo = v2(store) / "repositories" / "a"
    assert not (repo / "_layers" / "sha256" / blob.digest.hex).exists()
    assert not (repo / "_manifests" / "revisions" / "sha256" / desc.digest.hex).exists()
    assert not (repo / "_manifests" / "tags" / "1").exists()


# ---------------------------------------------------------------- names, exactly


@pytest.mark.parametrize("name", ["app\n", "team/app\n", "app\r\n", "\napp", "app/\n"])
def test_repository_names_with_a_trailing_newline_are_invalid(name):
    from buildkit.errors import ReferenceFormatError
    from buildkit.store.base import validate_repository

    with pytest.raises(ReferenceFormatError):
        validate_repository(name)
    assert validate_repository("team/app") == "team/app"


@pytest.mark.parametrize("tag", ["v1\n", "latest\n", "v1\r\n", "\nv1"])
def test_tags_with_a_trailing_newline_are_invalid(tag):
    from buildkit.errors import ReferenceFormatError
    from buildkit.store.base import validate_tag

    with pytest.raises(ReferenceFormatError):
        validate_tag(tag)
    assert validate_tag("v1") == "v1"


@pytest.mark.parametrize("key", ["builds/1\n", "builds\n/1", "builds/1\r\n"])
def test_record_keys_with_a_trailing_newline_are_invalid(key):
    from buildkit.store.base import validate_key

    with pytest.raises(ValueError):
        validate_key(key)
    assert validate_key("builds/1") == ("builds", "1")


def test_the_store_refuses_a_tag_with_a_newline(store):
    from buildkit.errors import ReferenceFormatError

    desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
    with pytest.raises(ReferenceFormatError):
        store.link_manifest("app", desc, "v1\n")
    with pytest.raises(ReferenceFormatError):
        store.resolve("app\n", desc.digest)


def test_put_manifest_still_links_stored_blobs(store):
    """Farm's own publishing (`tag_image`) goes through `store.put_manifest`, which
    links the manifest's stored blobs; only the registry API refuses unlinked ones."""
    data = manifest_bytes(store, "publish")
    desc = store.put_manifest("published", data, OCI_MANIFEST)
    config = json.loads(data)["config"]["digest"]
    assert store.blob_linked("published", Digest(config))
    assert store.resolve("published", desc.digest) == desc
