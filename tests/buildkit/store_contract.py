"""The behaviour every `Store` driver keeps, as one set of tests.

A driver's test module subclasses `StoreContract` and provides a `harness`
fixture: the store, plus the few views of its backing storage the checks need
(the keys under `<root>/docker/registry/v2/`, what is left of half-done writes,
the order in which keys became visible). The exact key layout is part of the
contract: a stock registry:2 reads it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from buildkit.digest import Digest
from buildkit.errors import BlobUnknown, DigestMismatch, ManifestUnknown, ReferenceFormatError
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Index,
    Manifest,
    ManifestInvalid,
    descriptor_for,
)
from buildkit.store.base import NameUnknown, Store, put_bytes, read_blob
from buildkit.store.filesystem import FilesystemStore


class StoreHarness:
    """A driver under test and the views of its storage the contract needs."""

    store: Store
    big: int  # a blob size that takes the driver's large-blob path

    def files(self) -> list[str]:
        """Every stored file under `<root>/docker/registry/v2/`, relative to it, sorted."""
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        """A file under `<root>/docker/registry/v2/`."""
        raise NotImplementedError

    def read_record(self, key: str) -> bytes:
        """A file under `<root>/farm/`."""
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """Whatever half-done writes left behind (temporary files, open uploads)."""
        raise NotImplementedError

    def writes(self) -> contextlib.AbstractContextManager[list[str]]:
        """While active, the keys (relative to v2/) in the order they became visible."""
        raise NotImplementedError


class FilesystemHarness(StoreHarness):
    def __init__(self, root: Path) -> None:
        self.fs = FilesystemStore(root)
        self.store = self.fs
        self.v2 = root / "docker" / "registry" / "v2"
        self.big = 3 << 20

    def files(self) -> list[str]:
        return _files(self.v2)

    def read(self, key: str) -> bytes:
        return (self.v2 / key).read_bytes()

    def read_record(self, key: str) -> bytes:
        return (self.fs.records / key).read_bytes()

    def leftovers(self) -> list[str]:
        return _files(self.fs.tmp)

    @contextlib.contextmanager
    def writes(self) -> Iterator[list[str]]:
        order: list[str] = []
        real = os.replace

        def spy(src: Any, dst: Any) -> None:
            with contextlib.suppress(ValueError):
                order.append(Path(dst).relative_to(self.v2).as_posix())
            real(src, dst)

        with mock.patch.object(os, "replace", spy):
            yield order


def _files(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def manifest_bytes(store: Store, marker: str = "x") -> bytes:
    config = put_bytes(store, f'{{"marker":"{marker}"}}'.encode(), media_type=OCI_CONFIG)
    return Manifest(config=config).to_json()


def blob_key(digest: Digest) -> str:
    return f"blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"


class _Broken(io.RawIOBase):
    """A stream that fails after `good` bytes."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("connection reset")
        n = min(len(buffer), self.left)
        buffer[:n] = b"\x01" * n
        self.left -= n
        return n


