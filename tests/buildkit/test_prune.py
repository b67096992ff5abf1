"""Garbage collection: the pure plan, then real stores and a real $FARM_HOME."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from buildkit.cache import index
from buildkit.cache.index import CachedLayer, CacheRecord
from buildkit.cachemounts import CacheSpec, open_cache
from buildkit.digest import Digest
from buildkit.image import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, ImageConfig, Manifest
from buildkit.prune import (
    BlobInfo,
    PruneError,
    PruneOptions,
    StoreListing,
    format_size,
    parse_duration,
    parse_size,
    plan_prune,
    plan_snapshots,
    prune,
    prune_store,
    snapshot_names,
)
from buildkit.snapshots import chain_id
from buildkit.store.base import put_bytes
from buildkit.store.filesystem import FilesystemStore

OLD = 1_000.0
NOW = 100_000.0


def d(n: int) -> str:
    return f"sha256:{n:064x}"


def rec(n: int, blob: int | None, last_used: float = OLD) -> CacheRecord:
    layer = None if blob is None else CachedLayer(Digest(d(blob)), Digest(d(blob + 500)), 1, "x")
    return CacheRecord(d(n), layer, OLD, last_used)


def listing(
    blobs: dict[int, tuple[int, float]],
    roots: tuple[int, ...] = (),
    children: dict[int, tuple[int, ...]] | None = None,
    records: tuple[CacheRecord, ...] = (),
) -> StoreListing:
    return StoreListing(
        roots=frozenset(d(r) for r in roots),
        children={d(k): tuple(d(c) for c in v) for k, v in (children or {}).items()},
        records=records,
        blobs={d(k): BlobInfo(size, mtime) for k, (size, mtime) in blobs.items()},
    )


# ------------------------------------------------------------ the plan


IMAGE = {1: (10, OLD), 2: (20, OLD), 3: (30, OLD)}  # 1 = manifest of config 2, layer 3


@pytest.mark.parametrize(
    ("blobs", "roots", "children", "records", "options", "gone_blobs", "gone_records"),
    [
        # a tagged image keeps its manifest, config and layers; a stray blob goes
        ({**IMAGE, 4: (5, OLD)}, (1,), {1: (2, 3)}, (), PruneOptions(), {4}, set()),
        # the same image untagged: everything goes
        (IMAGE, (), {1: (2, 3)}, (), PruneOptions(), {1, 2, 3}, set()),
        # an index keeps its manifests and theirs
        ({**IMAGE, 9: (1, OLD)}, (9,), {9: (1,), 1: (2, 3)}, (), PruneOptions(), set(), set()),
        # a manifest written within the grace period keeps its old blobs (a build tags it next)
        (
            {1: (10, NOW - 5), 2: (20, OLD), 3: (30, OLD)},
            (),
            {1: (2, 3)},
            (),
            PruneOptions(),
            set(),
            set(),
        ),
        # default: records stay and keep their blobs; a record whose blob is gone goes
        ({5: (1, OLD)}, (), {}, (rec(1, 5), rec(2, 6)), PruneOptions(), set(), {2}),
        # --all: every record not used within grace, and its blob
        (
            {5: (1, OLD), 6: (1, OLD)},
            (),
            {},
            (rec(1, 5), rec(2, 6, NOW - 5)),
            PruneOptions(all=True),
            {5},
            {1},
        ),
        # --all keeps a blob that an image also uses
        ({**IMAGE}, (1,), {1: (2, 3)}, (rec(1, 3),), PruneOptions(all=True), set(), {1}),
        # records without a layer go with --all only
        ({}, (), {}, (rec(1, None),), PruneOptions(), set(), set()),
        ({}, (), {}, (rec(1, None),), PruneOptions(all=True), set(), {1}),
        # grace 0: nothing is fresh
        (
            {5: (1, NOW - 5)},
            (),
            {},
            (rec(1, 5, NOW - 5),),
            PruneOptions(all=True, grace=0),
            {5},
            {1},
        ),
    ],
)
def test_plan(blobs, roots, children, records, options, gone_blobs, gone_records):
    plan = plan_prune(listing(blobs, roots, children, records), options, now=NOW)
    assert set(plan.blobs) == {d(b) for b in gone_blobs}
    assert {r.key for r in plan.records} == {d(r) for r in gone_records}
    assert plan.reclaimable == sum(blobs[b][0] for b in gone_blobs)


def test_keep_storage_drops_least_recently_used_first():
    blobs = {10: (100, OLD), 11: (100, OLD), 12: (100, OLD), 13: (100, OLD)}
    records = (rec(1, 10, 300.0), rec(2, 11, 100.0), rec(3, 12, 200.0), rec(4, 13, NOW))
    plan = plan_prune(listing(blobs, records=records), PruneOptions(keep_storage=150), now=NOW)
    # 400 bytes kept; record 4 is fresh; 2 then 3 go, then 1 (100 + 100 > 150) → 100 left
    assert [r.key for r in plan.records] == [d(2), d(3), d(1)]
    assert set(plan.blobs) == {d(11), d(12), d(10)}
    plan = plan_prune(listing(blobs, records=records), PruneOptions(keep_storage=250), now=NOW)
    assert [r.key for r in plan.records] == [d(2), d(3)]


def test_keep_storage_counts_images_and_shared_blobs():
    blobs = {**IMAGE, 10: (100, OLD)}
    # two records share blob 10: dropping one frees nothing
    records = (rec(1, 10, 100.0), rec(2, 10, 200.0), rec(3, 3, 50.0))
    plan = plan_prune(
        listing(blobs, (1,), {1: (2, 3)}, records), PruneOptions(keep_storage=100), now=NOW
    )
    # image 60 bytes + blob 10 = 160 > 100: record 3 (image blob, frees nothing), 1, 2 go
    assert [r.key for r in plan.records] == [d(3), d(1), d(2)]
    assert plan.blobs == (d(10),)
    plan = plan_prune(
        listing(blobs, (1,), {1: (2, 3)}, records), PruneOptions(keep_storage=10_000), now=NOW
    )
    assert plan.records == () and plan.blobs == ()


def test_plan_snapshots():
    found = {"a": OLD, "b": OLD, "c": NOW - 1, "chain-x": OLD}
    assert plan_snapshots(found, {"a", "chain-x"}, now=NOW, grace=60) == ["b"]
    assert plan_snapshots(found, set(), now=NOW, grace=0) == ["a", "b", "c", "chain-x"]


def test_snapshot_names_are_layers_and_chains():
    names = snapshot_names([[d(1), d(2)]], [d(7)])
    assert names == {
        f"{1:064x}",
        f"{2:064x}",
        f"{7:064x}",
        "chain-" + chain_id([d(1)]).hex,
        "chain-" + chain_id([d(1), d(2)]).hex,
    }


@pytest.mark.parametrize(
    ("text", "want"),
    [("0", 0), ("10GB", 10 << 30), ("500MB", 500 << 20), ("1.5g", 3 << 29), ("100kB", 102400),
     ("12", 12), ("2GiB", 2 << 30), ("7b", 7)],
)  # fmt: skip
def test_parse_size(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [("0", 0), ("0s", 0), ("1h", 3600), ("30m", 1800), ("1h30m", 5400), ("2d", 172800),
     ("1.5s", 1.5), ("500ms", 0.5)],
)  # fmt: skip
def test_parse_duration(text, want):
    assert parse_duration(text) == want


@pytest.mark.parametrize("bad", ["", "10", "1x", "h", "1h 2m", "-1h"])
def test_parse_duration_rejects(bad):
    with pytest.raises(PruneError, match="invalid duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["", "GB", "10XB", "-1", "1,5GB"])
def test_parse_size_rejects(bad):
    with pytest.raises(PruneError, match="invalid size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("n", "want"), [(0, "0B"), (999, "999B"), (12_345_678, "12.35MB"), (1_000, "1kB"), (3e9, "3GB")]
)
def test_format_size(n, want):
    assert format_size(n) == want


# ------------------------------------------------------------ a real store


@pytest.fixture
def store(tmp_path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "registry")


def later() -> float:
    return time.time() + 10  # everything written so far is older than a 0s grace


def age(store: FilesystemStore, digest: str, when: float = OLD) -> None:
    os.utime(store.blob_path(Digest(digest)), (when, when))


def image(store: FilesystemStore, marker: str, tag: str | None = "1", repo: str = "app"):
    """A one-layer image; returns (manifest, config, layer) descriptors."""
    layer = put_bytes(store, f"layer {marker}".encode() * 10, media_type=OCI_LAYER_GZIP)
    diff_id = Digest.of(marker.encode())
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=(diff_id,))
    cfg = put_bytes(store, config.to_json(), media_type=OCI_CONFIG)
    data = Manifest(config=cfg, layers=(layer,)).to_json()
    if tag is None:
        man = put_bytes(store, data, media_type=OCI_MANIFEST)
    else:
        man = store.put_manifest(repo, data, OCI_MANIFEST)
        store.link_manifest(repo, man, tag)
    for desc in (man, cfg, layer):
        age(store, desc.digest)
    return man, cfg, layer


def cached(store: FilesystemStore, n: int, *, used: float = OLD, size: int = 50):
    blob = put_bytes(store, bytes([n]) * size, media_type=OCI_LAYER_GZIP)
    age(store, blob.digest)
    layer = CachedLayer(blob.digest, Digest(d(n + 500)), blob.size, OCI_LAYER_GZIP)
    index.record(store, d(n), layer, now=used)
    return blob


def test_tagged_image_survives_untagged_goes(store):
    tagged = image(store, "a")
    loose = image(store, "b", tag=None)
    _, report = prune_store(store, PruneOptions(grace=0), clock=later)
    for desc in tagged:
        assert store.has_blob(desc.digest)
    for desc in loose:
        assert not store.has_blob(desc.digest)
    assert report.blobs == 3
    assert report.blob_bytes == sum(x.size for x in loose)
    assert store.list_blobs() == sorted(x.digest for x in tagged)


def test_revision_without_tag_survives(store):
    man, cfg, layer = image(store, "a", tag="old")
    store.delete_tag("app", "old")
    prune_store(store, PruneOptions(grace=0, all=True), clock=later)
    assert all(store.has_blob(x.digest) for x in (man, cfg, layer))


def test_cache_records_keep_their_blobs_unless_all(store):
    blob = cached(store, 1)
    prune_store(store, PruneOptions(grace=0), clock=later)
    assert store.has_blob(blob.digest)
    assert [r.key for r in index.list_records(store)] == [d(1)]
    _, report = prune_store(store, PruneOptions(grace=0, all=True), clock=later)
    assert not store.has_blob(blob.digest)
    assert index.list_records(store) == []
    assert (report.records, report.blobs, report.blob_bytes) == (1, 1, blob.size)


def test_keep_storage_removes_least_recently_used(store):
    blobs = {n: cached(store, n, used=OLD + n, size=100) for n in (3, 1, 2)}
    prune_store(store, PruneOptions(grace=0, keep_storage=150), clock=later)
    assert [r.key for r in index.list_records(store)] == [d(3)]
    assert [n for n, b in blobs.items() if store.has_blob(b.digest)] == [3]


def test_grace_protects_fresh_blobs_and_records(store):
    fresh = put_bytes(store, b"just written")
    blob = put_bytes(store, b"layer of a fresh record")
    index.record(
        store, d(1), CachedLayer(blob.digest, Digest(d(9)), blob.size, "x"), now=time.time()
    )
    age(store, blob.digest)
    _, report = prune_store(store, PruneOptions(all=True), clock=later)
    assert store.has_blob(fresh.digest) and store.has_blob(blob.digest)
    assert [r.key for r in index.list_records(store)] == [d(1)]
    assert (report.records, report.blobs) == (0, 0)


def test_a_record_used_after_planning_is_not_deleted(store):
    blob = cached(store, 1)

    def meanwhile(plan):
        assert [r.key for r in plan.records] == [d(1)] and plan.blobs == (blob.digest,)
        assert index.lookup(store, d(1), now=time.time()) is not None  # a build hits

    _, report = prune_store(store, PruneOptions(all=True, grace=0), clock=later, between=meanwhile)
    assert store.has_blob(blob.digest)
    assert [r.key for r in index.list_records(store)] == [d(1)]
    assert (report.records, report.blobs) == (0, 0)
    assert set(report.kept) == {d(1), blob.digest}


def test_a_blob_tagged_after_planning_is_not_deleted(store):
    man, cfg, layer = image(store, "a", tag=None)

    def meanwhile(plan):
        assert man.digest in plan.blobs
        store.put_manifest("app", store.open_blob(man.digest).read(), OCI_MANIFEST)

    prune_store(store, PruneOptions(grace=0), clock=later, between=meanwhile)
    assert all(store.has_blob(x.digest) for x in (man, cfg, layer))


def test_a_blob_rewritten_after_planning_is_not_deleted(store):
    blob = put_bytes(store, b"orphan")
    age(store, blob.digest)

    def meanwhile(plan):
        assert plan.blobs == (blob.digest,)
        os.utime(store.blob_path(blob.digest))  # as a build writing it again would

    prune_store(store, PruneOptions(grace=60), clock=time.time, between=meanwhile)
    assert store.has_blob(blob.digest)


# ------------------------------------------------------------ $FARM_HOME


def snapshot(home: Path, name: str, when: float = OLD) -> Path:
    path = home / "snapshots" / name
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "file").write_bytes(b"x" * 100)
    os.utime(path, (when, when))
    return path


def test_snapshots_of_kept_layers_and_images_survive(store, tmp_path):
    home = tmp_path / "home"
    image(store, "a")
    diff_id = Digest.of(b"a")
    cached(store, 1)  # its diff_id is d(501)
    orphan_blob = cached(store, 2, used=OLD)
    kept = [
        snapshot(home, diff_id.hex),
        snapshot(home, "chain-" + chain_id([diff_id]).hex),
        snapshot(home, Digest(d(501)).hex),
        snapshot(home, "fresh", when=time.time()),
    ]
    gone = [snapshot(home, "chain-" + "0" * 64), snapshot(home, "orphan")]
    index.lookup(store, d(1), now=time.time())  # record 1 is fresh, record 2 is not
    report = prune(store, home, PruneOptions(all=True, grace=60))
    assert all(p.is_dir() for p in kept)
    assert not any(p.exists() for p in gone)
    assert report.snapshots == 2 and report.snapshot_bytes >= 200
    assert not store.has_blob(orphan_blob.digest)
    assert list((home / "tmp").iterdir()) == []


def test_cache_mounts_go_with_all_when_unused(tmp_path, store):
    home = tmp_path / "home"
    root = home / "cache-mounts"
    with open_cache(root, CacheSpec("old")) as data:
        (data / "f").write_bytes(b"y" * 1000)
    old_instance = data.parent
    for p in (old_instance, data):
        os.utime(p, (OLD, OLD))
    prune(store, home, PruneOptions(grace=60))
    assert data.is_dir()  # not without --all
    with open_cache(root, CacheSpec("busy")) as busy:
        for p in (busy.parent, busy):
            os.utime(p, (OLD, OLD))
        report = prune(store, home, PruneOptions(all=True, grace=60))
        assert busy.is_dir()  # held by a step
    assert not old_instance.exists()
    assert report.cache_mounts == 1 and report.cache_mount_bytes >= 1000
    with open_cache(root, CacheSpec("old")) as again:  # a fresh instance appears
        assert again.is_dir() and list(again.iterdir()) == []
