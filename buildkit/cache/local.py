"""The step cache in a directory: `--cache-to type=local,dest=DIR` and
`--cache-from type=local,src=DIR`, as buildx names them.

The directory is an OCI image layout:

    DIR/oci-layout                {"imageLayoutVersion":"1.0.0"}
    DIR/index.json                an OCI index with one manifest: the cache
    DIR/blobs/sha256/<hex>        the manifest, its config and the layer blobs

The cache manifest is an OCI artifact (`artifactType` CACHE_ARTIFACT_TYPE)
whose config blob is the JSON list of the cache records (as `cache.index`
stores them) and whose layers are the records' layer blobs.

Exporting into a directory that already holds a cache merges the two (a key
in both keeps the record used last). Blobs are written first, each by an
atomic rename, `index.json` last: a reader sees the old cache or the new one.
Exporters on one host take turns (an flock on `DIR/.farm-cache.lock`).
Importing verifies every blob against its digest while copying it into the
store, and writes the records only once all their blobs are in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from buildkit.cache.index import CacheRecord, record_key
from buildkit.digest import CHUNK, Digest, DigestWriter, InvalidDigest
from buildkit.errors import BlobUnknown, DigestMismatch, UserError
from buildkit.image import (
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    ManifestInvalid,
    canonical_json,
    parse_index,
    parse_manifest,
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

CACHE_ARTIFACT_TYPE = "application/vnd.farm.cache.v1+json"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
LOCK_NAME = ".farm-cache.lock"


class CacheError(UserError):
    """A --cache-to/--cache-from that Farm cannot use: a bad option, a
    directory that holds no cache, or a blob that is not what it claims."""


# ------------------------------------------------------------ options


@dataclass(frozen=True)
class CacheOption:
    type: str  # local
    dest: str = ""  # --cache-to
    src: str = ""  # --cache-from
    mode: str = "min"  # min: the result's layers; max: every step's
    ignore_error: bool = False


_UNSUPPORTED = ("inline", "gha", "s3", "azblob")


def parse_cache_option(text: str, *, flag: str = "") -> CacheOption:
    """`type=local,dest=DIR,mode=max` as buildx reads `--cache-to` and
    `--cache-from`. `flag` (`--cache-to` or `--cache-from`) says which path
    is required; without it, one of `dest` and `src` is."""
    name = flag or "cache option"
    if "=" not in text:  # buildx: a bare reference is a registry cache
        raise CacheError(
            f"{name} {text!r}: registry caches are not supported yet (they come with the "
            "registry client); use type=local,dest=DIR or type=local,src=DIR"
        )
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise CacheError(f"invalid {name} {text!r}: {part!r} is not key=value")
        fields[key.strip().lower()] = value.strip()
    kind = fields.pop("type", "")
    if kind == "registry":
        raise CacheError(
            f"{name} type=registry is not supported yet (it comes with the registry client)"
        )
    if kind in _UNSUPPORTED:
        raise CacheError(f"{name} type={kind} is not supported by Farm: use type=local")
    if kind != "local":
        raise CacheError(f"invalid {name} {text!r}: type must be local (got {kind!r})")
    opt = CacheOption(
        type=kind,
        dest=fields.pop("dest", ""),
        src=fields.pop("src", ""),
        mode=fields.pop("mode", "min"),
        ignore_error=fields.pop("ignore-error", "false").lower() in ("true", "1"),
    )
    if opt.mode not in ("min", "max"):
        raise CacheError(f"invalid {name} mode {opt.mode!r}: min or max")
    if fields:
        raise CacheError(f"unknown {name} options: {', '.join(sorted(fields))}")
    wanted = {"--cache-to": ("dest",), "--cache-from": ("src",)}.get(flag, ("dest", "src"))
    if not any(getattr(opt, w) for w in wanted):
        raise CacheError(f"{name} type=local needs {' or '.join(w + '=DIR' for w in wanted)}")
    return opt


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
    try:
        manifest = parse_manifest(_read_verified(root, desc))
        if manifest.artifact_type != CACHE_ARTIFACT_TYPE:
            raise CacheError(f"cache at {root}: {desc.digest} is not a Farm cache manifest")
        entries = json.loads(_read_verified(root, manifest.config))
        if not isinstance(entries, list):
            raise ValueError("the config is not a list of records")
        records = [CacheRecord.from_json(e) for e in entries]
    except (ManifestInvalid, KeyError, TypeError, ValueError, InvalidDigest) as exc:
        raise CacheError(f"cache at {root}: bad cache manifest {desc.digest}: {exc}") from None
    layers = {layer.digest: layer for layer in manifest.layers}
    for rec in records:
        if rec.layer is not None and rec.layer.digest not in layers:
            raise CacheError(
                f"cache at {root}: record {rec.key} names layer {rec.layer.digest}, "
                "which the manifest does not list"
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


def _records(store: Store, keys_or_records: Iterable[str | CacheRecord]) -> list[CacheRecord]:
    found: dict[str, CacheRecord] = {}
    for item in keys_or_records:
        if isinstance(item, CacheRecord):
            rec: CacheRecord | None = item
        else:
            data = store.get_json(record_key(item))
            try:
                rec = None if data is None else CacheRecord.from_json(data)
            except (KeyError, TypeError, ValueError, InvalidDigest):
                rec = None
        if rec is not None and (rec.layer is None or store.has_blob(rec.layer.digest)):
            found[rec.key] = rec  # a record whose blob is gone is a miss: not exported
    return list(found.values())


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
    records = _records(store, keys_or_records)
    with _locked(dest):
        old = _load(dest)
        merged = {r.key: r for r in (old[1] if old else [])}
        for rec in records:
            merged[rec.key] = _newer(rec, merged[rec.key]) if rec.key in merged else rec
        layers: dict[str, Descriptor] = {}
        for rec in sorted(merged.values(), key=lambda r: r.key):
            layer = rec.layer
            if layer is None or layer.digest in layers:
                continue
            if _copy_from_store(store, dest, layer.digest, layer.size):
                layers[layer.digest] = Descriptor(layer.media_type, layer.digest, layer.size)
            else:
                del merged[rec.key]  # its blob is neither here nor in the store
        entries = [merged[k].to_json() for k in sorted(merged)]
        config_data = canonical_json(entries)
        config = Descriptor(CACHE_ARTIFACT_TYPE, Digest.of(config_data), len(config_data))
        manifest = Manifest(
            config=config,
            layers=tuple(layers[d] for d in sorted(layers)),
            artifact_type=CACHE_ARTIFACT_TYPE,
        )
        manifest_data = manifest.to_json()
        desc = Descriptor(
            OCI_MANIFEST,
            Digest.of(manifest_data),
            len(manifest_data),
            artifact_type=CACHE_ARTIFACT_TYPE,
        )
        for d, data in ((config.digest, config_data), (desc.digest, manifest_data)):
            _write_atomic(_blob_path(dest, d), [data])
        _write_atomic(dest / "oci-layout", [OCI_LAYOUT])
        index = Index(manifests=(desc,), media_type=OCI_INDEX)
        _write_atomic(dest / "index.json", [index.to_json()])
    return LocalCache(desc, tuple(merged[k] for k in sorted(merged)))


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
    layers = {r.layer.digest: r.layer for r in records if r.layer is not None}
    for digest in sorted(layers):
        path = _blob_path(src, digest)
        try:
            with open(path, "rb") as f:
                got = store.put_blob(f, Digest(digest), media_type=layers[digest].media_type)
        except FileNotFoundError:
            raise CacheError(f"cache at {src}: blob {digest} is missing ({path})") from None
        except DigestMismatch:
            raise CacheError(
                f"cache at {src}: blob {digest} is corrupt ({path}): its content has another digest"
            ) from None
        if got.size != layers[digest].size:
            raise CacheError(
                f"cache at {src}: blob {digest} has {got.size} bytes, its record says "
                f"{layers[digest].size}"
            )
    written = []
    for rec in records:
        if _usable(store, store.get_json(record_key(rec.key))):
            continue
        if rec.layer is not None and not store.has_blob(rec.layer.digest):
            raise BlobUnknown(f"blob unknown: {rec.layer.digest} (vanished during the import)")
        entry = dataclasses.replace(rec, last_used=max(now, rec.created))
        store.put_json(record_key(rec.key), entry.to_json())
        written.append(entry)
    return LocalCache(desc, tuple(written))


def _usable(store: Store, data: Any) -> bool:
    if data is None:
        return False
    try:
        rec = CacheRecord.from_json(data)
    except (KeyError, TypeError, ValueError, InvalidDigest):
        return False
    return rec.layer is None or store.has_blob(rec.layer.digest)
