"""What a registry sends back, checked before anything uses it:
`RemoteManifest` (a manifest's exact bytes, media type and digest), the media
type a manifest really has (schema 1 refused), digests of bytes, and
`_VerifyingReader`, a blob body whose digest and size are checked at its end.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import httpx

from buildkit.digest import Digest
from buildkit.errors import DigestMismatch, RegistryError
from buildkit.image import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    ManifestInvalid,
    detect_media_type,
)


@dataclass(frozen=True)
class RemoteManifest:
    """A manifest or index as a registry served it: the exact bytes."""

    data: bytes
    media_type: str
    digest: Digest

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _content_type(resp: httpx.Response) -> str:
    return resp.headers.get("content-type", "").split(";", 1)[0].strip()


def _manifest_media_type(data: bytes, header: str) -> str:
    """What the manifest is: its own `mediaType`, else the header if it names a
    manifest type, else guessed from its shape."""
    if header.startswith("application/vnd.docker.distribution.manifest.v1"):
        raise ManifestInvalid(
            f"schema 1 manifest ({header}) is not supported: the image is too old; "
            "push it again with a current Docker or Farm"
        )
    declared = detect_media_type(data)
    if declared in INDEX_TYPES | MANIFEST_TYPES:
        return declared
    if header in INDEX_TYPES | MANIFEST_TYPES:
        return header
    raise ManifestInvalid(f"unsupported manifest media type {declared or header!r}")


def _hasher(digest: Digest) -> Any:
    return hashlib.new(digest.algorithm)


def _digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}")


class _VerifyingReader(io.RawIOBase):
    """A blob body read as a file; at EOF its digest (and size) must match."""

    def __init__(self, resp: httpx.Response, digest: Digest, size: int | None, what: str):
        self._chunks = resp.iter_bytes()
        self._hash = _hasher(digest)
        self._digest = digest
        self._size = size
        self._what = what
        self._buf = b""
        self._seen = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._eof:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                self._verify()
                break
            except httpx.HTTPError as exc:
                raise RegistryError(f"{self._what}: {exc}") from exc
            self._hash.update(chunk)
            self._seen += len(chunk)
            self._buf = chunk
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def _verify(self) -> None:
        got = Digest(f"{self._digest.algorithm}:{self._hash.hexdigest()}")
        if got != self._digest:
            raise DigestMismatch(f"{self._what}: content has digest {got}, not {self._digest}")
        if self._size is not None and self._seen != self._size:
            raise DigestMismatch(f"{self._what}: got {self._seen} bytes, expected {self._size}")
