"""The registry's logic over a `Store`: what a manifest, blob, tag or referrers
request means, independent of HTTP. Errors are the spec's (`RegistryHTTPError`)
where the meaning depends on the request (a missing blob named by a manifest
is MANIFEST_BLOB_UNKNOWN), else the store's own (mapped in `errors.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from api.registry.errors import RegistryHTTPError
from api.registry.lru import LRU
from api.registry.uploads import UploadStore
from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import BlobUnknown, ManifestUnknown, ReferenceFormatError
from buildkit.image import (
    INDEX_TYPES,
    OCI_INDEX,
    Descriptor,
    Index,
    ManifestInvalid,
    canonical_json,
    detect_media_type,
    parse_manifest_or_index,
)
from buildkit.store.base import (
    BlobURLs,
    NameUnknown,
    Store,
    read_blob,
    validate_repository,
    validate_tag,
)

GENERIC_TYPES = frozenset({"", "application/octet-stream", "application/json", "text/plain"})
REFERRERS_CACHE_SIZE = 10_000
REFERRERS_PAGE_SIZE = 1000  # descriptors a referrers response holds at most


def check_name(name: str) -> str:
    try:
        return validate_repository(name)
    except ReferenceFormatError as exc:
        raise RegistryHTTPError("NAME_INVALID", str(exc), detail={"name": name}) from None


def parse_digest(text: str) -> Digest:
    """A digest the store can hold (sha256), or DIGEST_INVALID."""
    try:
        digest = Digest(text)
    except InvalidDigest as exc:
        raise RegistryHTTPError("DIGEST_INVALID", str(exc), detail={"digest": text}) from None
    if digest.algorithm != "sha256":
        raise RegistryHTTPError(
            "DIGEST_INVALID", f"unsupported digest algorithm in {text}: only sha256 is stored"
        )
    return digest


def accepts(accept_headers: Iterable[str], media_type: str) -> bool:
    """Whether a client that sent these Accept headers takes `media_type`
    (no Accept at all, or a wildcard, takes anything)."""
    ranges, excluded = [], False
    for header in accept_headers:
        for item in header.split(","):
            kind, *params = (p.strip() for p in item.split(";"))
            if not kind:
                continue
            if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
                excluded = True
                continue
            ranges.append(kind.lower())
    if not ranges:
        return not excluded
    major = media_type.split("/")[0]
    return any(r in ("*/*", media_type, f"{major}/*") for r in ranges)


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The page of sorted `items` after `last`, at most `n` long; and whether more follow."""
    if last:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], n > 0 and len(items) > n


@dataclass(frozen=True)
class _Referrer:
    subject: Digest | None
    descriptor: dict[str, Any]


