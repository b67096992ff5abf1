"""Docker image references: parsing and normalising, as Docker does.

`alpine` is `docker.io/library/alpine:latest`; `ghcr.io/o/a:1` keeps its
registry; `localhost:5000/a` names a registry with a port; `a@sha256:<hex>`
pins a digest (and gets no default tag). Pure: no network, no disk.

Grammar (from the distribution/reference package's documentation):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]     host: DNS labels joined by ".", or [IPv6]
    path-component := [a-z0-9]+ (separator [a-z0-9]+)*   separator: . _ __ -+
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex (sha256: 64 hex digits)

The first part of a name is a registry host when it contains "." or ":", is
`localhost`, or has upper-case letters; otherwise the name is on Docker Hub,
and a one-part Docker Hub name is under `library/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildkit.errors import ReferenceFormatError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: `domain/path[:tag][@digest]`."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """`docker.io/library/alpine`: the repository with its registry."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """`alpine`, `user/app`, `ghcr.io/o/a`: the name as Docker prints it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(OFFICIAL_REPO_PREFIX)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def with_default_tag(self) -> Reference:
        """Add `:latest` when the reference has neither tag nor digest."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG, self.digest)


def _bad(text: str, why: str = "") -> ReferenceFormatError:
    suffix = f": {why}" if why else ""
    return ReferenceFormatError(f"invalid reference format{suffix}: {text!r}")


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    is_host = slash and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    if not is_host:
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def parse_reference(text: str) -> Reference:
    """Parse and normalise a reference; no default tag is added (see `normalize`)."""
    if not text:
        raise _bad(text, "empty")
    if _HEX64_RE.fullmatch(text):
        raise ReferenceFormatError(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    rest, at, digest = text.partition("@")
    if at:
        algo, _, hexpart = digest.partition(":")
        if not _DIGEST_RE.fullmatch(digest):
            raise _bad(text, "bad digest")
        want = _DIGEST_LENGTHS.get(algo)
        if want is not None and not re.fullmatch(f"[a-f0-9]{{{want}}}", hexpart):
            raise _bad(text, f"{algo} digest needs {want} lower-case hex digits")
    # A tag is after the last ":" that follows the last "/" (a port is before it).
    tag = ""
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise _bad(text, f"bad tag {tag!r}")
    if not rest:
        raise _bad(text, "no repository name")
    domain, path = _split_domain(rest)
    if not _DOMAIN_RE.fullmatch(domain):
        raise _bad(text, f"bad registry host {domain!r}")
    if not _PATH_RE.fullmatch(path):
        if _PATH_RE.fullmatch(path.lower()):
            raise ReferenceFormatError(
                f"invalid reference format: repository name ({path}) must be lowercase"
            )
        raise _bad(text)
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceFormatError(
            f"invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters: {text!r}"
        )
    return Reference(domain, path, tag, digest if at else "")


def normalize(text: str) -> str:
    """`alpine` → `docker.io/library/alpine:latest`, as BuildKit names a FROM image."""
    return str(parse_reference(text).with_default_tag())
