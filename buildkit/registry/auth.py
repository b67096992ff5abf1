"""Registry authentication, pure: challenges, headers and scopes.

A registry answers an unauthenticated request with 401 and a challenge
(RFC 7235, the distribution token spec):

    WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"
    WWW-Authenticate: Basic realm="basic-realm"

For Bearer the client asks `realm?service=...&scope=...` (with Basic
credentials when it has some, anonymously otherwise) for a token, then sends
`Authorization: Bearer <token>`. For Basic it sends the credentials directly.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,|$)')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|(?=,)|$)")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header; `scheme` is lower-cased."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The `scope` parameter: space-separated scopes, as the token spec allows."""
        return tuple(self.params.get("scope", "").split())


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Every challenge in a header value, in order: `Bearer realm="x",scope="y", Basic realm="z"`.

    Parameter names are lower-cased, quoted values unescaped; a malformed tail is
    ignored (as clients are lenient), an empty header gives no challenge."""
    challenges: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        m = _SCHEME_RE.match(text, pos)
        if m is None:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(text):
            p = _PARAM_RE.match(text, pos)
            if p is None:
                break
            name, quoted, bare = p.groups()
            params[name.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            pos = p.end()
        challenges.append(Challenge(scheme, params))
        # A challenge without parameters is followed by "," or the next scheme.
        while pos < len(text) and text[pos] in ", ":
            pos += 1
    return challenges


def basic_authorization(username: str, password: str) -> str:
    """The value of an `Authorization: Basic` header."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def repository_scope(path: str, actions: str = "pull") -> str:
    """`repository:library/alpine:pull` (actions: `pull` or `pull,push`)."""
    return f"repository:{path}:{actions}"


def merge_scopes(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Scopes in first-seen order, with the actions of one resource merged:
    `repository:a:pull` + `repository:a:push` → `repository:a:pull,push`."""
    actions: dict[str, list[str]] = {}
    for group in groups:
        for scope in group:
            resource, sep, acts = scope.rpartition(":")
            if not sep or not resource:
                resource, acts = scope, ""
            have = actions.setdefault(resource, [])
            for act in acts.split(","):
                if act and act not in have:
                    have.append(act)
    return tuple(f"{res}:{','.join(acts)}" if acts else res for res, acts in actions.items())


def token_from_response(body: Any) -> str:
    """The token of a token endpoint's JSON answer (`token`, or OAuth2's
    `access_token`); "" when there is none."""
    if not isinstance(body, dict):
        return ""
    token = body.get("token") or body.get("access_token") or ""
    return token if isinstance(token, str) else ""
