"""How to reach registries: a plain value the caller fills (the engine reads no environment).

Kept apart from `client.py` so that code which only carries the configuration
does not import httpx (a tenth of a second of every `farm build`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from buildkit.registry.credentials import Credential


@dataclass(frozen=True)
class RegistryConfig:
    """How to reach registries. `credentials` by host (`docker.io`,
    `127.0.0.1:5000`); `insecure` hosts (with or without port) use plain HTTP;
    `retries` extra attempts after a 5xx or a connection error, waiting
    `backoff`, 2*`backoff`, 4*`backoff`... seconds. `trust_env` lets httpx read
    proxy and CA settings from the environment: the engine never does unless
    its caller (the CLI) says so."""

    credentials: Mapping[str, Credential] = field(default_factory=dict)
    insecure: frozenset[str] = frozenset()
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 60.0
    user_agent: str = "farm"
    trust_env: bool = False
