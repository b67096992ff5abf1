"""The step cache in a registry: `--cache-to type=registry,ref=REF` and
`--cache-from type=registry,ref=REF`, as buildx names them.

The cache is the Farm cache manifest (`cache.artifact`: an OCI image manifest
with `artifactType` CACHE_ARTIFACT_TYPE, the records as its config, their
layer blobs as its layers) stored in REF's repository under REF's tag.
`skopeo inspect --raw docker://REF` shows it; `crane`/`oras` can copy it.

Exporting pushes every layer blob (HEAD first, a cross-repository mount when
the client knows another repository of the registry holds it, an upload
otherwise), then the config, then the manifest under the tag: the tag last, so
nothing the registry serves points at a blob it lacks. An export replaces the
cache REF named before, as buildx's does (a local export merges).

Importing reads the manifest (by tag or digest; a missing one is not an
error but a result with a `warning`, like a missing local directory), checks
that it is a Farm cache manifest, downloads the records and every layer blob
the store lacks, each verified against its digest (`DigestMismatch`
otherwise), and writes the records only once all their blobs are in.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from buildkit.cache.artifact import (
    CacheError,
    build_manifest,
    collect_records,
    import_records,
    parse_manifest_records,
)
from buildkit.cache.index import CachedLayer, CacheRecord
from buildkit.errors import ManifestUnknown
from buildkit.image import OCI_MANIFEST, Descriptor
from buildkit.reference import Reference, parse_reference
from buildkit.registry.client import RegistryClient
from buildkit.store.base import Store

__all__ = ["RegistryCache", "export_cache_to_registry", "import_cache_from_registry"]

PARALLEL_TRANSFERS = 4


@dataclass(frozen=True)
class RegistryCache:
    reference: str  # as used: with its tag (`latest` when none was given) or digest
    manifest: Descriptor | None  # None: there is no cache there (see `warning`)
    records: tuple[CacheRecord, ...]  # exported; or imported (written into the store)
    blobs: Mapping[str, str] = field(default_factory=dict)  # export: exists|mounted|uploaded
    warning: str = ""


def _reference(ref: str | Reference) -> Reference:
    parsed = parse_reference(ref) if isinstance(ref, str) else ref
    return parsed.with_default_tag()


def export_cache_to_registry(
    store: Store,
    keys_or_records: Iterable[str | CacheRecord],
    client: RegistryClient,
    ref: str | Reference,
) -> RegistryCache:
    """Push the records (given, or named by cache key: `BuildResult.cache_keys_for(mode)`)
    and their layer blobs to `ref`, replacing the cache there. Records whose
    blob is gone from the store are left out. A `ref` with a digest must be
    the digest of the manifest pushed (CacheError otherwise)."""
    dest = _reference(ref)
    built = build_manifest(collect_records(store, keys_or_records))
    if dest.digest and dest.digest != built.descriptor.digest:
        raise CacheError(
            f"cannot push the cache to {dest}: the reference pins {dest.digest}, "
            f"the cache manifest is {built.descriptor.digest} (use a tag)"
        )

    def push_layer(desc: Descriptor) -> tuple[str, str]:
        return desc.digest, client.push_blob(dest, desc, lambda: store.open_blob(desc.digest))

    outcomes: dict[str, str] = {}
    if built.layers:
        with ThreadPoolExecutor(max_workers=min(PARALLEL_TRANSFERS, len(built.layers))) as pool:
            for digest, outcome in pool.map(push_layer, built.layers):
                outcomes[digest] = outcome
    outcomes[built.config.digest] = client.push_blob(
        dest, built.config, lambda: io.BytesIO(built.config_data)
    )
    client.put_manifest(dest, built.data, OCI_MANIFEST)
    return RegistryCache(str(dest), built.descriptor, built.records, outcomes)


def import_cache_from_registry(
    store: Store, client: RegistryClient, ref: str | Reference, *, now: float
) -> RegistryCache:
    """Copy the cache `ref` names into `store`: every layer blob the store
    lacks, verified against its digest, then the records (a record already in
    the store whose blob is there stays as it is; the others keep `created`
    and count as used `now`). No manifest at `ref`: a result with a warning.
    CacheError if it is not a Farm cache; `DigestMismatch`/`BlobUnknown`,
    naming the blob, if one is corrupt or missing: no record is written then."""
    src = _reference(ref)
    try:
        remote = client.get_manifest(src)
    except ManifestUnknown:
        return RegistryCache(str(src), None, (), warning=f"no cache at {src} yet")
    if remote.media_type != OCI_MANIFEST:
        raise CacheError(
            f"cache {src}: {remote.digest} is a {remote.media_type}, not a Farm cache "
            "manifest (a BuildKit cache cannot be read)"
        )
    _, records = parse_manifest_records(
        remote.data,
        lambda config: client.download_blob(src, config, lambda reader: reader.read()),
        f"cache {src}",
        remote.digest,
    )

    def fetch(layer: CachedLayer) -> None:
        desc = Descriptor(layer.media_type, layer.digest, layer.size)
        client.download_blob(
            src,
            desc,
            lambda reader: store.put_blob(reader, layer.digest, media_type=layer.media_type),
        )

    written = import_records(store, records, fetch, now=now, parallel=PARALLEL_TRANSFERS)
    return RegistryCache(str(src), remote.descriptor, written)
