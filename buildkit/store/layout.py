"""CNCF Distribution's storage layout, once for every backend: where each thing
lives (the keys below), and `LayoutStore`, which implements every layout-level
`Store` method in terms of a few primitives a backend provides.

    docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
    farm/<key>.json                              Farm's own records
    farm/.tmp/                                   things being written

Keys are `/`-joined, relative to the store's root, without a trailing `/`
(directories too). A link holds exactly `sha256:<hex>`, no newline.

A backend (`filesystem.py`, `s3.py`) provides the primitives — read a key's
bytes, write a small object whole or not at all, whether a key or a directory
exists, the children of a directory, every key under one, delete — and the
blob I/O whose atomicity and streaming differ (temporary file and rename,
PutObject or multipart upload): `open_blob`, `blob_size`, `blob_mtime`,
`put_blob`, `delete_blob`.
"""

from __future__ import annotations

import contextlib
import io
import json
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import BlobUnknown, ManifestUnknown, StorageError
from buildkit.image import Descriptor, detect_media_type
from buildkit.store.base import (
    OCTET_STREAM,
    NameUnknown,
    link_references,
    validate_key,
    validate_repository,
    validate_tag,
)

V2 = "docker/registry/v2"
BLOBS = f"{V2}/blobs/sha256"
REPOSITORIES = f"{V2}/repositories"
RECORDS = "farm"
TMP = f"{RECORDS}/.tmp"
JSON = "application/json"

# ------------------------------------------------------------ keys


def sha256(digest: Digest | str) -> Digest:
    digest = Digest(digest)
    if digest.algorithm != "sha256":
        raise InvalidDigest(f"unsupported digest algorithm in {digest!r}: only sha256 is stored")
    return digest


def blob_data(digest: Digest) -> str:
    h = sha256(digest).hex
    return f"{BLOBS}/{h[:2]}/{h}/data"


def repository_dir(repo: str) -> str:
    return f"{REPOSITORIES}/{validate_repository(repo)}"


def layers_dir(repo: str) -> str:
    return f"{repository_dir(repo)}/_layers/sha256"


def layer_link(repo: str, digest: Digest) -> str:
    return f"{layers_dir(repo)}/{sha256(digest).hex}/link"


def revisions_dir(repo: str) -> str:
    return f"{repository_dir(repo)}/_manifests/revisions/sha256"


def revision_link(repo: str, digest: Digest) -> str:
    return f"{revisions_dir(repo)}/{sha256(digest).hex}/link"


def tags_dir(repo: str) -> str:
    return f"{repository_dir(repo)}/_manifests/tags"


def tag_dir(repo: str, tag: str) -> str:
    return f"{tags_dir(repo)}/{validate_tag(tag)}"


def tag_current_link(repo: str, tag: str) -> str:
    return f"{tag_dir(repo, tag)}/current/link"


def tag_index_link(repo: str, tag: str, digest: Digest) -> str:
    return f"{tag_dir(repo, tag)}/index/sha256/{sha256(digest).hex}/link"


def record(key: str) -> str:
    return f"{RECORDS}/{'/'.join(validate_key(key))}.json"


def records_dir(prefix: str) -> str:
    return f"{RECORDS}/{'/'.join(validate_key(prefix))}"


# ------------------------------------------------------------ the Store methods, once


