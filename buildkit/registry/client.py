"""A client of the OCI distribution API (registry:2, Docker Hub, ghcr.io, ...).

    client = RegistryClient(RegistryConfig(credentials=creds, insecure=frozenset({"reg:5000"})))
    got = client.get_manifest(parse_reference("127.0.0.1:5000/busybox:1"))
    with client.open_blob(ref, digest) as blob: ...     # verified against the digest at EOF
    client.push_blob(ref, desc, opener)                  # HEAD, mount, else POST + PUT
    client.put_manifest(ref, data, media_type)           # byte for byte

Every request goes through `_send`: the cached authorization for its scopes,
then on 401 the challenge is answered once (a Bearer token from the realm,
anonymously or with Basic credentials; or Basic itself), and 5xx, 429 and
connection errors are retried with exponential backoff, a bounded number of
times. httpx errors become `RegistryError`s here, where they enter: 401/403
→ `AuthError`, a missing manifest → `ManifestUnknown`, a missing blob →
`BlobUnknown`, content that is not what its digest says → `DigestMismatch`.

`localhost`, `127.0.0.1` and `[::1]` registries, and hosts the caller marks
insecure, are spoken to over plain HTTP; every other over HTTPS.

The session side (connections, auth, retries) is `session.py`'s
`RegistrySession`, the base of `RegistryClient`; the checks of what comes
back are in `content.py`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urljoin

import httpx

from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import (
    AuthError,
    BlobUnknown,
    DigestMismatch,
    ManifestUnknown,
    RegistryError,
)
from buildkit.image import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
)
from buildkit.reference import Reference
from buildkit.registry.auth import repository_scope
from buildkit.registry.config import RegistryConfig
from buildkit.registry.content import (
    RemoteManifest,
    _content_type,
    _digest_of,
    _manifest_media_type,
    _VerifyingReader,
)
from buildkit.registry.session import (
    DOCKER_HUB_API,
    LOOPBACK_HOSTS,
    RETRY_STATUS,
    Opener,
    RegistrySession,
    _describe,
    registry_error_message,
)

__all__ = [
    "DOCKER_HUB_API",
    "LOOPBACK_HOSTS",
    "MANIFEST_ACCEPT",
    "MAX_MANIFEST_SIZE",
    "OCTET_STREAM",
    "RETRY_STATUS",
    "Opener",
    "RegistryClient",
    "RegistryConfig",
    "RegistrySession",
    "RemoteManifest",
    "registry_error_message",
]

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
MAX_MANIFEST_SIZE = 4 << 20  # what registry:2 accepts
OCTET_STREAM = "application/octet-stream"


def _expect_ok(resp: httpx.Response, what: str, unknown: type[RegistryError], noun: str) -> None:
    """Raise `unknown` for a 404 of a streamed GET, `RegistryError` for any other
    status but 200 (reading the body for the registry's message)."""
    if resp.status_code == 404:
        resp.read()
        raise unknown(f"{what}: {noun} unknown ({registry_error_message(resp)})")
    if resp.status_code != 200:
        resp.read()
        raise RegistryError(f"{what}: {registry_error_message(resp)}")


class RegistryClient(RegistrySession):
    """One client for every registry (connections, tokens and known blob
    locations are shared); thread-safe. Close it, or use it as a context manager."""

    # ------------------------------------------------------------ API

    def ping(self, domain: str) -> None:
        """`GET /v2/`: the registry speaks the distribution API (and we may talk to it)."""
        url = f"{self.base_url(domain)}/v2/"
        resp = self._send("GET", url, domain, (), what=f"ping {domain}")
        if resp.status_code != 200:
            raise RegistryError(f"ping {domain}: {registry_error_message(resp)}")

    def get_manifest(self, ref: Reference) -> RemoteManifest:
        """The manifest or index `ref` names (by digest, tag, or `latest`), verified."""
        which = ref.digest or ref.tag or "latest"
        url = self._url(ref, f"manifests/{which}")
        what = f"pull {ref.name}:{which}" if not ref.digest else f"pull {ref.name}@{which}"
        resp = self._send(
            "GET", url, ref.domain, (repository_scope(ref.path),),
            headers={"Accept": MANIFEST_ACCEPT}, stream=True, what=what,
        )  # fmt: skip
        try:
            _expect_ok(resp, what, ManifestUnknown, "manifest")
            data = self._read_limited(resp, MAX_MANIFEST_SIZE, what)
        finally:
            resp.close()
        media_type = _manifest_media_type(data, _content_type(resp))
        digest = self._check_manifest_digest(
            ref, data, resp.headers.get("docker-content-digest"), what
        )
        return RemoteManifest(data, media_type, digest)

    @staticmethod
    def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
        chunks, total = [], 0
        try:
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise RegistryError(f"{what}: manifest larger than {limit} bytes")
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise RegistryError(f"{what}: {_describe(exc)}") from exc
        return b"".join(chunks)

    @staticmethod
    def _check_manifest_digest(
        ref: Reference, data: bytes, header: str | None, what: str
    ) -> Digest:
        computed = _digest_of(data)
        if ref.digest:
            want = Digest(ref.digest)
            if _digest_of(data, want.algorithm) != want:
                raise DigestMismatch(f"{what}: the registry sent a manifest with another digest")
        if header:
            try:
                said = Digest(header.strip())
            except InvalidDigest:
                return computed
            if _digest_of(data, said.algorithm) != said:
                raise DigestMismatch(
                    f"{what}: Docker-Content-Digest {said} does not match the content ({computed})"
                )
        return computed

    def head_manifest(self, ref: Reference) -> Descriptor:
        """The descriptor of what `ref` names, without its body (falls back to GET
        when the registry does not say the digest)."""
        which = ref.digest or ref.tag or "latest"
        url = self._url(ref, f"manifests/{which}")
        what = f"resolve {ref}"
        resp = self._send(
            "HEAD", url, ref.domain, (repository_scope(ref.path),),
            headers={"Accept": MANIFEST_ACCEPT}, what=what,
        )  # fmt: skip
        if resp.status_code == 404:
            raise ManifestUnknown(f"{what}: manifest unknown")
        if resp.status_code != 200:
            raise RegistryError(f"{what}: {resp.status_code} {resp.reason_phrase}")
        header = resp.headers.get("docker-content-digest", "")
        media_type = _content_type(resp)
        size = resp.headers.get("content-length", "")
        if header and media_type in INDEX_TYPES | MANIFEST_TYPES and size.isdigit():
            with contextlib.suppress(InvalidDigest):
                return Descriptor(media_type, Digest(header), int(size))
        return self.get_manifest(ref).descriptor

    def has_blob(self, ref: Reference, digest: str, *, push: bool = False) -> bool:
        url = self._url(ref, f"blobs/{digest}")
        actions = "pull,push" if push else "pull"
        resp = self._send(
            "HEAD", url, ref.domain, (repository_scope(ref.path, actions),),
            what=f"check blob {digest} in {ref.name}",
        )  # fmt: skip
        if resp.status_code == 200:
            self.note_blob(ref, digest)
            return True
        if resp.status_code == 404:
            return False
        raise RegistryError(f"check blob {digest} in {ref.name}: {registry_error_message(resp)}")

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, digest: str, size: int | None = None) -> Iterator[BinaryIO]:
        """A reader of a blob of `ref`'s repository; `DigestMismatch` at its end
        when the bytes are not what `digest` says."""
        want = Digest(digest)
        what = f"pull blob {want} from {ref.name}"
        url = self._url(ref, f"blobs/{want}")
        resp = self._send(
            "GET", url, ref.domain, (repository_scope(ref.path),), stream=True, what=what
        )
        try:
            _expect_ok(resp, what, BlobUnknown, "blob")
            self.note_blob(ref, want)
            yield io.BufferedReader(_VerifyingReader(resp, want, size, what), 1 << 20)
        finally:
            resp.close()

    def download_blob(
        self, ref: Reference, desc: Descriptor, sink: Callable[[BinaryIO], Any]
    ) -> Any:
        """`sink(reader)` over the blob, started again after a broken connection
        (up to `retries` times); a digest mismatch is not retried."""
        attempt = 0
        while True:
            try:
                with self.open_blob(ref, desc.digest, desc.size) as reader:
                    return sink(reader)
            except (DigestMismatch, BlobUnknown, AuthError):
                raise
            except RegistryError:
                if attempt >= self.config.retries:
                    raise
                self._backoff(attempt)
                attempt += 1

    def mount_blob(self, ref: Reference, digest: str, from_path: str) -> str | None:
        """Ask the registry to link `digest` from repository `from_path` into
        `ref`'s: None when it did; else the upload URL the registry opened
        instead (a 202), for `upload_blob`."""
        scopes = (repository_scope(ref.path, "pull,push"), repository_scope(from_path, "pull"))
        url = self._url(ref, "blobs/uploads/")
        what = f"mount blob {digest} from {from_path} into {ref.name}"
        resp = self._send(
            "POST", url, ref.domain, scopes, params={"mount": digest, "from": from_path},
            headers={"Content-Length": "0"}, what=what,
        )  # fmt: skip
        if resp.status_code == 201:
            self.note_blob(ref, digest)
            return None
        if resp.status_code == 202 and resp.headers.get("location"):
            return urljoin(url, resp.headers["location"])
        raise RegistryError(f"{what}: {registry_error_message(resp)}")

    def start_upload(self, ref: Reference) -> str:
        url = self._url(ref, "blobs/uploads/")
        what = f"start upload to {ref.name}"
        resp = self._send(
            "POST", url, ref.domain, (repository_scope(ref.path, "pull,push"),),
            headers={"Content-Length": "0"}, what=what,
        )  # fmt: skip
        if resp.status_code != 202 or not resp.headers.get("location"):
            raise RegistryError(f"{what}: {registry_error_message(resp)}")
        return urljoin(url, resp.headers["location"])

    def upload_blob(
        self, ref: Reference, desc: Descriptor, opener: Opener, location: str | None = None
    ) -> None:
        """A monolithic upload: POST (unless `location` is given), then PUT
        `?digest=` with the whole blob."""
        location = location or self.start_upload(ref)
        what = f"upload blob {desc.digest} to {ref.name}"
        sep = "&" if "?" in location else "?"
        resp = self._send(
            "PUT", f"{location}{sep}digest={desc.digest}", ref.domain,
            (repository_scope(ref.path, "pull,push"),),
            headers={"Content-Type": OCTET_STREAM, "Content-Length": str(desc.size)},
            body=opener, what=what,
        )  # fmt: skip
        if resp.status_code == 400 and "DIGEST_INVALID" in registry_error_message(resp):
            raise DigestMismatch(f"{what}: {registry_error_message(resp)}")
        if resp.status_code != 201:
            raise RegistryError(f"{what}: {registry_error_message(resp)}")
        self.note_blob(ref, desc.digest)

    def push_blob(
        self, ref: Reference, desc: Descriptor, opener: Opener, mount_from: tuple[str, ...] = ()
    ) -> str:
        """Make the blob part of `ref`'s repository, the cheapest way: "exists"
        (HEAD found it), "mounted" (from another repository of the registry), or
        "uploaded"."""
        if self.has_blob(ref, desc.digest, push=True):
            return "exists"
        location = None
        for source in (*mount_from, *self.blob_sources(ref, desc.digest)):
            if source == ref.path:
                continue
            location = self.mount_blob(ref, desc.digest, source)
            if location is None:
                return "mounted"
            break  # the registry opened an upload instead: use it
        self.upload_blob(ref, desc, opener, location)
        return "uploaded"

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> Digest:
        """Store manifest bytes as they are, under `ref`'s tag (or digest)."""
        digest = _digest_of(data)
        which = ref.tag or ref.digest or str(digest)
        what = (
            f"push manifest {ref.name}:{which}" if ref.tag else f"push manifest {ref.name}@{which}"
        )
        resp = self._send(
            "PUT", self._url(ref, f"manifests/{which}"), ref.domain,
            (repository_scope(ref.path, "pull,push"),),
            headers={"Content-Type": media_type}, body=data, what=what,
        )  # fmt: skip
        if resp.status_code not in (200, 201):
            message = registry_error_message(resp)
            if "BLOB_UNKNOWN" in message:
                raise BlobUnknown(f"{what}: {message}")
            if "MANIFEST_UNKNOWN" in message:
                raise ManifestUnknown(f"{what}: {message}")
            raise RegistryError(f"{what}: {message}")
        said = resp.headers.get("docker-content-digest", "").strip()
        if said and said != digest:
            raise DigestMismatch(f"{what}: the registry stored {said}, not {digest}")
        return digest
