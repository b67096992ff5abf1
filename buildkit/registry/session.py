"""The connection side of `RegistryClient` (`client.py`): `RegistrySession`
holds the httpx client, the tokens and challenges of each registry and the
repositories known to hold each blob, and sends every request through
`_send`, with authentication (Bearer tokens or Basic) and retries of 5xx,
429 and connection errors; `client.py` adds the distribution API on top.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, Self

import httpx

from buildkit.errors import AuthError, RegistryError
from buildkit.reference import DEFAULT_DOMAIN, Reference
from buildkit.registry.auth import (
    Challenge,
    basic_authorization,
    merge_scopes,
    parse_www_authenticate,
    token_from_response,
)
from buildkit.registry.config import RegistryConfig
from buildkit.registry.credentials import credentials_for

DOCKER_HUB_API = "registry-1.docker.io"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

Opener = Callable[[], BinaryIO]


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


class RegistrySession:
    """Connections, tokens and known blob locations shared by every request of
    a `RegistryClient`; thread-safe."""

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

    def __enter__(self) -> Self:
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


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({text})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({text})"
    return text
