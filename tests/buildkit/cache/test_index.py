"""The cache index against a real FilesystemStore."""

from __future__ import annotations

import json
from typing import Any

import pytest

from buildkit.cache.index import (
    CachedLayer,
    CacheRecord,
    delete_record,
    list_records,
    lookup,
    record,
    record_key,
)
from buildkit.digest import Digest
from buildkit.layers import OCI_LAYER_GZIP
from buildkit.store.base import put_bytes
from buildkit.store.filesystem import FilesystemStore

KEY = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture
def store(tmp_path):
    return FilesystemStore(tmp_path / "store")


def put_layer(store, data: bytes = b"layer bytes") -> CachedLayer:
    desc = put_bytes(store, data)
    return CachedLayer(desc.digest, Digest.of(b"tar " + data), desc.size, OCI_LAYER_GZIP)


def test_record_then_lookup_hits_and_records_its_use(store, tmp_path):
    layer = put_layer(store)
    made = record(store, KEY, layer, now=100.0, description="RUN make")
    assert made == CacheRecord(KEY, layer, 100.0, 100.0, "RUN make")
    hit = lookup(store, KEY, now=250.0)
    assert hit == CacheRecord(KEY, layer, 100.0, 250.0, "RUN make")
    # The use is in the store, not only in the returned value.
    path = tmp_path / "store" / "farm" / "cache" / ("a" * 64 + ".json")
    on_disk = json.loads(path.read_text())
    assert on_disk["last_used"] == 250.0 and on_disk["created"] == 100.0
    assert on_disk["layer"] == {
        "digest": layer.digest,
        "diff_id": layer.diff_id,
        "size": layer.size,
        "media_type": OCI_LAYER_GZIP,
    }


def test_last_used_never_goes_back(store):
    record(store, KEY, put_layer(store), now=100.0)
    assert lookup(store, KEY, now=300.0).last_used == 300.0
    assert lookup(store, KEY, now=200.0).last_used == 300.0  # a machine with a slow clock


def test_miss(store):
    assert lookup(store, KEY, now=1.0) is None
    record(store, KEY, None, now=1.0)
    assert lookup(store, OTHER, now=2.0) is None


def test_step_that_changed_nothing_is_a_hit_without_a_layer(store):
    record(store, KEY, None, now=5.0, description="WORKDIR /app")
    hit = lookup(store, KEY, now=6.0)
    assert hit is not None and hit.layer is None and hit.last_used == 6.0


def test_record_whose_blob_vanished_is_a_miss(store):
    layer = put_layer(store)
    record(store, KEY, layer, now=1.0)
    store.blob_path(layer.digest).unlink()
    assert lookup(store, KEY, now=2.0) is None
    # Building again and recording replaces it.
    layer2 = put_layer(store, b"rebuilt")
    record(store, KEY, layer2, now=3.0)
    assert lookup(store, KEY, now=4.0).layer == layer2


class Spy:
    """A store that logs the calls lookup makes, around a real one."""

    def __init__(self, inner: FilesystemStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def test_use_is_recorded_before_the_blob_is_checked(store):
    record(store, KEY, put_layer(store), now=1.0)
    spy = Spy(store)
    assert lookup(spy, KEY, now=2.0) is not None  # type: ignore[arg-type]
    assert spy.calls == ["get_json", "put_json", "has_blob"]


def test_record_refuses_a_layer_whose_blob_is_not_stored(store):
    layer = CachedLayer(Digest.of(b"never stored"), Digest.of(b"x"), 12, OCI_LAYER_GZIP)
    with pytest.raises(ValueError, match="not in the store"):
        record(store, KEY, layer, now=1.0)
    assert store.get_json(record_key(KEY)) is None


def test_record_accepts_any_layer_like_object(store):
    from buildkit.layers import Layer

    stored = put_layer(store)
    layer = Layer(stored.digest, stored.diff_id, stored.size, stored.media_type, 999)
    record(store, KEY, layer, now=1.0)
    assert lookup(store, KEY, now=2.0).layer == stored


def test_list_and_delete(store):
    layer = put_layer(store)
    record(store, KEY, layer, now=1.0, description="RUN a")
    record(store, OTHER, None, now=2.0, description="RUN b")
    store.put_json("cache/" + "c" * 64, {"garbage": True})  # unreadable: skipped
    store.put_json("builds/x", {"key": KEY})  # another kind of record: not listed
    assert [(r.key, r.description) for r in list_records(store)] == [
        (KEY, "RUN a"),
        (OTHER, "RUN b"),
    ]
    assert delete_record(store, KEY) is True
    assert delete_record(store, KEY) is False
    assert lookup(store, KEY, now=3.0) is None
    assert store.has_blob(layer.digest)  # blobs are the collector's business
    assert [r.key for r in list_records(store)] == [OTHER]


@pytest.mark.parametrize(
    "bad",
    [
        {"garbage": True},
        [],
        {"key": KEY, "layer": {"digest": "nope"}, "created": 1, "last_used": 1},
        {"key": OTHER, "layer": None, "created": 1, "last_used": 1},  # under the wrong name
        {"key": KEY, "layer": None, "created": "x", "last_used": 1},
    ],
)
def test_unreadable_record_is_a_miss(store, bad):
    store.put_json(record_key(KEY), bad)
    assert lookup(store, KEY, now=1.0) is None


@pytest.mark.parametrize("key", ["", "a" * 64, "sha256:" + "A" * 64, "sha512:" + "a" * 64,
                                 "sha256:../../etc"])  # fmt: skip
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(ValueError):
        lookup(store, key, now=1.0)
    with pytest.raises(ValueError):
        record(store, key, None, now=1.0)
