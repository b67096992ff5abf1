"""Who may pull, push and delete: API tokens, bearer tokens, basic auth.

Farm mode is `FARM_API_TOKENS` set: a comma-separated list of `TOKEN` or
`TOKEN:ROLE`, ROLE one of

    pull    GET and HEAD
    push    pull, and upload blobs and manifests (the default)
    admin   push, and DELETE

Without tokens (the embedded `farm serve` on loopback) nobody is asked anything.

A client proves itself in one of three ways:

- Docker's token flow: a request without credentials gets `401` and
  `WWW-Authenticate: Bearer realm="<base>/v2/token",service="farm",scope="repository:app:pull"`;
  the client asks the realm for a token (basic auth with any username and an
  API token as password, or nothing for anonymous pulls) and sends
  `Authorization: Bearer <token>`. These tokens are HMAC-signed and short-lived,
  so any API process with the same secret verifies them, without shared state
  (`FARM_REGISTRY_TOKEN_SECRET`, or the random key in `$FARM_HOME/registry-token.key`).
- basic auth on every request, the password an API token (`skopeo --creds farm:TOKEN`);
- `Authorization: Bearer <API token>` (curl, scripts).

Anonymous pulls are allowed for repositories under the configured prefixes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.registry.errors import RegistryHTTPError

if TYPE_CHECKING:
    from fastapi import Request

    from api.registry.config import RegistryConfig

PULL, PUSH, DELETE = "pull", "push", "delete"


class Role(StrEnum):
    PULL = "pull"
    PUSH = "push"
    ADMIN = "admin"

    @property
    def actions(self) -> frozenset[str]:
        return {
            Role.PULL: frozenset({PULL}),
            Role.PUSH: frozenset({PULL, PUSH}),
            Role.ADMIN: frozenset({PULL, PUSH, DELETE}),
        }[self]


class TokenConfigError(ValueError):
    """FARM_API_TOKENS that cannot be read."""


def parse_api_tokens(text: str) -> dict[str, Role]:
    """`tok1,tok2:pull,tok3:admin` -> {token: role}."""
    tokens: dict[str, Role] = {}
    for entry in text.replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        secret, _, role = entry.partition(":")
        try:
            tokens[secret] = Role(role or "push")
        except ValueError:
            raise TokenConfigError(
                f"FARM_API_TOKENS: unknown role {role!r} (expected pull, push or admin)"
            ) from None
    return tokens


SECRET_FILE = "registry-token.key"
SECRET_SIZE = 32


def load_or_create_secret(home: Path) -> bytes:
    """The HMAC key of bearer tokens when none is configured: 32 random bytes kept
    in `$FARM_HOME/registry-token.key` (0600), so every API process on this host
    verifies the tokens any of them signed. Never derived from the API tokens,
    which would let any token holder compute it and sign itself a role.

    The file appears whole or not at all: the bytes go to a private temporary file
    (O_EXCL, 0600) that is then hard-linked to the final name, which fails if
    another process got there first; its key wins and is read back."""
    path = home / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.write(fd, secrets.token_bytes(SECRET_SIZE))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise TokenConfigError(
                f"{path}: the bearer token key must be a regular file readable by its "
                f"owner only (mode 0600), found {stat.filemode(info.st_mode)}"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(data) < SECRET_SIZE:
        raise TokenConfigError(f"{path}: the bearer token key is shorter than {SECRET_SIZE} bytes")
    return data


@dataclass(frozen=True)
class Access:
    type: str
    name: str
    actions: frozenset[str]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scopes(scopes: Iterable[str]) -> list[Access]:
    """`repository:team/app:pull,push` (several per string, space-separated, as
    some clients send them) -> accesses; malformed ones are ignored."""
    found = []
    for text in scopes:
        for scope in text.split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                found.append(Access(kind, name, frozenset(a for a in actions.split(",") if a)))
    return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(secret: bytes, claims: Mapping[str, Any]) -> str:
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signature = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def verify_token(secret: bytes, token: str, audience: str, now: float | None = None) -> dict | None:
    """The claims of a token this farm signed, or None (forged, expired, for another service)."""
    payload, dot, signature = token.partition(".")
    if not dot:
        return None
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict) or claims.get("aud") != audience:
        return None
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= (now or time.time()):
        return None
    return claims


@dataclass(frozen=True)
class Principal:
    """Who is asking. `role` None is anonymous; `granted` None means everything
    the role allows (an API token), else what a bearer token grants."""

    role: Role | None = None
    granted: frozenset[tuple[str, str]] | None = None
    subject: str = "anonymous"

    def allows(self, repo: str, action: str) -> bool:
        if self.role is None or action not in self.role.actions:
            return False
        return self.granted is None or (repo, action) in self.granted


def fingerprint(token: str) -> str:
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]


class Authorizer:
    """Answers "may this request do that?" for the routes."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        # never an empty HMAC key: without one configured, a key of this process only
        self._secret = config.token_secret or secrets.token_bytes(SECRET_SIZE)

    # ---------------------------------------------------------------- identities

    def _api_token(self, secret: str) -> Role | None:
        found = None
        for token, role in self.config.tokens.items():  # constant time per token
            if hmac.compare_digest(token.encode(), secret.encode()):
                found = role
        return found

    def principal(self, request: Request) -> Principal:
        """The caller, from its Authorization header; `UNAUTHORIZED` for credentials
        that are wrong (never silently anonymous)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if not header:
            return Principal()
        if scheme == "basic":
            try:
                _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                password = ""
            role = self._api_token(password) if password else None
            if role is not None:
                return Principal(role, subject=fingerprint(password))
        elif scheme == "bearer" and value:
            role = self._api_token(value)
            if role is not None:
                return Principal(role, subject=fingerprint(value))
            claims = verify_token(self._secret, value, self.config.service)
            if claims is not None:
                granted = frozenset(
                    (a.get("name", ""), action)
                    for a in claims.get("access", [])
                    if isinstance(a, dict) and a.get("type") == "repository"
                    for action in a.get("actions", [])
                )
                try:
                    token_role = Role(claims["role"]) if claims.get("role") else None
                except ValueError:
                    token_role = None
                return Principal(token_role, granted, str(claims.get("sub", "")))
        raise self.challenge(request, None, "invalid credentials", error="invalid_token")

    def anonymous_pull(self, repo: str) -> bool:
        return any(
            p == "*" or repo == p or repo.startswith(p + "/") for p in self.config.anonymous_pull
        )

    # ---------------------------------------------------------------- decisions

    def realm(self, request: Request) -> str:
        return self.config.realm or f"{request.base_url}v2/token"

    def challenge(
        self, request: Request, scope: str | None, message: str, error: str = ""
    ) -> RegistryHTTPError:
        parts = [f'realm="{self.realm(request)}"', f'service="{self.config.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return RegistryHTTPError(
            "UNAUTHORIZED",
            message,
            headers={"WWW-Authenticate": "Bearer " + ",".join(parts)},
        )

    def check_ping(self, request: Request) -> None:
        if not self.config.auth_enabled:
            return
        principal = self.principal(request)
        if principal.role is None and principal.granted is None:
            raise self.challenge(request, None, "authentication required")

    def check(self, request: Request, repo: str, action: str) -> Principal:
        """Let the request `action` (pull, push, delete) on `repo`, or raise the
        spec's UNAUTHORIZED (with a challenge) or DENIED."""
        if not self.config.auth_enabled:
            return Principal(Role.ADMIN, subject="local")
        principal = self.principal(request)
        if principal.allows(repo, action):
            return principal
        if action == PULL and self.anonymous_pull(repo):
            return principal
        actions = {PULL: "pull", PUSH: "pull,push", DELETE: "delete"}[action]
        scope = f"repository:{repo}:{actions}"
        detail = [{"Type": "repository", "Name": repo, "Action": action}]
        if principal.role is None:
            raise self.challenge(request, scope, "authentication required")
        if principal.granted is not None and action in principal.role.actions:
            # a bearer token for other scopes: ask the client for one for this scope
            raise self.challenge(
                request, scope, "token does not cover this scope", error="insufficient_scope"
            )
        raise RegistryHTTPError(
            "DENIED", f"requested access to {repo} ({action}) is denied", detail=detail
        )

    def may(self, request: Request, repo: str, action: str) -> bool:
        try:
            self.check(request, repo, action)
        except RegistryHTTPError:
            return False
        return True

    # ---------------------------------------------------------------- the token endpoint

    def issue(self, request: Request, scopes: list[str], password: str | None = None) -> dict:
        """A bearer token for what the caller may do of what it asks for."""
        if password is not None:
            role = self._api_token(password)
            if role is None:
                raise RegistryHTTPError("UNAUTHORIZED", "invalid credentials")
            principal = Principal(role, subject=fingerprint(password))
        else:
            principal = self.principal(request)
            if principal.granted is not None:  # a bearer token does not buy another
                principal = Principal(subject=principal.subject)
        access = []
        for wanted in parse_scopes(scopes):
            if wanted.type != "repository":
                continue
            allowed = {
                a
                for a in wanted.actions
                if not self.config.auth_enabled
                or (principal.role is not None and a in principal.role.actions)
                or (a == PULL and self.anonymous_pull(wanted.name))
            }
            if allowed:
                access.append(Access("repository", wanted.name, frozenset(allowed)))
        now = int(time.time())
        claims = {
            "iss": "farm",
            "aud": self.config.service,
            "sub": principal.subject,
            "iat": now,
            "exp": now + self.config.token_ttl,
            "role": principal.role.value if principal.role else "",
            "access": [a.to_dict() for a in access],
        }
        token = sign_token(self._secret, claims)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.config.token_ttl,
            "issued_at": issued,
        }
