"""The content store on a local directory, in CNCF Distribution's layout, so a
stock `registry:2` with its filesystem driver rooted at the same directory
serves what Farm wrote:

    <root>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data
    <root>/docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    <root>/docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    <root>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    <root>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
    <root>/farm/<key>.json                       Farm's own records
    <root>/farm/.tmp/                            files being written

A link file holds exactly `sha256:<hex>`, no newline. Every file is written to
`<root>/farm/.tmp/`, fsynced, then renamed into place (the same filesystem, so
the rename is atomic) and its directory fsynced: a reader sees the whole file
or nothing, and concurrent writers of the same blob or tag leave one whole
version. Blobs are hashed while they are written.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from buildkit.digest import CHUNK, Digest, DigestWriter, InvalidDigest
from buildkit.errors import BlobUnknown, DigestMismatch, ManifestUnknown, StorageError
from buildkit.image import Descriptor, detect_media_type
from buildkit.store.base import (
    OCTET_STREAM,
    NameUnknown,
    Store,
    link_references,
    validate_key,
    validate_repository,
    validate_tag,
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


class FilesystemStore:
    """`Store` over a local directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.v2 = self.root / "docker" / "registry" / "v2"
        self.records = self.root / "farm"
        self.tmp = self.records / ".tmp"

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    # ------------------------------------------------------------ paths

    def blob_path(self, digest: Digest) -> Path:
        digest = self._sha256(digest)
        return self.v2 / "blobs" / "sha256" / digest.hex[:2] / digest.hex / "data"

    def _repo(self, repo: str) -> Path:
        return self.v2 / "repositories" / validate_repository(repo)

    def _layer_link(self, repo: str, digest: Digest) -> Path:
        return self._repo(repo) / "_layers" / "sha256" / self._sha256(digest).hex / "link"

    def _revision_link(self, repo: str, digest: Digest) -> Path:
        digest = self._sha256(digest)
        return self._repo(repo) / "_manifests" / "revisions" / "sha256" / digest.hex / "link"

    def _tag_dir(self, repo: str, tag: str) -> Path:
        return self._repo(repo) / "_manifests" / "tags" / validate_tag(tag)

    @staticmethod
    def _sha256(digest: Digest | str) -> Digest:
        digest = Digest(digest)
        if digest.algorithm != "sha256":
            raise InvalidDigest(
                f"unsupported digest algorithm in {digest!r}: only sha256 is stored"
            )
        return digest

    # ------------------------------------------------------------ atomic files

    def _temp(self) -> tuple[int, Path]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="w-")
        return fd, Path(name)

    def _install(self, temp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        _fsync_dir(final.parent)

    def _write_file(self, final: Path, data: bytes) -> None:
        fd, temp = self._temp()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._install(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _write_link(self, path: Path, digest: Digest) -> None:
        with contextlib.suppress(OSError):
            if path.read_bytes() == digest.encode():
                return
        self._write_file(path, digest.encode())

    def _read_link(self, path: Path) -> Digest:
        text = path.read_text()  # FileNotFoundError is the caller's to translate
        try:
            return Digest(text)
        except InvalidDigest as exc:
            raise StorageError(f"corrupt link file {path}: {exc}") from exc

    # ------------------------------------------------------------ blobs

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def blob_size(self, digest: Digest) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def put_blob(
        self, data: BinaryIO, expected: Digest | None = None, *, media_type: str = OCTET_STREAM
    ) -> Descriptor:
        if expected is not None and self.has_blob(expected):
            return Descriptor(media_type, Digest(expected), self.blob_size(expected))
        fd, temp = self._temp()
        try:
            hasher = DigestWriter()
            with os.fdopen(fd, "wb") as f:
                while chunk := data.read(CHUNK):
                    hasher.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            digest = hasher.digest
            if expected is not None and digest != expected:
                raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
            final = self.blob_path(digest)
            if final.is_file():
                temp.unlink()
            else:
                self._install(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Descriptor(media_type, digest, hasher.size)

    def list_blobs(self) -> list[Digest]:
        top = self.v2 / "blobs" / "sha256"
        found = []
        for prefix in _listdir(top):
            for name in _listdir(top / prefix):
                if name.startswith(prefix) and (top / prefix / name / "data").is_file():
                    with contextlib.suppress(InvalidDigest):
                        found.append(Digest.from_hex(name))
        return sorted(found)

    def blob_mtime(self, digest: Digest) -> float:
        try:
            return self.blob_path(digest).stat().st_mtime
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown: {digest}") from None

    def delete_blob(self, digest: Digest) -> bool:
        path = self.blob_path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # not empty: a writer put it back meanwhile
            path.parent.rmdir()
        _fsync_dir(path.parent.parent)
        return True

    # ------------------------------------------------------------ repositories

    def link_blob(self, repo: str, digest: Digest) -> None:
        link = self._layer_link(repo, digest)
        if not self.has_blob(digest):
            raise BlobUnknown(f"blob unknown: {digest}")
        self._write_link(link, Digest(digest))

    def blob_linked(self, repo: str, digest: Digest) -> bool:
        return self._layer_link(repo, digest).is_file() and self.has_blob(digest)

    def put_manifest(self, repo: str, data: bytes, media_type: str) -> Descriptor:
        validate_repository(repo)
        link_references(self, repo, data, media_type)  # refuses bad JSON, dangling references
        desc = self.put_blob(io.BytesIO(data), media_type=media_type)
        self._write_link(self._revision_link(repo, desc.digest), desc.digest)
        return desc

    def link_manifest(self, repo: str, desc: Descriptor, tag: str | None = None) -> None:
        revision = self._revision_link(repo, desc.digest)
        tag_dir = self._tag_dir(repo, tag) if tag is not None else None
        try:
            with self.open_blob(desc.digest) as f:
                data = f.read()
        except BlobUnknown:
            raise ManifestUnknown(f"manifest unknown: {desc.digest} is not stored") from None
        link_references(self, repo, data, desc.media_type)
        self._write_link(revision, desc.digest)
        if tag_dir is not None:
            index = tag_dir / "index" / "sha256" / desc.digest.hex / "link"
            self._write_link(index, desc.digest)
            self._write_link(tag_dir / "current" / "link", desc.digest)

    def resolve(self, repo: str, ref: str) -> Descriptor:
        repo_dir = self._repo(repo)
        try:
            if ":" in ref:
                digest = self._sha256(ref)
                self._read_link(self._revision_link(repo, digest))
            else:
                digest = self._read_link(self._tag_dir(repo, ref) / "current" / "link")
            with self.open_blob(digest) as f:
                data = f.read()
        except (FileNotFoundError, BlobUnknown):
            if not repo_dir.is_dir():
                raise NameUnknown(f"repository name not known to registry: {repo}") from None
            raise ManifestUnknown(f"manifest unknown: {repo}:{ref}") from None
        return Descriptor(detect_media_type(data), digest, len(data))

    def tags(self, repo: str) -> list[str]:
        repo_dir = self._repo(repo)
        if not repo_dir.is_dir():
            raise NameUnknown(f"repository name not known to registry: {repo}")
        tags_dir = repo_dir / "_manifests" / "tags"
        if not tags_dir.is_dir():
            return []
        return sorted(p.name for p in tags_dir.iterdir() if (p / "current" / "link").is_file())

    def _linked(self, repo: str, *parts: str) -> list[Digest]:
        repo_dir = self._repo(repo)
        if not repo_dir.is_dir():
            raise NameUnknown(f"repository name not known to registry: {repo}")
        found = []
        for name in _listdir(repo_dir.joinpath(*parts, "sha256")):
            link = repo_dir.joinpath(*parts, "sha256", name, "link")
            with contextlib.suppress(FileNotFoundError, StorageError):
                found.append(self._read_link(link))
        return sorted(found)

    def revisions(self, repo: str) -> list[Digest]:
        return self._linked(repo, "_manifests", "revisions")

    def linked_blobs(self, repo: str) -> list[Digest]:
        return self._linked(repo, "_layers")

    def repositories(self) -> list[str]:
        top = self.v2 / "repositories"
        found = []
        for dirpath, dirnames, _ in os.walk(top):
            if "_manifests" in dirnames:
                found.append(Path(dirpath).relative_to(top).as_posix())
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
        return sorted(found)

    def delete_tag(self, repo: str, tag: str) -> None:
        tag_dir = self._tag_dir(repo, tag)
        try:
            (tag_dir / "current" / "link").unlink()
        except FileNotFoundError:
            raise ManifestUnknown(f"manifest unknown: {repo}:{tag}") from None
        shutil.rmtree(tag_dir, ignore_errors=True)

    def delete_manifest(self, repo: str, digest: Digest) -> list[str]:
        revision = self._revision_link(repo, digest)
        if not revision.is_file():
            if not self._repo(repo).is_dir():
                raise NameUnknown(f"repository name not known to registry: {repo}")
            raise ManifestUnknown(f"manifest unknown: {repo}@{digest}")
        removed = []
        for tag in self.tags(repo):  # tags first: no tag ever names a missing revision
            with contextlib.suppress(FileNotFoundError, StorageError, ManifestUnknown):
                if self._read_link(self._tag_dir(repo, tag) / "current" / "link") == digest:
                    self.delete_tag(repo, tag)
                    removed.append(tag)
        revision.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            revision.parent.rmdir()
        return removed

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        link = self._layer_link(repo, digest)
        try:
            link.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            link.parent.rmdir()
        return True

    # ------------------------------------------------------------ Farm's records

    def _record(self, key: str) -> Path:
        *parents, name = validate_key(key)
        return self.records.joinpath(*parents, name + ".json")

    def get_json(self, key: str) -> Any | None:
        try:
            return json.loads(self._record(key).read_bytes())
        except FileNotFoundError:
            return None

    def put_json(self, key: str, value: Any) -> None:
        path = self._record(key)
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._write_file(path, data.encode())

    def list_json(self, prefix: str) -> list[str]:
        directory = self.records.joinpath(*validate_key(prefix))
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(f"{prefix}/{n[:-5]}" for n in names if n.endswith(".json") and n[0] != ".")

    def delete_json(self, key: str) -> bool:
        try:
            self._record(key).unlink()
        except FileNotFoundError:
            return False
        return True


if TYPE_CHECKING:  # mypy checks that the driver keeps the interface
    _store: Store = FilesystemStore(".")
