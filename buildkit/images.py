"""Reading and writing whole images in the store.

A tag given as `-t app:1` names repository `app` in Farm's store; Docker would
call it `docker.io/library/app:1`, and `FROM app:1` normalises to that, so
`local_repository` maps Docker Hub's `library/` names back to the short ones.
Images of other registries are pulled (`buildkit.registry.pull`) into the
blob store and remembered under the JSON records `bases/<escaped reference>`,
never as repositories, so `/v2/` does not serve them: `load_reference` looks
in the repositories first, then in those records.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from buildkit.digest import Digest
from buildkit.errors import BlobUnknown, ManifestUnknown, ReferenceFormatError
from buildkit.image import (
    INDEX_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    parse_config,
    parse_manifest_or_index,
)
from buildkit.platforms import Platform, matches
from buildkit.reference import Reference, parse_reference
from buildkit.store.base import NameUnknown, Store, put_bytes, read_blob

DOCKER_HUB = "docker.io"


def local_repository(ref: Reference) -> str:
    """The repository in Farm's store that a reference names."""
    if ref.domain == DOCKER_HUB and ref.path.startswith("library/"):
        return ref.path.removeprefix("library/")
    return ref.path if ref.domain == DOCKER_HUB else f"{ref.domain}/{ref.path}"


def split_tag(name: str) -> tuple[str, str]:
    """`-t team/app:1` → (`team/app`, `1`); a missing tag is `latest`."""
    ref = parse_reference(name)
    return local_repository(ref), ref.tag or "latest"


@dataclass(frozen=True)
class StoredImage:
    manifest_descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig


def load_image(store: Store, repo: str, ref: str, platform: Platform) -> StoredImage:
    """An image (or the `platform` entry of an index) of `repo` at tag or digest `ref`."""
    try:
        desc = store.resolve(repo, ref)
    except NameUnknown:
        raise ManifestUnknown(f"no image {repo}:{ref} in the local store") from None
    doc = parse_manifest_or_index(read_blob(store, desc.digest), desc.media_type)
    if isinstance(doc, Index) or desc.media_type in INDEX_TYPES:
        assert isinstance(doc, Index)
        desc = _platform_entry(doc, platform, f"{repo}:{ref}")
        doc = parse_manifest_or_index(read_blob(store, desc.digest), desc.media_type)
    assert isinstance(doc, Manifest)
    config = parse_config(read_blob(store, doc.config.digest))
    if config.platform.architecture != platform.architecture:
        raise ManifestUnknown(f"image {repo}:{ref} is for {config.platform}, not {platform}")
    return StoredImage(desc, doc, config)


def write_json_blob(
    store: Store, doc: Manifest | Index | ImageConfig, media_type: str
) -> Descriptor:
    """Store a manifest, index or config as a blob, linked to no repository yet."""
    return put_bytes(store, doc.to_json(), media_type=media_type)


def tag_image(
    store: Store, repo: str, tag: str, top: Descriptor, children: tuple[Descriptor, ...]
) -> None:
    """Publish a built image under `repo:tag`: the platform manifests first,
    then the index that lists them, and the tag last."""
    for desc in children:
        store.put_manifest(repo, read_blob(store, desc.digest), desc.media_type)
    if all(child.digest != top.digest for child in children):
        store.put_manifest(repo, read_blob(store, top.digest), top.media_type)
    store.link_manifest(repo, top, tag)


# ------------------------------------------------------------ pulled base images

BASES_PREFIX = "bases"
_UNSAFE_KEY_CHAR = re.compile(r"[^A-Za-z0-9.-]")
_MAX_KEY_PART = 200


def base_record_key(ref: str) -> str:
    """`bases/<escaped ref>` for a normalised reference: every character other
    than letters, digits, `.` and `-` becomes `_<hex>` (`:` → `_3a`, `/` → `_2f`),
    so the key is one flat, reversible record name; a very long reference is
    named by its sha256 instead."""
    escaped = _UNSAFE_KEY_CHAR.sub(lambda m: "".join(f"_{b:02x}" for b in m[0].encode()), ref)
    if len(escaped) > _MAX_KEY_PART:
        escaped = "_sha256_" + hashlib.sha256(ref.encode()).hexdigest()
    return f"{BASES_PREFIX}/{escaped}"


