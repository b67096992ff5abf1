"""Pulling an image of another registry into the store.

    image = pull_image(client, "127.0.0.1:5000/busybox:1", Platform("linux", "amd64"), store)

The tag is resolved (an index to the platform's manifest), the config and
layers not yet in the blob store are downloaded (each verified against its
digest), then the manifest and index bytes are stored as blobs, and last
`reference → digest` is recorded under `bases/` (never as a repository:
`/v2/` does not serve other registries' images). A recorded reference is
used without asking the registry, unless `refresh` (`farm build --pull`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from buildkit.errors import ManifestUnknown
from buildkit.image import Descriptor, Index, Manifest, parse_config, parse_index, parse_manifest
from buildkit.images import (
    StoredImage,
    load_base_image,
    read_base_record,
    write_base_record,
)
from buildkit.platforms import Platform, matches
from buildkit.reference import Reference, parse_reference
from buildkit.registry.client import RegistryClient, RemoteManifest
from buildkit.store.base import Store, put_bytes, read_blob

PARALLEL_DOWNLOADS = 4


def choose_platform(index: Index, platform: Platform, name: str) -> Descriptor:
    """The index entry for `platform` (exact variant first), or `ManifestUnknown`
    naming the platforms the index has."""
    candidates = [d for d in index.manifests if d.platform and matches(platform, d.platform)]
    exact = [d for d in candidates if d.platform == platform]
    if exact or candidates:
        return (exact or candidates)[0]
    have = sorted({str(d.platform) for d in index.manifests if d.platform} - {"unknown/unknown"})
    raise ManifestUnknown(
        f"{name}: no image for {platform} (available: {', '.join(have) or 'none'})"
    )


def pull_image(
    client: RegistryClient,
    ref: str | Reference,
    platform: Platform,
    store: Store,
    *,
    refresh: bool = False,
    progress: Callable[[str], None] = lambda text: None,
) -> StoredImage:
    """`ref`'s image for `platform`, in the store and recorded under `bases/`."""
    parsed = (parse_reference(ref) if isinstance(ref, str) else ref).with_default_tag()
    name = str(parsed)
    record = read_base_record(store, name)
    if record is not None and (not refresh or parsed.digest):
        with contextlib.suppress(ManifestUnknown):
            return load_base_image(store, parsed, platform)
    if record is not None and refresh:
        # Unchanged upstream: a HEAD is enough.
        head = client.head_manifest(parsed)
        if head.digest == record.get("digest"):
            with contextlib.suppress(ManifestUnknown):
                return load_base_image(store, parsed, platform)
    progress(f"resolve {name}")
    top = client.get_manifest(parsed)
    chosen = top
    if top.is_index:
        entry = choose_platform(parse_index(top.data), platform, name)
        chosen = client.get_manifest(Reference(parsed.domain, parsed.path, digest=entry.digest))
        if chosen.is_index:
            raise ManifestUnknown(f"{name}: an index inside an index is not supported")
    manifest = parse_manifest(chosen.data)
    _fetch_config(client, parsed, manifest, platform, store, name, top.is_index)
    _fetch_layers(client, parsed, manifest, store, progress)
    # The manifests after what they point to; the record last.
    put_bytes(store, chosen.data, chosen.digest, media_type=chosen.media_type)
    if top is not chosen:
        put_bytes(store, top.data, top.digest, media_type=top.media_type)
    write_base_record(store, name, top.descriptor, {str(platform): str(chosen.digest)})
    return load_base_image(store, parsed, platform)


def _fetch_config(
    client: RegistryClient,
    ref: Reference,
    manifest: Manifest,
    platform: Platform,
    store: Store,
    name: str,
    from_index: bool,
) -> None:
    blob = manifest.config
    if not store.has_blob(blob.digest):
        _download(client, ref, blob, store)
    config = parse_config(read_blob(store, blob.digest))
    if not from_index and config.platform.architecture != platform.architecture:
        raise ManifestUnknown(
            f"{name}: the image is for {config.platform}, not {platform} (it has no index of platforms)"
        )


def _fetch_layers(
    client: RegistryClient,
    ref: Reference,
    manifest: Manifest,
    store: Store,
    progress: Callable[[str], None],
) -> None:
    # Foreign layers (with `urls`, Windows bases) are not distributed by registries.
    wanted = [d for d in manifest.layers if not d.urls and not store.has_blob(d.digest)]
    for d in manifest.layers:
        if store.has_blob(d.digest):
            client.note_blob(ref, d.digest)
    if not wanted:
        return

    def one(desc: Descriptor) -> None:
        progress(f"pull {desc.digest} ({desc.size} bytes)")
        _download(client, ref, desc, store)

    with ThreadPoolExecutor(max_workers=min(PARALLEL_DOWNLOADS, len(wanted))) as pool:
        for future in [pool.submit(one, d) for d in wanted]:
            future.result()


def _download(client: RegistryClient, ref: Reference, desc: Descriptor, store: Store) -> None:
    client.download_blob(
        ref, desc, lambda reader: store.put_blob(reader, desc.digest, media_type=desc.media_type)
    )


__all__ = ["RemoteManifest", "choose_platform", "pull_image"]
