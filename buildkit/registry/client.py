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
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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
    ManifestInvalid,
    detect_media_type,
)
from buildkit.reference import DEFAULT_DOMAIN, Reference
from buildkit.registry.auth import (
    Challenge,
    basic_authorization,
    merge_scopes,
    parse_www_authenticate,
    repository_scope,
    token_from_response,
)
from buildkit.registry.config import RegistryConfig
from buildkit.registry.credentials import credentials_for

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
MAX_MANIFEST_SIZE = 4 << 20  # what registry:2 accepts
DOCKER_HUB_API = "registry-1.docker.io"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
OCTET_STREAM = "application/octet-stream"

Opener = Callable[[], BinaryIO]


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


def _host_of(domain: str) -> str:
    """`127.0.0.1:5000` → `127.0.0.1`; `[::1]:5000` → `[::1]`."""
    if domain.startswith("["):
        return domain[: domain.index("]") + 1]
    return domain.rsplit(":", 1)[0] if ":" in domain else domain


def registry_error_message(resp: httpx.Response) -> str:
    """The `errors[].message` of a registry's JSON error body, or its status text."""
    try:
        body = resp.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if isinstance(err, dict):
                    code, msg = err.get("code", ""), err.get("message", "")
                    parts.append(f"{code}: {msg}" if code and msg else str(code or msg))
            if parts:
                return "; ".join(parts)
    except (ValueError, httpx.ResponseNotRead, UnicodeDecodeError):
        pass
    return f"{resp.status_code} {resp.reason_phrase}".strip()


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


