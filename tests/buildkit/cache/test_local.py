"""The step cache in a local directory: export, import, merge, corruption (options: test_options.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from buildkit.cache import index
from buildkit.cache.index import CachedLayer
from buildkit.cache.local import (
    CACHE_ARTIFACT_TYPE,
    CacheError,
    export_cache,
    import_cache,
)
from buildkit.digest import Digest
from buildkit.image import OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, parse_index, parse_manifest
from buildkit.store.base import put_bytes, read_blob
from buildkit.store.filesystem import FilesystemStore


def key(n: int) -> str:
    return f"sha256:{n:064x}"


def make_store(path: Path) -> FilesystemStore:
    return FilesystemStore(path)


def add(store: FilesystemStore, n: int, *, layer: bool = True, now: float = 1000.0):
    cached = None
    if layer:
        blob = put_bytes(store, f"layer {n}".encode() * 100, media_type=OCI_LAYER_GZIP)
        cached = CachedLayer(blob.digest, Digest(key(n + 500)), blob.size, OCI_LAYER_GZIP)
    return index.record(store, key(n), cached, now=now, description=f"RUN step {n}")


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def same(a, b) -> bool:
    """Records equal but for last_used (an import counts as a use)."""
    return (a.key, a.layer, a.created, a.description) == (b.key, b.layer, b.created, b.description)


def test_export_then_import_gives_the_same_records_and_blobs(tmp_path):
    one = make_store(tmp_path / "one")
    records = [add(one, 1), add(one, 2), add(one, 3, layer=False)]
    out = tmp_path / "cache"
    result = export_cache(one, [records[0], key(2), key(3), key(99)], out)  # 99: no record
    assert [r.key for r in result.records] == [key(1), key(2), key(3)]

    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    idx = parse_index((out / "index.json").read_bytes())
    assert idx.media_type == OCI_INDEX and len(idx.manifests) == 1
    desc = idx.manifests[0]
    assert (desc.media_type, desc.artifact_type) == (OCI_MANIFEST, CACHE_ARTIFACT_TYPE)
    for name in files(out / "blobs"):  # every blob is stored under its digest
        path = out / "blobs" / name
        assert Digest.of(path.read_bytes()).hex == path.name
    manifest = parse_manifest((out / "blobs" / "sha256" / desc.digest.hex).read_bytes())
    assert sorted(x.digest for x in manifest.layers) == sorted(
        r.layer.digest for r in records if r.layer
    )

    two = make_store(tmp_path / "two")
    now = time.time()
    imported = import_cache(two, out, now=now)
    got = index.list_records(two)
    assert len(got) == 3 and all(same(a, b) for a, b in zip(got, records, strict=True))
    assert all(r.last_used == now for r in got) and len(imported.records) == 3
    for r in records:
        if r.layer:
            assert read_blob(two, r.layer.digest) == read_blob(one, r.layer.digest)
    assert two.list_blobs() == sorted(r.layer.digest for r in records if r.layer)
    assert index.lookup(two, key(1), now=now) is not None


def test_a_corrupt_blob_is_rejected_and_nothing_is_recorded(tmp_path):
    one = make_store(tmp_path / "one")
    records = [add(one, 1), add(one, 2)]
    out = tmp_path / "cache"
    export_cache(one, records, out)
    bad = out / "blobs" / "sha256" / records[1].layer.digest.hex
    bad.write_bytes(b"not the layer")
    two = make_store(tmp_path / "two")
    with pytest.raises(CacheError, match=records[1].layer.digest) as err:
        import_cache(two, out, now=time.time())
    assert str(bad) in str(err.value) and "corrupt" in str(err.value)
    assert index.list_records(two) == []
    assert not two.has_blob(records[1].layer.digest)


def test_a_missing_blob_or_cache_is_an_error(tmp_path):
    one = make_store(tmp_path / "one")
    rec = add(one, 1)
    out = tmp_path / "cache"
    with pytest.raises(CacheError, match="no cache at"):
        import_cache(one, out, now=0)
    export_cache(one, [rec], out)
    (out / "blobs" / "sha256" / rec.layer.digest.hex).unlink()
    two = make_store(tmp_path / "two")
    with pytest.raises(CacheError, match="missing"):
        import_cache(two, out, now=0)
    assert index.list_records(two) == []


def test_exports_merge(tmp_path):
    one = make_store(tmp_path / "one")
    first = [add(one, 1), add(one, 2)]
    out = tmp_path / "cache"
    export_cache(one, first, out)
    other = make_store(tmp_path / "other")
    second = [add(other, 2, now=2000.0), add(other, 3)]  # key 2 again, used later
    result = export_cache(other, second, out)
    assert [r.key for r in result.records] == [key(1), key(2), key(3)]
    assert result.records[1] == second[0]
    two = make_store(tmp_path / "two")
    import_cache(two, out, now=5000.0)
    got = {r.key: r for r in index.list_records(two)}
    assert sorted(got) == [key(1), key(2), key(3)]
    assert got[key(2)].created == 2000.0
    for r in got.values():
        assert two.has_blob(r.layer.digest)
    # the same export again changes nothing but is still consistent
    again = export_cache(other, second, out)
    assert again.manifest == result.manifest
    assert not any(p.name.startswith(".tmp-") for p in out.rglob("*"))


def test_import_keeps_a_usable_record_already_there(tmp_path):
    one = make_store(tmp_path / "one")
    rec = add(one, 1)
    out = tmp_path / "cache"
    export_cache(one, [rec], out)
    two = make_store(tmp_path / "two")
    mine = add(two, 1, now=3000.0)  # same key, another layer
    result = import_cache(two, out, now=4000.0)
    assert result.records == ()
    assert index.list_records(two) == [mine]
