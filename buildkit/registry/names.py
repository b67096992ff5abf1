"""Which image names are Farm's own and which name another registry (pure)."""

from __future__ import annotations

from buildkit.reference import DEFAULT_DOMAIN, Reference, parse_reference


def names_other_registry(ref: str | Reference, own_hosts: frozenset[str] = frozenset()) -> bool:
    """`ghcr.io/o/a:1`, `127.0.0.1:5000/a` name another registry; `app:1`,
    `team/app`, `docker.io/library/app` (and names on `own_hosts`, the farm's
    own addresses) name a repository of Farm's store, as DESIGN.md says."""
    parsed = parse_reference(ref) if isinstance(ref, str) else ref
    return parsed.domain != DEFAULT_DOMAIN and parsed.domain not in own_hosts