def read_base_record(store: Store, ref: str) -> dict[str, Any] | None:
    """What `ref` (normalised) resolved to when it was last pulled."""
    record = store.get_json(base_record_key(ref))
    return record if isinstance(record, dict) and record.get("reference") == ref else None


def write_base_record(
    store: Store, ref: str, top: Descriptor, platforms: dict[str, str] | None = None
) -> None:
    """Remember `ref → top` (after every blob it needs is stored: the record is
    the last thing a pull writes). `platforms` maps a platform to the manifest
    pulled for it; entries of an earlier pull of the same digest are kept."""
    old = read_base_record(store, ref)
    merged: dict[str, str] = {}
    if old and old.get("digest") == top.digest and isinstance(old.get("platforms"), dict):
        merged.update(old["platforms"])
    merged.update(platforms or {})
    store.put_json(
        base_record_key(ref),
        {
            "reference": ref,
            "digest": str(top.digest),
            "mediaType": top.media_type,
            "size": top.size,
            "platforms": dict(sorted(merged.items())),
        },
    )


def _platform_entry(index: Index, platform: Platform, label: str) -> Descriptor:
    """The first entry of `index` that runs on `platform` (`ManifestUnknown` if none)."""
    chosen = [d for d in index.manifests if d.platform and matches(platform, d.platform)]
    if not chosen:
        have = ", ".join(str(d.platform) for d in index.manifests if d.platform)
        raise ManifestUnknown(f"image {label} has no {platform} variant (it has {have})")
    return chosen[0]


def image_at(store: Store, desc: Descriptor, platform: Platform, label: str) -> StoredImage:
    """The image `desc` points to (or its index's `platform` entry), every blob
    of it present in the store (`ManifestUnknown` otherwise)."""
    try:
        doc = parse_manifest_or_index(read_blob(store, desc.digest), desc.media_type)
        if isinstance(doc, Index):
            desc = _platform_entry(doc, platform, label)
            doc = parse_manifest_or_index(read_blob(store, desc.digest), desc.media_type)
        if not isinstance(doc, Manifest):
            raise ManifestUnknown(f"image {label}: an index inside an index is not supported")
        config = parse_config(read_blob(store, doc.config.digest))
    except BlobUnknown as exc:
        raise ManifestUnknown(f"image {label} is not fully in the store: {exc}") from None
    missing = [d.digest for d in doc.layers if not d.urls and not store.has_blob(d.digest)]
    if missing:
        raise ManifestUnknown(f"image {label} is not fully in the store: layer {missing[0]}")
    if config.platform.architecture != platform.architecture:
        raise ManifestUnknown(f"image {label} is for {config.platform}, not {platform}")
    return StoredImage(desc, doc, config)


def find_local_image(store: Store, ref: Reference, platform: Platform) -> StoredImage | None:
    """The image a repository of the store holds under `ref`; None when the
    store has no such repository or tag (or the name cannot be one)."""
    repo = local_repository(ref)
    which = ref.digest or ref.tag or "latest"
    try:
        store.resolve(repo, which)
    except (NameUnknown, ManifestUnknown, ReferenceFormatError):
        return None
    return load_image(store, repo, which, platform)


def load_base_image(store: Store, ref: Reference | str, platform: Platform) -> StoredImage:
    """A pulled image, from its `bases/` record; `ManifestUnknown` if it was
    never pulled (for this platform)."""
    parsed = parse_reference(ref) if isinstance(ref, str) else ref
    name = str(parsed.with_default_tag())
    record = read_base_record(store, name)
    if record is None:
        raise ManifestUnknown(f"{name} has not been pulled")
    top = Descriptor(record["mediaType"], Digest(record["digest"]), int(record["size"]))
    return image_at(store, top, platform, name)


def load_reference(store: Store, ref: str, platform: Platform) -> StoredImage:
    """What `FROM ref` starts from: a repository of the store, else a pulled base."""
    parsed = parse_reference(ref)
    found = find_local_image(store, parsed, platform)
    return found if found is not None else load_base_image(store, parsed, platform)