class LayoutStore(ABC):
    """Every layout-level `Store` method, over a backend's primitives."""

    link_readers = 1  # how many links `revisions` and `linked_blobs` read at once

    # ---- primitives: a missing key is None, False or empty, never an error

    @abstractmethod
    def _read(self, key: str) -> bytes | None:
        """The object's bytes; None when there is none."""

    @abstractmethod
    def _write(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        """Put a small object under `key`, visible whole or not at all."""

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _is_dir(self, key: str) -> bool:
        """Whether the directory `key` exists (on S3: whether any key is under it)."""

    @abstractmethod
    def _children(self, key: str) -> tuple[list[str], list[str]]:
        """The names of the objects and of the directories directly under `key`."""

    @abstractmethod
    def _walk(self, key: str) -> list[str]:
        """Every object under the directory `key`, relative to it."""

    @abstractmethod
    def _delete(self, key: str, *, prune: bool = False) -> bool:
        """Remove an object; False when it was not there. `prune`: the directory
        that held it (a link's `<hex>/`) goes too, where directories exist."""

    @abstractmethod
    def _delete_tree(self, key: str) -> None:
        """Remove everything under the directory `key`."""

    @abstractmethod
    def _where(self, key: str) -> str:
        """The key as the user knows it, for messages: a path, an s3:// URL."""

    # ---- blob I/O: atomicity and streaming are the backend's

    @abstractmethod
    def open_blob(self, digest: Digest) -> BinaryIO: ...

    @abstractmethod
    def blob_size(self, digest: Digest) -> int: ...

    @abstractmethod
    def put_blob(
        self, data: BinaryIO, expected: Digest | None = None, *, media_type: str = OCTET_STREAM
    ) -> Descriptor: ...

    @abstractmethod
    def blob_mtime(self, digest: Digest) -> float: ...

    @abstractmethod
    def delete_blob(self, digest: Digest) -> bool: ...

    # ---- links

    def _write_link(self, key: str, digest: Digest) -> None:
        self._write(key, digest.encode())

    def _read_link(self, key: str) -> Digest | None:
        data = self._read(key)
        if data is None:
            return None
        try:
            return Digest(data.decode("utf-8", "replace"))
        except InvalidDigest as exc:
            raise StorageError(f"corrupt link {self._where(key)}: {exc}") from exc

    def _need_repo(self, repo: str) -> None:
        if not self._is_dir(repository_dir(repo)):
            raise NameUnknown(f"repository name not known to registry: {repo}")

    # ---- blobs

    def has_blob(self, digest: Digest) -> bool:
        return self._exists(blob_data(digest))

    def list_blobs(self) -> list[Digest]:
        found = []
        for key in self._walk(BLOBS):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "data" and parts[1].startswith(parts[0]):
                with contextlib.suppress(InvalidDigest):
                    found.append(Digest.from_hex(parts[1]))
        return sorted(found)

    # ---- repositories

    def link_blob(self, repo: str, digest: Digest) -> None:
        link = layer_link(repo, digest)
        if not self.has_blob(digest):
            raise BlobUnknown(f"blob unknown: {digest}")
        self._write_link(link, Digest(digest))

    def blob_linked(self, repo: str, digest: Digest) -> bool:
        return self._exists(layer_link(repo, digest)) and self.has_blob(digest)

    def put_manifest(self, repo: str, data: bytes, media_type: str) -> Descriptor:
        validate_repository(repo)
        link_references(self, repo, data, media_type)  # refuses bad JSON, dangling references
        desc = self.put_blob(io.BytesIO(data), media_type=media_type)
        self._write_link(revision_link(repo, desc.digest), desc.digest)
        return desc

    def link_manifest(self, repo: str, desc: Descriptor, tag: str | None = None) -> None:
        revision = revision_link(repo, desc.digest)
        links = []  # a tag's index/ link before its current/link
        if tag is not None:
            links = [tag_index_link(repo, tag, desc.digest), tag_current_link(repo, tag)]
        data = self._read(blob_data(desc.digest))
        if data is None:
            raise ManifestUnknown(f"manifest unknown: {desc.digest} is not stored")
        link_references(self, repo, data, desc.media_type)
        self._write_link(revision, desc.digest)
        for link in links:
            self._write_link(link, desc.digest)

    def _manifest(self, repo: str, ref: str) -> tuple[Digest, bytes] | None:
        if ":" in ref:
            digest = sha256(ref)
            if self._read_link(revision_link(repo, digest)) is None:
                return None
        else:
            current = self._read_link(tag_current_link(repo, ref))
            if current is None:
                return None
            digest = current
        data = self._read(blob_data(digest))
        return None if data is None else (digest, data)

    def resolve(self, repo: str, ref: str) -> Descriptor:
        validate_repository(repo)
        found = self._manifest(repo, ref)
        if found is None:
            self._need_repo(repo)
            raise ManifestUnknown(f"manifest unknown: {repo}:{ref}")
        digest, data = found
        return Descriptor(detect_media_type(data), digest, len(data))

    def tags(self, repo: str) -> list[str]:
        self._need_repo(repo)
        found = set()
        for key in self._walk(tags_dir(repo)):
            tag, _, rest = key.partition("/")
            if rest == "current/link":
                found.add(tag)
        return sorted(found)

    def _linked(self, repo: str, top: str) -> list[Digest]:
        self._need_repo(repo)
        _, names = self._children(top)

        def read(name: str) -> Digest | None:
            try:
                return self._read_link(f"{top}/{name}/link")
            except StorageError:
                return None

        if self.link_readers > 1:
            with ThreadPoolExecutor(self.link_readers) as pool:
                found = list(pool.map(read, names))
        else:
            found = [read(name) for name in names]
        return sorted(d for d in found if d is not None)

    def revisions(self, repo: str) -> list[Digest]:
        return self._linked(repo, revisions_dir(repo))

    def linked_blobs(self, repo: str) -> list[Digest]:
        return self._linked(repo, layers_dir(repo))

    def repositories(self) -> list[str]:
        found = []
        pending = [""]
        while pending:
            path = pending.pop()
            _, dirs = self._children(f"{REPOSITORIES}/{path}" if path else REPOSITORIES)
            if path and "_manifests" in dirs:
                found.append(path)
            pending += [f"{path}/{d}" if path else d for d in dirs if not d.startswith("_")]
        return sorted(found)

    def delete_tag(self, repo: str, tag: str) -> None:
        if not self._delete(tag_current_link(repo, tag)):  # the tag is gone from here on
            raise ManifestUnknown(f"manifest unknown: {repo}:{tag}")
        self._delete_tree(tag_dir(repo, tag))

    def delete_manifest(self, repo: str, digest: Digest) -> list[str]:
        revision = revision_link(repo, digest)
        if not self._exists(revision):
            self._need_repo(repo)
            raise ManifestUnknown(f"manifest unknown: {repo}@{digest}")
        removed = []
        for tag in self.tags(repo):  # tags first: no tag ever names a missing revision
            with contextlib.suppress(StorageError, ManifestUnknown):
                if self._read_link(tag_current_link(repo, tag)) == digest:
                    self.delete_tag(repo, tag)
                    removed.append(tag)
        self._delete(revision, prune=True)
        return removed

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        return self._delete(layer_link(repo, digest), prune=True)

    # ---- Farm's records

    def get_json(self, key: str) -> Any | None:
        data = self._read(record(key))
        return None if data is None else json.loads(data)

    def put_json(self, key: str, value: Any) -> None:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._write(record(key), data.encode(), JSON)

    def list_json(self, prefix: str) -> list[str]:
        names, _ = self._children(records_dir(prefix))
        return sorted(f"{prefix}/{n[:-5]}" for n in names if n.endswith(".json") and n[0] != ".")

    def delete_json(self, key: str) -> bool:
        return self._delete(record(key))
