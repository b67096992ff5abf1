"""The content store: blobs by digest plus repository links, in the layout of
CNCF Distribution's storage drivers (see DESIGN.md, "Storage layout"), and a
small JSON-object space for Farm's own records under `<root>/farm/`.

Every backend keeps the same promises:

- a blob is stored only under its true digest (`DigestMismatch` otherwise, and
  nothing is left behind); writing a blob that exists is a no-op;
- a blob is written before anything links to it, a tag's `index/` link before
  its `current/link`; nothing half written is reachable;
- missing things raise `BlobUnknown`, `ManifestUnknown` or `NameUnknown`;
- repository names follow the OCI distribution grammar and tags
  `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (`ReferenceFormatError` otherwise).
"""

from __future__ import annotations

import io
import json
import re
from typing import Any, BinaryIO, Protocol, runtime_checkable

from buildkit.digest import Digest
from buildkit.errors import BlobUnknown, ManifestUnknown, ReferenceFormatError, RegistryError
from buildkit.image import Descriptor, Index, ManifestInvalid, parse_manifest_or_index

OCTET_STREAM = "application/octet-stream"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_KEY_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
MAX_REPOSITORY_LENGTH = 255


class NameUnknown(RegistryError):
    """A repository the store has never seen."""

    retryable = False


def validate_repository(name: str) -> str:
    if len(name) > MAX_REPOSITORY_LENGTH or not REPOSITORY_RE.fullmatch(name):
        raise ReferenceFormatError(
            f"invalid repository name {name!r}: lowercase letters, digits and separators "
            "(., _, __, -) between them, path components joined by /, at most 255 characters"
        )
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise ReferenceFormatError(
            f"invalid tag {tag!r}: up to 128 letters, digits, _, . and -, not starting with . or -"
        )
    return tag


def validate_key(key: str) -> tuple[str, ...]:
    """A JSON record key, `builds/<id>`: `/`-separated names of [A-Za-z0-9._-]."""
    parts = tuple(key.split("/"))
    if not all(_KEY_PART_RE.fullmatch(p) for p in parts):
        raise ValueError(f"invalid record key {key!r}")
    return parts


@runtime_checkable
class Store(Protocol):
    """Content-addressed blobs plus repository links, in the registry:2 layout."""

    # ---- blobs
    def has_blob(self, digest: Digest) -> bool: ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A reader of the blob (the caller closes it); `BlobUnknown` if missing."""
        ...

    def blob_size(self, digest: Digest) -> int: ...

    def put_blob(
        self, data: BinaryIO, expected: Digest | None = None, *, media_type: str = OCTET_STREAM
    ) -> Descriptor:
        """Store the stream's bytes; verify them against `expected` if given (when
        `expected` is already stored, the stream is not read)."""
        ...

    def list_blobs(self) -> list[Digest]:
        """Every stored blob, in digest order (for the garbage collector)."""
        ...

    def blob_mtime(self, digest: Digest) -> float:
        """When the blob was stored (seconds since the epoch); `BlobUnknown` if missing."""
        ...

    def delete_blob(self, digest: Digest) -> bool:
        """Remove a blob; False when it was not there. Links to it are left as they
        are (the garbage collector only removes what nothing links to)."""
        ...

    # ---- repositories
    def link_blob(self, repo: str, digest: Digest) -> None:
        """Make an existing blob part of `repo` (its `_layers` link)."""
        ...

    def blob_linked(self, repo: str, digest: Digest) -> bool: ...

    def put_manifest(self, repo: str, data: bytes, media_type: str) -> Descriptor:
        """Store manifest bytes as they are and link the revision (no tag), after
        linking its blobs into `repo` (see `link_references`)."""
        ...

    def link_manifest(self, repo: str, desc: Descriptor, tag: str | None = None) -> None:
        """Link a stored manifest blob as a revision of `repo`, then move `tag` to it."""
        ...

    def resolve(self, repo: str, ref: str) -> Descriptor:
        """A tag or a digest of `repo` to its manifest's descriptor."""
        ...

    def tags(self, repo: str) -> list[str]: ...

    def revisions(self, repo: str) -> list[Digest]:
        """The manifests linked as revisions of `repo` (served by digest), in order."""
        ...

    def linked_blobs(self, repo: str) -> list[Digest]:
        """The blobs linked into `repo` (its `_layers` links), in order."""
        ...

    def repositories(self) -> list[str]: ...

    def delete_tag(self, repo: str, tag: str) -> None: ...

    def delete_manifest(self, repo: str, digest: Digest) -> list[str]:
        """Remove a revision of `repo` and every tag pointing to it (as registry:2's
        manifest DELETE does); return those tags. The blob itself stays (the
        garbage collector's). `ManifestUnknown`/`NameUnknown` when not there."""
        ...

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        """Remove the blob's `_layers` link from `repo` (a registry blob DELETE);
        False when it was not linked. The blob itself stays."""
        ...

    # ---- Farm's own records (`<root>/farm/<key>.json`)
    def get_json(self, key: str) -> Any | None: ...

    def put_json(self, key: str, value: Any) -> None: ...

    def list_json(self, prefix: str) -> list[str]:
        """Keys of the records directly under `prefix` (`builds` → `builds/<id>`)."""
        ...

    def delete_json(self, key: str) -> bool: ...


@runtime_checkable
class BlobURLs(Protocol):
    """Optional for a store: blobs a client may fetch without the API in the way
    (S3 presigned URLs). The registry redirects large blob GETs there."""

    def blob_url(self, digest: Digest, expires_in: int) -> str: ...


def put_bytes(
    store: Store, data: bytes, expected: Digest | None = None, media_type: str = OCTET_STREAM
) -> Descriptor:
    return store.put_blob(io.BytesIO(data), expected, media_type=media_type)


def read_blob(store: Store, digest: Digest) -> bytes:
    with store.open_blob(digest) as f:
        return f.read()


def link_references(store: Store, repo: str, data: bytes, media_type: str) -> None:
    """Before a manifest becomes a revision of `repo`: link its config and layers
    into the repository (`BlobUnknown` if one is not stored; layers with `urls`
    may be absent), or check that an index's manifests are revisions of `repo`
    (`ManifestUnknown`). registry:2 serves a blob of a repository only through
    such a link, and refuses manifests whose references are missing."""
    declared = parse_manifest_or_index(data, media_type)
    if "mediaType" in json.loads(data) and declared.media_type != media_type:
        raise ManifestInvalid(
            f"manifest declares mediaType {declared.media_type!r} but is stored as {media_type!r}"
        )
    if isinstance(declared, Index):
        for child in declared.manifests:
            try:
                store.resolve(repo, child.digest)
            except NameUnknown:
                raise ManifestUnknown(f"manifest unknown: {repo}@{child.digest}") from None
        return
    blobs = [b for b in (declared.config, *declared.layers) if store.has_blob(b.digest)]
    for blob in (declared.config, *declared.layers):
        if blob not in blobs and not blob.urls:
            raise BlobUnknown(f"blob unknown: {blob.digest} (referenced by the manifest)")
    for blob in blobs:
        store.link_blob(repo, blob.digest)
