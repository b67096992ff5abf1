"""The step cache index: one JSON record per cache key, in the store.

Records live under the store's JSON space at `cache/<key hex>`
(`<root>/farm/cache/<hex>.json` on a filesystem or S3 store), so every
machine on a shared store shares the cache. A record says what the step made:

    {"key": "sha256:…",
     "layer": {"digest": "sha256:…", "diff_id": "sha256:…", "size": 123,
               "media_type": "application/vnd.oci.image.layer.v1.tar+gzip"},
     "created": 1700000000.0, "last_used": 1700000300.0,
     "description": "RUN make"}

`layer` is null for a step that changed nothing (a RUN that wrote no file,
a WORKDIR that existed): a hit then adds no layer. The layer blob is in the
store's blob space like any other; the snapshot a machine unpacks from it is
local (`Snapshots.layer`).

`lookup` records the use first (`last_used`), then checks that the blob is
still there: a collector that removes records and blobs unused since some
time can never take the blob of a hit that is being used, provided it
re-reads a record's `last_used` before deleting its blob. A record whose blob
is gone is a miss (the step runs again and `record` replaces it).

Times are seconds since the epoch, passed in by the caller (`now`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Protocol

from buildkit.digest import Digest, InvalidDigest
from buildkit.store.base import Store

__all__ = [
    "CACHE_PREFIX",
    "CacheRecord",
    "CachedLayer",
    "LayerLike",
    "delete_record",
    "list_records",
    "lookup",
    "record",
    "record_key",
]

CACHE_PREFIX = "cache"
_KEY_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


class LayerLike(Protocol):
    """Anything with a layer's four fields (`executor.LayerRef`, `layers.Layer`)."""

    @property
    def digest(self) -> str: ...

    @property
    def diff_id(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def media_type(self) -> str: ...


@dataclass(frozen=True)
class CachedLayer:
    digest: Digest
    diff_id: Digest
    size: int
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "diff_id": str(self.diff_id),
            "size": self.size,
            "media_type": self.media_type,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedLayer:
        size = data["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"bad layer size {size!r}")
        media_type = data["media_type"]
        if not isinstance(media_type, str):
            raise ValueError(f"bad media type {media_type!r}")
        return cls(Digest(data["digest"]), Digest(data["diff_id"]), size, media_type)


@dataclass(frozen=True)
class CacheRecord:
    key: str
    layer: CachedLayer | None
    created: float
    last_used: float
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "layer": None if self.layer is None else self.layer.to_json(),
            "created": self.created,
            "last_used": self.last_used,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Any) -> CacheRecord:
        if not isinstance(data, dict):
            raise ValueError("a cache record is a JSON object")
        layer = data.get("layer")
        return cls(
            key=_check_key(data["key"]),
            layer=None if layer is None else CachedLayer.from_json(layer),
            created=float(data["created"]),
            last_used=float(data["last_used"]),
            description=str(data.get("description", "")),
        )


def _check_key(key: Any) -> str:
    match = _KEY_RE.match(key) if isinstance(key, str) else None
    if match is None:
        raise ValueError(f"invalid cache key {key!r}: expected sha256:<64 hex>")
    return str(key)


def record_key(key: str) -> str:
    """The store's JSON key of the record for cache key `key`."""
    return f"{CACHE_PREFIX}/{_check_key(key).removeprefix('sha256:')}"


def _read(store: Store, name: str, key: str | None = None) -> CacheRecord | None:
    data = store.get_json(name)
    if data is None:
        return None
    try:
        found = CacheRecord.from_json(data)
    except (KeyError, TypeError, ValueError, InvalidDigest):
        return None  # unreadable: treated as absent, and overwritten by the next record()
    if key is not None and found.key != key:
        return None
    return found


def lookup(store: Store, key: str, *, now: float) -> CacheRecord | None:
    """The record for `key` if it is a usable hit, its use recorded first.

    The returned record carries the new `last_used`.
    """
    name = record_key(key)
    found = _read(store, name, key)
    if found is None:
        return None
    used = dataclasses.replace(found, last_used=max(now, found.last_used))
    store.put_json(name, used.to_json())
    if used.layer is not None and not store.has_blob(used.layer.digest):
        return None
    return used


def record(
    store: Store,
    key: str,
    layer: LayerLike | None,
    *,
    now: float,
    description: str = "",
) -> CacheRecord:
    """Remember that the step `key` made `layer` (None: it changed nothing).

    The layer's blob must already be in the store: a record never points at
    a blob that is not there yet.
    """
    name = record_key(key)
    cached = None
    if layer is not None:
        cached = CachedLayer(
            Digest(layer.digest), Digest(layer.diff_id), layer.size, layer.media_type
        )
        if not store.has_blob(cached.digest):
            raise ValueError(f"cache record {key}: layer blob {cached.digest} is not in the store")
    entry = CacheRecord(key, cached, now, now, description)
    store.put_json(name, entry.to_json())
    return entry


def list_records(store: Store) -> list[CacheRecord]:
    """Every readable record, in key order."""
    found = []
    for name in store.list_json(CACHE_PREFIX):
        entry = _read(store, name)
        if entry is not None and record_key(entry.key) == name:
            found.append(entry)
    return found


def delete_record(store: Store, key: str) -> bool:
    """Forget `key`; False when there was no record. The blob stays (others may use it)."""
    return store.delete_json(record_key(key))
