"""Pushing an image of the store to another registry.

    report = push_image(client, store, result.descriptor, result.children, "ghcr.io/o/app:1")

Order, so that nothing the registry can serve points at what it lacks: every
blob (HEAD first; a cross-repository mount when the registry is known to hold
the blob in another repository; an upload otherwise), then each platform
manifest by digest, then the index (or the one manifest) under the tag: the
tag last. Bytes are pushed exactly as stored, so digests do not change.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from buildkit.digest import Digest
from buildkit.errors import FarmError, ManifestUnknown, UserError
from buildkit.image import INDEX_TYPES, Descriptor, Manifest, parse_index, parse_manifest_or_index
from buildkit.images import BASES_PREFIX
from buildkit.reference import Reference, parse_reference
from buildkit.registry.client import RegistryClient
from buildkit.store.base import Store, read_blob

PARALLEL_UPLOADS = 4


@dataclass(frozen=True)
class PushReport:
    reference: str
    digest: Digest
    blobs: dict[str, str] = field(default_factory=dict)  # digest → exists | mounted | uploaded

    def count(self, outcome: str) -> int:
        return Counter(self.blobs.values())[outcome]


def push_image(
    client: RegistryClient,
    store: Store,
    top: Descriptor,
    children: tuple[Descriptor, ...],
    dest_ref: str | Reference,
    *,
    progress: Callable[[str], None] = lambda text: None,
) -> PushReport:
    """Push `top` (an index over `children`, or one manifest) to `dest_ref`."""
    dest = parse_reference(dest_ref) if isinstance(dest_ref, str) else dest_ref
    if dest.digest and dest.digest != top.digest:
        raise UserError(f"cannot push {top.digest} to {dest}: the reference pins another digest")
    if not dest.digest:
        dest = dest.with_default_tag()
    if top.media_type in INDEX_TYPES and not children:
        children = parse_index(read_blob(store, top.digest)).manifests
    manifests = children if top.media_type in INDEX_TYPES else (top,)
    blobs: dict[str, Descriptor] = {}
    for desc in manifests:
        doc = parse_manifest_or_index(read_blob(store, desc.digest), desc.media_type)
        if not isinstance(doc, Manifest):
            raise ManifestUnknown(f"push {dest}: {desc.digest} is not an image manifest")
        for blob in (doc.config, *doc.layers):
            if not blob.urls:
                blobs.setdefault(blob.digest, blob)
    _learn_base_locations(client, store, dest)

    def one(blob: Descriptor) -> tuple[str, str]:
        outcome = client.push_blob(dest, blob, lambda: store.open_blob(blob.digest))
        progress(f"{outcome} {blob.digest} ({blob.size} bytes)")
        return blob.digest, outcome

    outcomes: dict[str, str] = {}
    if blobs:
        with ThreadPoolExecutor(max_workers=min(PARALLEL_UPLOADS, len(blobs))) as pool:
            for future in [pool.submit(one, b) for b in blobs.values()]:
                digest, outcome = future.result()
                outcomes[digest] = outcome
    if top.media_type in INDEX_TYPES:
        for child in children:
            client.put_manifest(
                Reference(dest.domain, dest.path, digest=child.digest),
                read_blob(store, child.digest),
                child.media_type,
            )
    digest = client.put_manifest(dest, read_blob(store, top.digest), top.media_type)
    progress(f"pushed {dest}@{digest}")
    return PushReport(str(dest), digest, outcomes)


def _learn_base_locations(client: RegistryClient, store: Store, dest: Reference) -> None:
    """Bases pulled from the destination registry hold their blobs there: tell
    the client, so a push of an image built on them mounts instead of uploading."""
    for key in store.list_json(BASES_PREFIX):
        record = store.get_json(key)
        if not isinstance(record, dict):
            continue
        with contextlib.suppress(FarmError, ValueError, KeyError, TypeError):
            ref = parse_reference(record["reference"])
            if ref.domain != dest.domain or ref.path == dest.path:
                continue
            digests = [record["digest"], *record.get("platforms", {}).values()]
            for digest in digests:
                if not store.has_blob(digest):
                    continue
                doc = parse_manifest_or_index(read_blob(store, digest))
                if isinstance(doc, Manifest):
                    for blob in (doc.config, *doc.layers):
                        client.note_blob(ref, blob.digest)
