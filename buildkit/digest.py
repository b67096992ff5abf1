"""Content digests: `sha256:<64 lowercase hex>`, as the OCI image spec writes them.

`Digest` is a `str`, so it goes into JSON, f-strings and dict keys unchanged;
constructing one validates it. Farm writes only sha256; sha512 digests are
accepted when read, because the image spec registers both.

    >>> d = Digest.of(b"")
    >>> d.algorithm, d.short
    ('sha256', 'e3b0c44298fc')
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from buildkit.errors import ReferenceFormatError

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_PATTERN = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")
CHUNK = 1 << 20


class InvalidDigest(ReferenceFormatError, ValueError):
    """A string that is not `<algorithm>:<hex>` with a registered algorithm."""


class Digest(str):
    """A validated `algorithm:hex` digest string."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if isinstance(value, Digest):
            return value
        match = _PATTERN.fullmatch(value) if isinstance(value, str) else None
        if match is None or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
            raise InvalidDigest(
                f"invalid digest {value!r}: expected sha256:<64 lowercase hex digits>"
            )
        return super().__new__(cls, value)

    @classmethod
    def from_hex(cls, hex_digest: str, algorithm: str = "sha256") -> Digest:
        return cls(f"{algorithm}:{hex_digest}")

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The sha256 digest of `data`."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        return self.partition(":")[2]

    @property
    def short(self) -> str:
        """The first 12 hex digits, as `docker images` shows them."""
        return self.hex[:12]


def is_digest(value: str) -> bool:
    """Whether `value` is a well-formed digest (without raising)."""
    try:
        Digest(value)
    except InvalidDigest:
        return False
    return True


def sha256_digest(data: bytes) -> Digest:
    return Digest.of(data)


class DigestWriter:
    """Counts and hashes bytes as they pass: `update` them, then read `digest`."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    @property
    def digest(self) -> Digest:
        return Digest("sha256:" + self._hash.hexdigest())


def digest_stream(stream: BinaryIO, chunk_size: int = CHUNK) -> tuple[Digest, int]:
    """Read `stream` to its end; return its sha256 digest and its length."""
    writer = DigestWriter()
    while chunk := stream.read(chunk_size):
        writer.update(chunk)
    return writer.digest, writer.size
