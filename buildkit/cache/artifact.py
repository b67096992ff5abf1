"""The Farm cache manifest, wherever it is kept: in a directory (`local`) or
in a registry (`registry`).

It is an OCI image manifest used as an artifact:

    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": CACHE_ARTIFACT_TYPE,
     "config": {"mediaType": CACHE_ARTIFACT_TYPE, ...},   the JSON list of records
     "layers": [...]}                                      their layer blobs, by digest

The config is the list of cache records (as `cache.index` stores them), in
key order; the layers are the records' layer blobs, in digest order, each
once. Building one is pure (`build_manifest`); reading one checks that it is
a Farm cache manifest and that every record's layer is listed
(`parse_manifest_records`); importing fetches the blobs the store lacks, then
writes the records: never a record before its blob (`import_records`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from buildkit.cache.index import CachedLayer, CacheRecord, record_key
from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import BlobUnknown, UserError
from buildkit.image import (
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    ManifestInvalid,
    canonical_json,
    parse_manifest,
)
from buildkit.store.base import Store

__all__ = [
    "CACHE_ARTIFACT_TYPE",
    "MAX_CONFIG_SIZE",
    "CacheError",
    "CacheManifest",
    "build_manifest",
    "collect_records",
    "import_records",
    "parse_manifest_records",
]

CACHE_ARTIFACT_TYPE = "application/vnd.farm.cache.v1+json"
MAX_CONFIG_SIZE = 64 << 20  # some 200,000 records


class CacheError(UserError):
    """A --cache-to/--cache-from that Farm cannot use: a bad option, a place
    that holds no Farm cache, or a blob that is not what it claims."""


@dataclass(frozen=True)
class CacheManifest:
    """A cache manifest and its config, as bytes and descriptors."""

    descriptor: Descriptor  # the manifest's (OCI_MANIFEST, artifactType set)
    data: bytes
    config: Descriptor
    config_data: bytes
    layers: tuple[Descriptor, ...]
    records: tuple[CacheRecord, ...]  # in key order


def collect_records(
    store: Store, keys_or_records: Iterable[str | CacheRecord]
) -> list[CacheRecord]:
    """The records given, or read from the store by cache key; a key without a
    readable record, or whose blob is gone from the store, is left out (a miss)."""
    found: dict[str, CacheRecord] = {}
    for item in keys_or_records:
        rec = item if isinstance(item, CacheRecord) else _read(store.get_json(record_key(item)))
        if rec is not None and (rec.layer is None or store.has_blob(rec.layer.digest)):
            found[rec.key] = rec
    return list(found.values())


def _read(data: Any) -> CacheRecord | None:
    if data is None:
        return None
    try:
        return CacheRecord.from_json(data)
    except (KeyError, TypeError, ValueError, InvalidDigest):
        return None


def build_manifest(
    records: Iterable[CacheRecord], keep: Callable[[CachedLayer], bool] = lambda layer: True
) -> CacheManifest:
    """The cache manifest of `records` (one per key: the last given wins).
    `keep(layer)` is asked once per layer blob, in key order of the first
    record naming it: False leaves out every record naming that blob (the
    local exporter copies the blob there, and says False when it is gone)."""
    by_key = {r.key: r for r in records}
    layers: dict[str, Descriptor] = {}
    refused: set[str] = set()
    kept = []
    for rec in sorted(by_key.values(), key=lambda r: r.key):
        layer = rec.layer
        if layer is not None and layer.digest not in layers:
            if layer.digest in refused or not keep(layer):
                refused.add(layer.digest)
                continue
            layers[layer.digest] = Descriptor(layer.media_type, layer.digest, layer.size)
        kept.append(rec)
    config_data = canonical_json([r.to_json() for r in kept])
    config = Descriptor(CACHE_ARTIFACT_TYPE, Digest.of(config_data), len(config_data))
    manifest = Manifest(
        config=config,
        layers=tuple(layers[d] for d in sorted(layers)),
        artifact_type=CACHE_ARTIFACT_TYPE,
    )
    data = manifest.to_json()
    desc = Descriptor(OCI_MANIFEST, Digest.of(data), len(data), artifact_type=CACHE_ARTIFACT_TYPE)
    return CacheManifest(desc, data, config, config_data, manifest.layers, tuple(kept))


def parse_manifest_records(
    data: bytes, read_config: Callable[[Descriptor], bytes], where: str, name: str
) -> tuple[Manifest, list[CacheRecord]]:
    """The manifest `data` (called `name` in errors) and the records of its
    config, read by `read_config` (which verifies the digest). CacheError,
    prefixed with `where`, if it is not a Farm cache manifest or is damaged."""
    try:
        manifest = parse_manifest(data)
        kind = manifest.artifact_type or manifest.config.media_type
        if kind != CACHE_ARTIFACT_TYPE or manifest.config.media_type != CACHE_ARTIFACT_TYPE:
            raise CacheError(
                f"{where}: {name} is not a Farm cache manifest (artifact type {kind!r}, "
                f"config {manifest.config.media_type!r}; a BuildKit cache cannot be read)"
            )
        if manifest.config.size > MAX_CONFIG_SIZE:
            raise CacheError(
                f"{where}: {name} has a {manifest.config.size}-byte list of records "
                f"(at most {MAX_CONFIG_SIZE})"
            )
        entries = json.loads(read_config(manifest.config))
        if not isinstance(entries, list):
            raise ValueError("the config is not a list of records")
        records = [CacheRecord.from_json(e) for e in entries]
    except (ManifestInvalid, KeyError, TypeError, ValueError, InvalidDigest) as exc:
        raise CacheError(f"{where}: bad cache manifest {name}: {exc}") from None
    layers = {layer.digest for layer in manifest.layers}
    for rec in records:
        if rec.layer is not None and rec.layer.digest not in layers:
            raise CacheError(
                f"{where}: record {rec.key} names layer {rec.layer.digest}, "
                "which the manifest does not list"
            )
    return manifest, records


def import_records(
    store: Store,
    records: Iterable[CacheRecord],
    fetch: Callable[[CachedLayer], None],
    *,
    now: float,
    parallel: int = 1,
) -> tuple[CacheRecord, ...]:
    """Put `records` into the store: first `fetch(layer)` (which stores the
    blob, verified against its digest, or raises) for every layer blob the
    store lacks, `parallel` at a time; then each record, unless the store
    already has a usable one for its key. An imported record keeps its
    `created` and counts as used `now`. Nothing is recorded if a fetch fails."""
    records = list(records)
    layers = {r.layer.digest: r.layer for r in records if r.layer is not None}
    wanted = [layers[d] for d in sorted(layers) if not store.has_blob(d)]
    if wanted:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(wanted)))) as pool:
            futures = [pool.submit(fetch, layer) for layer in wanted]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    written = []
    for rec in records:
        have = _read(store.get_json(record_key(rec.key)))
        if have is not None and (have.layer is None or store.has_blob(have.layer.digest)):
            continue
        if rec.layer is not None and not store.has_blob(rec.layer.digest):
            raise BlobUnknown(f"blob unknown: {rec.layer.digest} (vanished during the import)")
        entry = dataclasses.replace(rec, last_used=max(now, rec.created))
        store.put_json(record_key(rec.key), entry.to_json())
        written.append(entry)
    return tuple(written)
