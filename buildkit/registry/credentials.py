"""Credentials by registry host.

Two sources, merged by the caller: an explicit mapping (Farm's settings) and
Docker's `config.json`, of which only `auths` entries with a base64
`user:password` in `auth` (or `username`/`password`) are used:

    {"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwdw=="},
               "127.0.0.1:5000": {"auth": "..."}},
     "credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}}

Credential helpers (`credsStore`, `credHelpers`) are programs Farm does not
run: they are skipped with a warning. Pure: the caller reads the file (where
it is comes from the environment: `DOCKER_CONFIG`, `~/.docker`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildkit.errors import UserError

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io")  # fmt: skip


class CredentialsError(UserError):
    """A Docker config file that cannot be read."""


@dataclass(frozen=True)
class Credential:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password
        return f"Credential(username={self.username!r}, password='***')"


def normalize_host(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://127.0.0.1:5000/v2/` →
    `127.0.0.1:5000`: config.json keys are URLs or bare hosts."""
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in DOCKER_HUB_KEYS else host


def parse_docker_config(
    content: str | bytes | Mapping[str, Any],
    warn: Callable[[str], None] = lambda text: None,
    source: str = "config.json",
) -> dict[str, Credential]:
    """Credentials by normalised host from the text (or JSON) of a Docker config."""
    if isinstance(content, Mapping):
        doc: Any = content
    else:
        try:
            doc = json.loads(content or "{}")
        except ValueError as exc:
            raise CredentialsError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise CredentialsError(f"{source}: expected a JSON object")
    found: dict[str, Credential] = {}
    auths = doc.get("auths")
    auths = {} if auths is None else auths
    if not isinstance(auths, Mapping):
        raise CredentialsError(f"{source}: 'auths' must be an object")
    for key, entry in auths.items():
        if not isinstance(entry, Mapping):
            warn(f"WARNING: {source}: auths[{key!r}] is not an object; skipped")
            continue
        cred = _entry_credential(key, entry, warn, source)
        if cred is not None:
            found[normalize_host(key)] = cred
    store = doc.get("credsStore")
    if store:
        warn(
            f"WARNING: {source}: credsStore {store!r} is not supported (Farm runs no "
            "credential helpers); only 'auths' entries with 'auth' are used"
        )
    helpers = doc.get("credHelpers") or {}
    if isinstance(helpers, Mapping):
        for host, helper in helpers.items():
            warn(
                f"WARNING: {source}: credHelpers[{host!r}] = {helper!r} is not supported; "
                "no credentials for that registry"
            )
    return found


def _entry_credential(
    key: str, entry: Mapping[str, Any], warn: Callable[[str], None], source: str
) -> Credential | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            text = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            warn(f"WARNING: {source}: auths[{key!r}].auth is not base64 of user:password; skipped")
            return None
        user, sep, password = text.partition(":")
        if not sep or not user:
            warn(f"WARNING: {source}: auths[{key!r}].auth is not user:password; skipped")
            return None
        return Credential(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and name and isinstance(secret, str):
        return Credential(name, secret)
    if entry.get("identitytoken"):
        warn(f"WARNING: {source}: auths[{key!r}] has an identity token; not supported, skipped")
    return None


def load_docker_config(
    path: Path, warn: Callable[[str], None] = lambda text: None
) -> dict[str, Credential]:
    """Read a Docker config file; a missing file means no credentials."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from None
    return parse_docker_config(text, warn, str(path))


def credentials_for(credentials: Mapping[str, Credential], host: str) -> Credential | None:
    """The credential for a registry host (keys may be URLs; Docker Hub's aliases match)."""
    want = normalize_host(host)
    for key, cred in credentials.items():
        if normalize_host(key) == want:
            return cred
    return None