def _threads(*targets: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def run(target: Callable[[], None]) -> None:
        start.wait()
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


class StoreContract:
    """Subclass with a `harness` fixture returning a fresh, empty `StoreHarness`."""

    @pytest.fixture
    def store(self, harness: StoreHarness) -> Store:
        return harness.store

    # ------------------------------------------------------------ blobs

    def test_is_a_store(self, store):
        assert isinstance(store, Store)

    def test_blob_key_and_descriptor(self, harness, store):
        desc = store.put_blob(io.BytesIO(b"hello"), media_type="text/plain")
        digest = Digest.of(b"hello")
        assert (desc.digest, desc.size, desc.media_type) == (digest, 5, "text/plain")
        assert harness.files() == [blob_key(digest)]
        assert harness.read(blob_key(digest)) == b"hello"
        assert store.has_blob(digest) and store.blob_size(digest) == 5
        assert read_blob(store, digest) == b"hello"
        assert harness.leftovers() == []

    def test_empty_blob(self, harness, store):
        desc = put_bytes(store, b"")
        assert desc.digest == Digest.of(b"") and desc.size == 0
        assert read_blob(store, desc.digest) == b""

    def test_put_blob_with_expected_digest_is_idempotent(self, harness, store):
        digest = Digest.of(b"data")
        assert store.put_blob(io.BytesIO(b"data"), digest).digest == digest
        assert store.put_blob(io.BytesIO(b"data"), digest).digest == digest
        assert store.put_blob(io.BytesIO(b"data")).digest == digest
        assert len(harness.files()) == 1 and harness.leftovers() == []

    def test_existing_blob_with_expected_digest_is_not_read(self, store):
        digest = put_bytes(store, b"data").digest
        desc = store.put_blob(_Broken(0), digest)  # type: ignore[arg-type]
        assert (desc.digest, desc.size) == (digest, 4)

    @pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
    def test_digest_mismatch_leaves_nothing(self, harness, store, large):
        data = os.urandom(harness.big if large else 1000)
        wrong = Digest.of(b"something else")
        with pytest.raises(DigestMismatch):
            store.put_blob(io.BytesIO(data), wrong)
        assert not store.has_blob(wrong) and not store.has_blob(Digest.of(data))
        assert harness.files() == [] and harness.leftovers() == []

    @pytest.mark.parametrize("good", [0, 100, "big"])
    def test_interrupted_write_leaves_nothing(self, harness, store, good):
        stream = _Broken(harness.big if good == "big" else good)
        with pytest.raises(OSError, match="reset"):
            store.put_blob(stream)  # type: ignore[arg-type]
        assert harness.files() == [] and harness.leftovers() == []

    @pytest.mark.parametrize("with_expected", [False, True])
    def test_large_blob(self, harness, store, with_expected):
        data = os.urandom(harness.big)
        digest = Digest.of(data)
        desc = store.put_blob(io.BytesIO(data), digest if with_expected else None)
        assert (desc.digest, desc.size) == (digest, len(data))
        assert harness.files() == [blob_key(digest)]
        assert store.blob_size(digest) == len(data)
        with store.open_blob(digest) as f:
            assert f.read(10) == data[:10]
            assert f.read() == data[10:]
        assert store.put_blob(io.BytesIO(data)).digest == digest  # again: nothing changes
        assert harness.files() == [blob_key(digest)] and harness.leftovers() == []

    def test_missing_blob(self, harness, store):
        with pytest.raises(BlobUnknown):
            store.open_blob(Digest.of(b"nope"))
        with pytest.raises(BlobUnknown):
            store.blob_size(Digest.of(b"nope"))
        with pytest.raises(BlobUnknown):
            store.link_blob("app", Digest.of(b"nope"))
        assert not store.has_blob(Digest.of(b"nope"))
        assert harness.files() == []

    # ------------------------------------------------------------ links and tags

    def test_layer_link_exact(self, harness, store):
        desc = put_bytes(store, b"layer")
        store.link_blob("team/app", desc.digest)
        link = f"repositories/team/app/_layers/sha256/{desc.digest.hex}/link"
        assert harness.read(link) == f"sha256:{desc.digest.hex}".encode()  # no newline
        assert store.blob_linked("team/app", desc.digest)
        assert not store.blob_linked("other", desc.digest)

    def test_manifest_and_tag_links_exact(self, harness, store):
        data = manifest_bytes(store)
        desc = store.put_manifest("app", data, OCI_MANIFEST)
        store.link_manifest("app", desc, tag="1.0")
        h = desc.digest.hex
        top = "repositories/app/_manifests/"
        manifests = [k[len(top) :] for k in harness.files() if k.startswith(top)]
        assert manifests == [
            f"revisions/sha256/{h}/link",
            "tags/1.0/current/link",
            f"tags/1.0/index/sha256/{h}/link",
        ]
        for name in manifests:
            assert harness.read(top + name) == b"sha256:" + h.encode()
        assert read_blob(store, desc.digest) == data  # byte for byte
        assert harness.read(blob_key(desc.digest)) == data

    def test_blobs_before_links_and_tag_index_before_current(self, harness, store):
        config = put_bytes(store, b'{"a":1}', media_type=OCI_CONFIG)
        data = Manifest(config=config).to_json()
        with harness.writes() as order:
            desc = store.put_manifest("app", data, OCI_MANIFEST)
            store.link_manifest("app", desc, tag="v1")
        h = desc.digest.hex
        assert order.index(blob_key(desc.digest)) < order.index(
            f"repositories/app/_manifests/revisions/sha256/{h}/link"
        )
        assert order.index(f"repositories/app/_layers/sha256/{config.digest.hex}/link") < (
            order.index(f"repositories/app/_manifests/revisions/sha256/{h}/link")
        )
        assert order[-2:] == [
            f"repositories/app/_manifests/tags/v1/index/sha256/{h}/link",
            "repositories/app/_manifests/tags/v1/current/link",
        ]

    def test_link_manifest_needs_the_blob(self, harness, store):
        ghost = descriptor_for(b"{}", OCI_MANIFEST)
        with pytest.raises(ManifestUnknown):
            store.link_manifest("app", ghost, tag="x")
        assert harness.files() == []

    def test_resolve_tags_repositories_delete(self, store):
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

    def test_nested_repositories(self, store):
        for repo in ("a", "a/b", "a/b/c", "z/y"):
            store.link_manifest(repo, store.put_manifest(repo, manifest_bytes(store), OCI_MANIFEST))
        store.link_blob("only/layers", put_bytes(store, b"l").digest)  # no manifest: no repo
        assert store.repositories() == ["a", "a/b", "a/b/c", "z/y"]
        assert store.tags("a/b") == []

    @pytest.mark.parametrize(
        "name",
        ["App", "-app", "app-", "a//b", "/a", "a/", "a..b", "a___b", "_a", "a:b", "a" * 256, ""],
    )
    def test_invalid_repository_names(self, store, name):
        with pytest.raises(ReferenceFormatError):
            store.tags(name)

    @pytest.mark.parametrize("name", ["a", "a.b", "a_b", "a__b", "a---b", "x/y/z9", "127.0.0.1"])
    def test_valid_repository_names(self, store, name):
        desc = put_bytes(store, b"x")
        store.link_blob(name, desc.digest)
        assert store.blob_linked(name, desc.digest)

    @pytest.mark.parametrize("tag", [".x", "-x", "", "a/b", "a:b", "x" * 129, "ü"])
    def test_invalid_tags(self, store, tag):
        desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
        with pytest.raises(ReferenceFormatError):
            store.link_manifest("app", desc, tag=tag)
        with pytest.raises(ReferenceFormatError):
            store.resolve("app", tag)

    def test_concurrent_writers_leave_a_consistent_store(self, harness, store):
        small = os.urandom(1 << 20)
        big = os.urandom(harness.big)
        manifests = [
            store.put_manifest("app", manifest_bytes(store, str(i)), OCI_MANIFEST) for i in range(6)
        ]

        def write(data: bytes, times: int) -> Callable[[], None]:
            def target() -> None:
                for _ in range(times):
                    store.put_blob(io.BytesIO(data))

            return target

        def move_tag(desc: Any) -> Callable[[], None]:
            def target() -> None:
                for _ in range(3):
                    store.link_manifest("app", desc, tag="latest")

            return target

        errors = _threads(
            *(write(small, 3) for _ in range(4)),
            *(write(big, 1) for _ in range(3)),
            *(move_tag(d) for d in manifests),
        )
        assert errors == []
        assert read_blob(store, Digest.of(small)) == small
        assert read_blob(store, Digest.of(big)) == big
        assert store.resolve("app", "latest") in manifests
        current = harness.read("repositories/app/_manifests/tags/latest/current/link")
        assert current.decode() in {d.digest for d in manifests}
        top = "repositories/app/_manifests/tags/latest/index/sha256/"
        index = sorted(k[len(top) :].split("/")[0] for k in harness.files() if k.startswith(top))
        assert index == sorted(d.digest.hex for d in manifests)
        assert harness.leftovers() == []

    # ------------------------------------------------------------ manifests and references

    def test_put_manifest_links_config_and_layers(self, harness, store):
        config = put_bytes(store, b'{"a":1}', media_type=OCI_CONFIG)
        layer = put_bytes(store, b"layer", media_type=OCI_LAYER)
        desc = store.put_manifest(
            "app", Manifest(config=config, layers=(layer,)).to_json(), OCI_MANIFEST
        )
        top = "repositories/app/_layers/sha256/"
        linked = sorted(k[len(top) :].split("/")[0] for k in harness.files() if k.startswith(top))
        assert linked == sorted([config.digest.hex, layer.digest.hex])
        assert store.blob_linked("app", layer.digest)
        assert store.resolve("app", str(desc.digest)) == desc

    def test_put_manifest_refuses_dangling_references(self, store):
        config = put_bytes(store, b"{}", media_type=OCI_CONFIG)
        ghost = descriptor_for(b"never stored", OCI_LAYER)
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

    def test_put_manifest_refuses_invalid_json_and_media_type_mismatch(self, store):
        with pytest.raises(ManifestInvalid):
            store.put_manifest("app", b"{not json", OCI_MANIFEST)
        with pytest.raises(ManifestInvalid, match="declares"):
            store.put_manifest("app", manifest_bytes(store), OCI_INDEX)
        assert store.repositories() == []

    def test_revisions_and_linked_blobs(self, store):
        data = manifest_bytes(store)
        desc = store.put_manifest("team/app", data, OCI_MANIFEST)
        config = Manifest.from_dict(json.loads(data)).config
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

    def test_delete_manifest_removes_the_revision_and_its_tags(self, harness, store):
        desc = store.put_manifest("app", manifest_bytes(store), OCI_MANIFEST)
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
        top = "repositories/app/_manifests/"
        assert [k for k in harness.files() if k.startswith(top)] == [
            f"{top}revisions/sha256/{other.digest.hex}/link",
            f"{top}tags/2/current/link",
            f"{top}tags/2/index/sha256/{other.digest.hex}/link",
        ]
        with pytest.raises(ManifestUnknown):
            store.delete_manifest("app", desc.digest)
        with pytest.raises(NameUnknown):
            store.delete_manifest("nobody", desc.digest)
        assert harness.leftovers() == []

    def test_unlink_blob_removes_only_the_repository_link(self, harness, store):
        blob = put_bytes(store, b"layer")
        store.link_blob("a", blob.digest)
        store.link_blob("b", blob.digest)
        assert store.unlink_blob("a", blob.digest) is True
        assert store.unlink_blob("a", blob.digest) is False
        assert not store.blob_linked("a", blob.digest)
        assert store.blob_linked("b", blob.digest)
        assert store.has_blob(blob.digest)
        assert not any(k.startswith("repositories/a/") for k in harness.files())

    # ------------------------------------------------------------ for the garbage collector

    def test_list_blobs_mtime_and_delete(self, harness, store):
        assert store.list_blobs() == []
        before = time.time()
        a = put_bytes(store, b"a")
        b = put_bytes(store, b"b")
        after = time.time()
        assert store.list_blobs() == sorted([a.digest, b.digest])
        assert before - 2 <= store.blob_mtime(a.digest) <= after + 2
        assert store.delete_blob(a.digest) is True
        assert store.delete_blob(a.digest) is False
        assert not store.has_blob(a.digest)
        assert store.list_blobs() == [b.digest]
        assert harness.files() == [blob_key(b.digest)]
        with pytest.raises(BlobUnknown):
            store.blob_mtime(a.digest)
        put_bytes(store, b"a")  # written again after a delete
        assert store.list_blobs() == sorted([a.digest, b.digest])
        assert harness.leftovers() == []

    # ------------------------------------------------------------ Farm's records

    def test_json_records(self, harness, store):
        assert store.get_json("builds/b1") is None
        store.put_json("builds/b1", {"status": "done", "n": 1})
        store.put_json("builds/b2.v1", {"status": "queued"})
        store.put_json("builds/sub/deeper", {"not": "listed"})
        store.put_json("cache/x", [1])
        assert store.get_json("builds/b1") == {"status": "done", "n": 1}
        assert harness.read_record("builds/b1.json") == b'{"n":1,"status":"done"}'
        assert store.list_json("builds") == ["builds/b1", "builds/b2.v1"]
        assert store.list_json("nothing") == []
        assert store.delete_json("builds/b1") and not store.delete_json("builds/b1")
        assert store.list_json("builds") == ["builds/b2.v1"]
        assert harness.leftovers() == [] and harness.files() == []
        for bad in ["../x", "/abs", "a//b", ".tmp/x", ""]:
            with pytest.raises(ValueError):
                store.put_json(bad, {})