class RegistryService:
    def __init__(
        self, store: Store, *, delete_enabled: bool = True, max_manifest_size: int = 4 << 20
    ) -> None:
        self.store = store
        self.delete_enabled = delete_enabled
        self.max_manifest_size = max_manifest_size
        self.referrers_page_size = REFERRERS_PAGE_SIZE
        self._referrers: LRU[Digest, _Referrer] = LRU(REFERRERS_CACHE_SIZE)

    # ------------------------------------------------------------ manifests

    def get_manifest(self, repo: str, reference: str) -> tuple[Descriptor, bytes]:
        if ":" in reference:
            ref: str = parse_digest(reference)
        else:
            try:
                ref = validate_tag(reference)
            except ReferenceFormatError:
                raise RegistryHTTPError(
                    "MANIFEST_UNKNOWN", f"manifest unknown: {repo}:{reference} (not a tag)"
                ) from None
        desc = self.store.resolve(repo, ref)
        return desc, read_blob(self.store, desc.digest)

    def put_manifest(
        self, repo: str, reference: str, data: bytes, content_type: str
    ) -> tuple[Descriptor, Descriptor | None]:
        """Store the manifest byte for byte; return its descriptor and its subject."""
        if len(data) > self.max_manifest_size:
            raise manifest_too_large(self.max_manifest_size)
        tag = None
        if ":" in reference:
            digest = parse_digest(reference)
            if Digest.of(data) != digest:
                raise RegistryHTTPError(
                    "DIGEST_INVALID",
                    f"manifest digest {Digest.of(data)} does not match the reference {digest}",
                )
        else:
            try:
                tag = validate_tag(reference)
            except ReferenceFormatError as exc:
                raise RegistryHTTPError("MANIFEST_INVALID", str(exc)) from None
        media_type = content_type.split(";")[0].strip().lower()
        if media_type in GENERIC_TYPES:
            media_type = detect_media_type(data)
        parsed = parse_manifest_or_index(data, media_type)
        if not isinstance(parsed, Index):
            self._check_blobs_linked(repo, parsed.config, *parsed.layers)
        try:
            desc = self.store.put_manifest(repo, data, media_type)
        except BlobUnknown as exc:
            raise RegistryHTTPError("MANIFEST_BLOB_UNKNOWN", str(exc)) from None
        except ManifestUnknown as exc:  # an index names a manifest the repository lacks
            raise RegistryHTTPError("MANIFEST_BLOB_UNKNOWN", str(exc)) from None
        if tag is not None:
            self.store.link_manifest(repo, desc, tag)
        return desc, parsed.subject

    def _check_blobs_linked(self, repo: str, *blobs: Descriptor) -> None:
        """MANIFEST_BLOB_UNKNOWN unless every blob a pushed manifest names is linked
        into `repo` (pushed or mounted there). The store links whatever it holds
        (Farm's own publishing relies on that); a client must not get a blob of
        another repository into this one just by naming its digest. A layer with
        `urls` (non-distributable) may be absent from the store, not unlinked."""
        for blob in blobs:
            if self.store.blob_linked(repo, blob.digest):
                continue
            if blob.urls and not self.store.has_blob(blob.digest):
                continue
            raise RegistryHTTPError(
                "MANIFEST_BLOB_UNKNOWN",
                f"blob unknown to registry: {repo}@{blob.digest} (referenced by the manifest)",
                detail={"digest": str(blob.digest)},
            )

    def delete_manifest(self, repo: str, reference: str) -> None:
        self._check_delete()
        if ":" in reference:
            self.store.delete_manifest(repo, parse_digest(reference))
            return
        try:
            tag = validate_tag(reference)
        except ReferenceFormatError:
            raise RegistryHTTPError("MANIFEST_UNKNOWN", f"not a tag: {reference!r}") from None
        self.store.tags(repo)  # NameUnknown for a repository that is not there
        self.store.delete_tag(repo, tag)

    def _check_delete(self) -> None:
        if not self.delete_enabled:
            raise RegistryHTTPError("UNSUPPORTED", "deletion is disabled on this registry")

    # ------------------------------------------------------------ blobs

    def blob_size(self, repo: str, digest: Digest) -> int:
        """The size of a blob `repo` may serve: linked into it as a layer or
        config, or one of its manifests; `BlobUnknown` otherwise."""
        if not self.store.blob_linked(repo, digest):
            try:
                self.store.resolve(repo, digest)
            except (ManifestUnknown, NameUnknown):
                raise BlobUnknown(f"blob unknown to registry: {repo}@{digest}") from None
        return self.store.blob_size(digest)

    def open_blob(self, digest: Digest, offset: int = 0) -> BinaryIO:
        f = self.store.open_blob(digest)
        if offset:
            try:
                if f.seekable():
                    f.seek(offset)
                    return f
            except (AttributeError, OSError):
                pass
            left = offset  # a stream that cannot seek (an S3 body): read past the start
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        return f

    def blob_url(
        self, digest: Digest, size: int, min_size: int, expires_in: int = 600
    ) -> str | None:
        """Where to redirect a GET of the blob, when the store can hand out URLs."""
        if min_size <= 0 or size < min_size or not isinstance(self.store, BlobURLs):
            return None
        return self.store.blob_url(digest, expires_in)

    def commit_upload(
        self, uploads: UploadStore, repo: str, upload_id: str, digest: Digest
    ) -> Descriptor:
        """Verify and store an upload's bytes, then link the blob into `repo`."""
        desc = uploads.commit(repo, upload_id, self.store, digest)
        self.store.link_blob(repo, desc.digest)
        return desc

    def delete_blob(self, repo: str, digest: Digest) -> None:
        self._check_delete()
        if not self.store.unlink_blob(repo, digest):
            raise BlobUnknown(f"blob unknown to registry: {repo}@{digest}")

    def mount(self, repo: str, digest: Digest, source: str | None) -> Descriptor | None:
        """Link a blob into `repo` from `source`, where it must be linked (the caller
        checked that the client may pull `source`); None when it cannot be done,
        and the client uploads the blob instead. Without `source` only a blob
        already linked into `repo` counts as mounted: the store's other blobs
        (other repositories', pulled bases, cache layers) are not the client's
        to claim by digest."""
        if source is not None:
            try:
                if not self.store.blob_linked(source, digest):
                    return None
            except ReferenceFormatError:
                return None
        elif not self.store.blob_linked(repo, digest):
            return None
        self.store.link_blob(repo, digest)
        return Descriptor("application/octet-stream", digest, self.store.blob_size(digest))

    # ------------------------------------------------------------ discovery

    def tags(self, repo: str, n: int | None, last: str | None) -> tuple[list[str], bool]:
        return paginate(self.store.tags(repo), n, last)

    def referrers(
        self,
        repo: str,
        digest: Digest,
        artifact_type: str | None,
        n: int | None = None,
        last: str | None = None,
    ) -> tuple[bytes, str | None]:
        """The image index of the manifests of `repo` whose subject is `digest`,
        by digest, one page of at most `n` (and `referrers_page_size`) after the
        digest `last`; and the last digest of the page when more follow."""
        try:
            revisions = sorted(self.store.revisions(repo))
        except NameUnknown:
            revisions = []
        found: dict[str, dict[str, Any]] = {}
        for revision in revisions:
            referrer = self._referrer(revision)
            if referrer is None or referrer.subject != digest:
                continue
            if artifact_type and referrer.descriptor.get("artifactType") != artifact_type:
                continue
            found[str(revision)] = referrer.descriptor
        size = self.referrers_page_size if n is None else min(n, self.referrers_page_size)
        page, more = paginate(list(found), size, last)
        manifests = [found[d] for d in page]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return canonical_json(index), page[-1] if more else None

    def _referrer(self, digest: Digest) -> _Referrer | None:
        """What the referrers API needs of a manifest, cached: a digest's content never changes."""
        cached = self._referrers.get(digest)
        if cached is not None:
            return cached
        try:
            data = read_blob(self.store, digest)
            media_type = detect_media_type(data)
            doc = parse_manifest_or_index(data, media_type)
        except (BlobUnknown, ManifestInvalid, json.JSONDecodeError):
            return None  # gone meanwhile, or not ours to judge
        desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        artifact_type = doc.artifact_type
        if not artifact_type and media_type not in INDEX_TYPES and not isinstance(doc, Index):
            artifact_type = doc.config.media_type
        if artifact_type:
            desc["artifactType"] = artifact_type
        if doc.annotations:
            desc["annotations"] = dict(doc.annotations)
        referrer = _Referrer(doc.subject.digest if doc.subject else None, desc)
        self._referrers.put(digest, referrer)
        return referrer


def manifest_too_large(limit: int) -> RegistryHTTPError:
    return RegistryHTTPError(
        "SIZE_INVALID", f"manifest larger than {limit} bytes", status=413, detail={"limit": limit}
    )
