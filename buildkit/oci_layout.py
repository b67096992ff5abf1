"""OCI image layouts: `--output type=oci,dest=out.tar` (an archive) and
`type=oci,tar=false` (a directory), laid out as BuildKit lays them out.

    oci-layout           {"imageLayoutVersion":"1.0.0"}
    index.json           ONE descriptor: of the image index (multi-platform) or of
                         the manifest (one platform), annotated with
                         org.opencontainers.image.ref.name (the tag) and
                         io.containerd.image.name (the full name)
    blobs/sha256/<hex>   every blob the target reaches

The archive is deterministic: entries `oci-layout`, `blobs/`, `blobs/sha256/`,
the blobs by digest, then `index.json`; mode 0644 (0755 for directories), owner
0:0, no user or group names, mtime `source_date_epoch` (0 by default), ustar
headers, two zero blocks at the end.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from buildkit.digest import CHUNK, Digest
from buildkit.errors import BlobUnknown, StorageError
from buildkit.image import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    Index,
    Manifest,
    canonical_json,
    parse_index,
    parse_manifest,
)

LAYOUT_FILE = canonical_json({"imageLayoutVersion": "1.0.0"})


class BlobSource(Protocol):
    """What writing a layout needs from a store (every `Store` is one)."""

    def open_blob(self, digest: Digest) -> BinaryIO: ...

    def blob_size(self, digest: Digest) -> int: ...


def _read(source: BlobSource, digest: Digest) -> bytes:
    with source.open_blob(digest) as f:
        return f.read()


def collect_blobs(source: BlobSource, target: Descriptor) -> dict[Digest, Descriptor]:
    """Every descriptor reachable from `target` (itself included), by digest.

    Blobs a manifest lists with `urls` (non-distributable layers) are left out
    when the source does not hold them, as registries leave them out."""
    found: dict[Digest, Descriptor] = {}
    todo = [target]
    while todo:
        desc = todo.pop()
        if desc.digest in found:
            continue
        try:
            size = source.blob_size(desc.digest)
        except BlobUnknown:
            if desc.urls:
                continue
            raise
        if size != desc.size:
            raise StorageError(
                f"blob {desc.digest}: {size} bytes stored, descriptor says {desc.size}"
            )
        found[desc.digest] = desc
        children: list[Descriptor] = []
        if desc.media_type in INDEX_TYPES:
            index: Index = parse_index(_read(source, desc.digest))
            children.extend(index.manifests)
            if index.subject is not None:
                children.append(index.subject)
        elif desc.media_type in MANIFEST_TYPES:
            manifest: Manifest = parse_manifest(_read(source, desc.digest))
            children.extend((manifest.config, *manifest.layers))
        todo.extend(reversed(children))
    return found


def ref_name(name: str) -> str:
    """The tag of an image name (`docker.io/library/app:1.0` → `1.0`); `latest`
    when it has none; empty for a name pinned by digest only."""
    if "@" in name:
        name = name.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        return last.rsplit(":", 1)[1] if ":" in last else ""
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def index_json(target: Descriptor, name: str | None = None) -> bytes:
    """The layout's `index.json`: one descriptor of `target`, named if `name`."""
    entry = target
    if name:
        tag = ref_name(name)
        extra = {ANNOTATION_CONTAINERD_NAME: name}
        if tag:
            extra[ANNOTATION_REF_NAME] = tag
        entry = target.with_annotations(**extra)
    return Index(manifests=(entry,)).to_json()


def _info(name: str, mtime: int, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, mtime
    info.mode = 0o755 if directory else 0o644
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
    return info


def _copy(source: BlobSource, digest: Digest, size: int, out: IO[bytes]) -> None:
    left = size
    with source.open_blob(digest) as f:
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise StorageError(f"blob {digest} is shorter than {size} bytes")
            out.write(chunk)
            left -= len(chunk)


def write_oci_archive(
    source: BlobSource,
    target: Descriptor,
    out: IO[bytes],
    *,
    name: str | None = None,
    source_date_epoch: int = 0,
) -> Descriptor:
    """Write `target` and everything it reaches as an OCI archive to `out`;
    return the descriptor `index.json` holds."""
    blobs = collect_blobs(source, target)
    index = index_json(target, name)
    mtime = source_date_epoch

    def header(info: tarfile.TarInfo) -> None:
        out.write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))

    def pad(size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            out.write(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    header(_info("oci-layout", mtime, len(LAYOUT_FILE)))
    out.write(LAYOUT_FILE)
    pad(len(LAYOUT_FILE))
    header(_info("blobs", mtime, directory=True))
    header(_info("blobs/sha256", mtime, directory=True))
    for digest in sorted(blobs):
        size = blobs[digest].size
        header(_info(f"blobs/sha256/{digest.hex}", mtime, size))
        _copy(source, digest, size, out)
        pad(size)
    header(_info("index.json", mtime, len(index)))
    out.write(index)
    pad(len(index))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return parse_index(index).manifests[0]


def write_oci_layout(
    source: BlobSource, target: Descriptor, dest: Path, *, name: str | None = None
) -> Descriptor:
    """Write `target` as an OCI layout directory at `dest` (created if needed;
    blobs already there are kept). `index.json` is replaced, not merged."""
    blobs = collect_blobs(source, target)
    index = index_json(target, name)
    blob_dir = dest / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for digest, desc in sorted(blobs.items()):
        path = blob_dir / digest.hex
        if path.is_file() and path.stat().st_size == desc.size:
            continue
        temp = path.with_name(f".{digest.hex}.{os.getpid()}.tmp")
        with open(temp, "wb") as f:
            _copy(source, digest, desc.size, f)
        os.replace(temp, path)
    (dest / "oci-layout").write_bytes(LAYOUT_FILE)
    temp = dest / f".index.json.{os.getpid()}.tmp"
    temp.write_bytes(index)
    os.replace(temp, dest / "index.json")
    return parse_index(index).manifests[0]