class RegistryClient:
    """One client for every registry (connections, tokens and known blob
    locations are shared); thread-safe. Close it, or use it as a context manager."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or RegistryConfig()
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport,
            timeout=self.config.timeout,
            follow_redirects=True,  # httpx drops Authorization on a redirect to another host
            headers={"User-Agent": self.config.user_agent},
            trust_env=self.config.trust_env,
        )
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}
        self._challenges: dict[str, Challenge] = {}
        self._locations: dict[tuple[str, str], list[str]] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ addresses

    def is_insecure(self, domain: str) -> bool:
        host = _host_of(domain)
        return (
            host in LOOPBACK_HOSTS or domain in self.config.insecure or host in self.config.insecure
        )

    def base_url(self, domain: str) -> str:
        host = DOCKER_HUB_API if domain == DEFAULT_DOMAIN else domain
        return f"{'http' if self.is_insecure(domain) else 'https'}://{host}"

    def _url(self, ref: Reference, tail: str) -> str:
        return f"{self.base_url(ref.domain)}/v2/{ref.path}/{tail}"

    # ------------------------------------------------------------ blob locations

    def note_blob(self, ref: Reference, digest: str) -> None:
        """Remember that `ref`'s repository holds `digest` (a source for mounts)."""
        with self._lock:
            repos = self._locations.setdefault((ref.domain, digest), [])
            if ref.path not in repos:
                repos.append(ref.path)

    def blob_sources(self, ref: Reference, digest: str) -> list[str]:
        """Other repositories of `ref`'s registry known to hold `digest`."""
        with self._lock:
            return [p for p in self._locations.get((ref.domain, digest), []) if p != ref.path]

    # ------------------------------------------------------------ requests

    def _send(
        self,
        method: str,
        url: str,
        domain: str,
        scopes: tuple[str, ...],
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Opener | bytes | None = None,
        stream: bool = False,
        what: str = "",
    ) -> httpx.Response:
        """Send with auth and retries; the caller checks the status (and closes a stream)."""
        what = what or f"{method} {url}"
        attempt = 0
        answered = False
        while True:
            hdrs = dict(headers or {})
            auth = self._authorization(domain, scopes)
            if auth:
                hdrs["Authorization"] = auth
            content: Any = None
            opened: BinaryIO | None = None
            if isinstance(body, bytes):
                content = body
            elif body is not None:
                opened = body()
                content = iter(lambda f=opened: f.read(1 << 20), b"")  # type: ignore[misc]
            try:
                request = self._http.build_request(
                    method, url, headers=hdrs, params=params, content=content
                )
                resp = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.config.retries:
                    self._backoff(attempt)
                    attempt += 1
                    continue
                raise RegistryError(f"{what}: {_describe(exc)}") from exc
            except httpx.HTTPError as exc:
                raise RegistryError(f"{what}: {exc}") from exc
            finally:
                if opened is not None:
                    opened.close()
            if resp.status_code == 401 and not answered:
                challenges = parse_www_authenticate(resp.headers.get("www-authenticate", ""))
                resp.close()
                self._answer(domain, scopes, challenges, what)
                answered = True
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.config.retries:
                resp.close()
                self._backoff(attempt)
                attempt += 1
                continue
            if resp.status_code in (401, 403):
                if stream:
                    resp.read()
                message = registry_error_message(resp)
                resp.close()
                verb = "authentication failed" if resp.status_code == 401 else "access denied"
                raise AuthError(
                    f"{what}: {verb} for {domain} ({message}); check the credentials "
                    f"given for {domain} (docker login {domain}, or config.json)"
                )
            return resp

    def _backoff(self, attempt: int) -> None:
        self._sleep(self.config.backoff * (2**attempt))

    def _authorization(self, domain: str, scopes: tuple[str, ...]) -> str:
        with self._lock:
            challenge = self._challenges.get(domain)
            if challenge is None:
                return ""
            if challenge.scheme == "basic":
                cred = credentials_for(self.config.credentials, domain)
                return basic_authorization(cred.username, cred.password) if cred else ""
            token = self._tokens.get((domain, scopes))
        if token is not None and token[1] > time.monotonic():
            return f"Bearer {token[0]}"
        # The registry wants tokens: get one for these scopes before asking.
        return f"Bearer {self._fetch_token(domain, scopes, challenge, '')}"

    def _answer(
        self, domain: str, scopes: tuple[str, ...], challenges: list[Challenge], what: str
    ) -> None:
        """Remember how `domain` authenticates, and get a token if it wants one."""
        cred = credentials_for(self.config.credentials, domain)
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.realm:
                with self._lock:
                    self._challenges[domain] = challenge
                self._fetch_token(domain, scopes, challenge, what)
                return
            if challenge.scheme == "basic":
                if cred is None:
                    raise AuthError(
                        f"{what}: {domain} requires a user name and password and none is "
                        f"given (docker login {domain}, or config.json)"
                    )
                with self._lock:
                    self._challenges[domain] = challenge
                return
        raise AuthError(f"{what}: {domain} requires authentication Farm cannot do: {challenges}")

    def _fetch_token(
        self, domain: str, scopes: tuple[str, ...], challenge: Challenge, what: str
    ) -> str:
        wanted = merge_scopes(scopes, challenge.scopes)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params += [("scope", s) for s in wanted]
        cred = credentials_for(self.config.credentials, domain)
        headers = (
            {"Authorization": basic_authorization(cred.username, cred.password)} if cred else {}
        )
        if cred:
            params.append(("account", cred.username))
        where = what or f"token for {domain}"
        try:
            resp = self._http.get(challenge.realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"{where}: token endpoint {challenge.realm}: {_describe(exc)}"
            ) from exc
        if resp.status_code in (401, 403):
            who = f"user {cred.username!r}" if cred else "anonymous access"
            raise AuthError(
                f"{where}: {challenge.realm} refused {who} for {domain} "
                f"({registry_error_message(resp)}); check the credentials given for {domain}"
            )
        if resp.status_code != 200:
            raise RegistryError(
                f"{where}: token endpoint {challenge.realm} answered {registry_error_message(resp)}"
            )
        try:
            body = resp.json()
        except ValueError:
            body = None
        token = token_from_response(body)
        if not token:
            raise AuthError(f"{where}: token endpoint {challenge.realm} gave no token")
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        lifetime = (
            float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        )
        with self._lock:
            # Renewed a little early, so a token does not expire in flight.
            self._tokens[(domain, scopes)] = (token, time.monotonic() + max(lifetime - 10, 1))
        return token

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
            if resp.status_code == 404:
                resp.read()
                raise ManifestUnknown(f"{what}: manifest unknown ({registry_error_message(resp)})")
            if resp.status_code != 200:
                resp.read()
                raise RegistryError(f"{what}: {registry_error_message(resp)}")
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
            if resp.status_code == 404:
                resp.read()
                raise BlobUnknown(f"{what}: blob unknown ({registry_error_message(resp)})")
            if resp.status_code != 200:
                resp.read()
                raise RegistryError(f"{what}: {registry_error_message(resp)}")
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


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({text})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({text})"
    return text
