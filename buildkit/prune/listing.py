"""Reading a store into the `StoreListing` a plan is made from.

`list_roots` collects the digests named by tags, revision and `_layers` links
and pulled bases' records; `list_store` adds every blob's size and mtime and,
for blobs that are manifests or indexes, what they refer to. The private
`_read_small_json` and `_manifest_children` serve the re-checks too.
"""

from __future__ import annotations

import contextlib
import re

from buildkit.cache.index import list_records
from buildkit.digest import Digest
from buildkit.errors import BlobUnknown, RegistryError, StorageError
from buildkit.image import Index, ManifestInvalid, parse_manifest_or_index
from buildkit.prune.plan import BlobInfo, StoreListing
from buildkit.store.base import NameUnknown, Store

BASES_PREFIX = "bases"
_MAX_MANIFEST = 4 << 20  # blobs larger than this are not read as manifests
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def _manifest_children(data: bytes) -> tuple[str, ...] | None:
    try:
        doc = parse_manifest_or_index(data)
    except (ManifestInvalid, ValueError, UnicodeDecodeError):
        return None
    subject = (doc.subject.digest,) if doc.subject is not None else ()
    if isinstance(doc, Index):
        return (*(m.digest for m in doc.manifests), *subject)
    return (doc.config.digest, *(layer.digest for layer in doc.layers), *subject)


def _read_small_json(store: Store, digest: str, size: int) -> bytes | None:
    if size > _MAX_MANIFEST:
        return None
    try:
        with store.open_blob(Digest(digest)) as f:
            if f.read(1) != b"{":
                return None
            return b"{" + f.read()
    except BlobUnknown:
        return None


def list_roots(store: Store) -> set[str]:
    """Digests named by tags, revision links, `_layers` links and base records."""
    roots: set[str] = set()
    for repo in store.repositories():
        with contextlib.suppress(NameUnknown):
            roots.update(store.revisions(repo))
            roots.update(store.linked_blobs(repo))
            for tag in store.tags(repo):
                with contextlib.suppress(RegistryError, StorageError):
                    roots.add(store.resolve(repo, tag).digest)
    for key in store.list_json(BASES_PREFIX):
        # Whatever shape a base's record has, every digest in it is kept.
        roots.update(_DIGEST_RE.findall(repr(store.get_json(key))))
    return roots


def list_store(store: Store) -> StoreListing:
    blobs: dict[str, BlobInfo] = {}
    children: dict[str, tuple[str, ...]] = {}
    for digest in store.list_blobs():
        with contextlib.suppress(BlobUnknown):
            size, mtime = store.blob_size(digest), store.blob_mtime(digest)
            blobs[digest] = BlobInfo(size, mtime)
            data = _read_small_json(store, digest, size)
            found = _manifest_children(data) if data is not None else None
            if found is not None:
                children[digest] = found
    return StoreListing(
        roots=frozenset(list_roots(store)),
        children=children,
        records=tuple(list_records(store)),
        blobs=blobs,
    )
