"""Reading and writing whole images in the store.

A tag given as `-t app:1` names repository `app` in Farm's store; Docker would
call it `docker.io/library/app:1`, and `FROM app:1` normalises to that, so
`local_repository` maps Docker Hub's `library/` names back to the short ones.
Images of other registries are not in the store until the registry issue
brings pulls.
"""

from __future__ import annotations

from dataclasses import dataclass

from buildkit.errors import ManifestUnknown
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
        chosen = [d for d in doc.manifests if d.platform and matches(platform, d.platform)]
        if not chosen:
            have = ", ".join(str(d.platform) for d in doc.manifests if d.platform)
            raise ManifestUnknown(f"image {repo}:{ref} has no {platform} variant (it has {have})")
        desc = chosen[0]
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
