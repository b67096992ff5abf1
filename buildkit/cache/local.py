"""The step cache in a directory: `--cache-to type=local,dest=DIR` and
`--cache-from type=local,src=DIR`, as buildx names them.

The directory is an OCI image layout:

    DIR/oci-layout                {"imageLayoutVersion":"1.0.0"}
    DIR/index.json                an OCI index with one manifest: the cache
    DIR/blobs/sha256/<hex>        the manifest, its config and the layer blobs

The cache manifest is an OCI artifact (`artifactType` CACHE_ARTIFACT_TYPE)
whose config blob is the JSON list of the cache records (as `cache.index`
stores them) and whose layers are the records' layer blobs: `cache.artifact`
builds and reads it, for this directory and for a registry (`cache.registry`).

Exporting into a directory that already holds a cache merges the two (a key
in both keeps the record used last). Blobs are written first, each by an
atomic rename, `index.json` last: a reader sees the old cache or the new one.
Exporters on one host take turns (an flock on `DIR/.farm-cache.lock`).
Importing verifies every blob against its digest while copying it into the
store, and writes the records only once all their blobs are in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from buildkit.cache.artifact import (
    CACHE_ARTIFACT_TYPE,
    CacheError,
    build_manifest,
    collect_records,
    import_records,
    parse_manifest_records,
)
from buildkit.cache.index import CachedLayer, CacheRecord
from buildkit.cache.options import CacheOption, parse_cache_option
from buildkit.digest import CHUNK, Digest, DigestWriter
from buildkit.errors import BlobUnknown, DigestMismatch
from buildkit.image import (
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    ManifestInvalid,
    parse_index,
)
from buildkit.store.base import Store

__all__ = [
    "CACHE_ARTIFACT_TYPE",
    "CacheError",
    "CacheOption",
    "LocalCache",
    "export_cache",
    "import_cache",
    "parse_cache_option",
]

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
LOCK_NAME = ".farm-cache.lock"


# ------------------------------------------------------------ the layout


@dataclass(frozen=True)
class LocalCache:
    manifest: Descriptor
    records: tuple[CacheRecord, ...]


def _blob_path(root: Path, digest: str) -> Path:
    d = Digest(digest)
    if d.algorithm != "sha256":
        raise CacheError(f"cache at {root}: unsupported digest {digest}")
    return root / "blobs" / "sha256" / d.hex


def _write_atomic(final: Path, chunks: Iterable[bytes]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def _chunks(f: BinaryIO, hasher: DigestWriter) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        hasher.update(chunk)
        yield chunk


def _read_verified(root: Path, desc: Descriptor) -> bytes:
    path = _blob_path(root, desc.digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheError(f"cache at {root}: blob {desc.digest} is missing ({path})") from None
    if Digest.of(data) != desc.digest:
        raise CacheError(f"cache at {root}: blob {desc.digest} is corrupt ({path})")
    return data


def _load(root: Path) -> tuple[Descriptor, list[CacheRecord]] | None:
    """The cache in `root`, None if there is none; CacheError if it is damaged."""
    try:
        index = parse_index((root / "index.json").read_bytes())
    except FileNotFoundError:
        return None
    except (ManifestInvalid, ValueError) as exc:
        raise CacheError(f"cache at {root}: bad index.json: {exc}") from None
    found = [m for m in index.manifests if m.artifact_type == CACHE_ARTIFACT_TYPE]
    found = found or [m for m in index.manifests if m.media_type == OCI_MANIFEST]
    if not found:
        raise CacheError(f"cache at {root}: index.json lists no Farm cache manifest")
    desc = found[0]
    _, records = parse_manifest_records(
        _read_verified(root, desc),
        lambda config: _read_verified(root, config),
        f"cache at {root}",
        desc.digest,
    )
    return desc, records


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------ export


def _copy_from_store(store: Store, root: Path, digest: Digest, size: int) -> bool:
    """Make sure `root` has the blob; False if neither it nor the store has it."""
    path = _blob_path(root, digest)
    if path.is_file() and path.stat().st_size == size:
        return True  # written by an earlier export (and verified on import)
    hasher = DigestWriter()
    try:
        with store.open_blob(digest) as f:
            _write_atomic(path, _chunks(f, hasher))
    except BlobUnknown:
        return False
    if hasher.digest != digest:
        path.unlink()
        raise DigestMismatch(f"store blob {digest} has digest {hasher.digest}")
    return True


def _newer(a: CacheRecord, b: CacheRecord) -> CacheRecord:
    return a if (a.last_used, a.created) >= (b.last_used, b.created) else b


def export_cache(
    store: Store, keys_or_records: Iterable[str | CacheRecord], dest: Path
) -> LocalCache:
    """Write the records (given, or named by cache key) and their layer blobs to
    `dest`, merged with the cache already there. Records whose blob is gone
    from the store are left out."""
    dest = Path(dest)
    records = collect_records(store, keys_or_records)
    with _locked(dest):
        old = _load(dest)
        merged = {r.key: r for r in (old[1] if old else [])}
        for rec in records:
            merged[rec.key] = _newer(rec, merged[rec.key]) if rec.key in merged else rec
        built = build_manifest(
            merged.values(),  # a record whose blob is neither here nor in the store is left out
            keep=lambda layer: _copy_from_store(store, dest, layer.digest, layer.size),
        )
        for desc, data in ((built.config, built.config_data), (built.descriptor, built.data)):
            _write_atomic(_blob_path(dest, desc.digest), [data])
        _write_atomic(dest / "oci-layout", [OCI_LAYOUT])
        index = Index(manifests=(built.descriptor,), media_type=OCI_INDEX)
        _write_atomic(dest / "index.json", [index.to_json()])
    return LocalCache(built.descriptor, built.records)


# ------------------------------------------------------------ import


def import_cache(store: Store, src: Path, *, now: float) -> LocalCache:
    """Copy the cache in `src` into `store`: every layer blob, checked against
    its digest, then the records (a record already in the store whose blob is
    there stays as it is). An imported record keeps its `created` and counts
    as used `now`. CacheError, naming the blob, if one is missing or corrupt;
    no record is written then."""
    src = Path(src)
    loaded = _load(src)
    if loaded is None:
        raise CacheError(f"no cache at {src}: {src / 'index.json'} does not exist")
    desc, records = loaded

    def fetch(layer: CachedLayer) -> None:
        path = _blob_path(src, layer.digest)
        try:
            with open(path, "rb") as f:
                got = store.put_blob(f, layer.digest, media_type=layer.media_type)
        except FileNotFoundError:
            raise CacheError(f"cache at {src}: blob {layer.digest} is missing ({path})") from None
        except DigestMismatch:
            raise CacheError(
                f"cache at {src}: blob {layer.digest} is corrupt ({path}): "
                "its content has another digest"
            ) from None
        if got.size != layer.size:
            raise CacheError(
                f"cache at {src}: blob {layer.digest} has {got.size} bytes, its record says "
                f"{layer.size}"
            )

    return LocalCache(desc, import_records(store, records, fetch, now=now))
