"""What the settings say about the registry, as one frozen value.

All of them are read by `workers.settings.Settings` with the rest of Farm's
settings; `RegistryConfig.from_settings` turns them into one frozen value:

| setting | meaning | default |
| --- | --- | --- |
| `FARM_REGISTRY_ANONYMOUS_PULL` | repository prefixes anyone may pull (`public,team/docs`; `*` for all) | none |
| `FARM_REGISTRY_DELETE` | DELETE of manifests, tags and blobs (admin tokens in farm mode) | on |
| `FARM_REGISTRY_REDIRECT_MIN_SIZE` | blobs this large are redirected to the store's URL (S3 presigned); 0 never | 0 |
| `FARM_REGISTRY_TOKEN_SECRET` | HMAC key of bearer tokens (set it, the same everywhere, when API processes run on several hosts) | random, kept in `$FARM_HOME/registry-token.key` |
| `FARM_REGISTRY_TOKEN_TTL` | bearer token lifetime, seconds | 300 |
| `FARM_REGISTRY_REALM` | public URL of the token endpoint | `<request base>/v2/token` |
| `FARM_REGISTRY_UPLOADS` | a directory for blob upload sessions, shared by the API processes | with an S3 store, its bucket; else `$FARM_HOME/uploads` |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from api.registry.auth import Role, load_or_create_secret, parse_api_tokens
from workers.settings import Settings

MAX_MANIFEST_SIZE = 4 << 20  # the spec: registries SHOULD accept at least 4 MiB
UPLOAD_MAX_AGE = 24 * 3600


@dataclass(frozen=True)
class RegistryConfig:
    tokens: Mapping[str, Role] = field(default_factory=dict)  # empty: no auth at all
    anonymous_pull: tuple[str, ...] = ()
    delete_enabled: bool = True
    redirect_min_size: int = 0
    token_secret: bytes = b""
    token_ttl: int = 300
    realm: str = ""
    service: str = "farm"
    uploads_dir: Path | None = None  # None: in the store's bucket (an S3 store)
    upload_max_age: int = UPLOAD_MAX_AGE
    max_manifest_size: int = MAX_MANIFEST_SIZE

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryConfig:
        tokens = parse_api_tokens(settings.api_tokens)
        prefixes = (p.strip().strip("/") for p in settings.registry_anonymous_pull.split(","))
        secret = settings.registry_token_secret.encode()
        if not secret and tokens:  # without tokens there is no auth, and no token to verify
            secret = load_or_create_secret(settings.home)
        return cls(
            tokens=tokens,
            anonymous_pull=tuple(p for p in prefixes if p),
            delete_enabled=settings.registry_delete,
            redirect_min_size=max(0, settings.registry_redirect_min_size),
            token_secret=secret,
            token_ttl=settings.registry_token_ttl,
            realm=settings.registry_realm,
            uploads_dir=_uploads_dir(settings),
        )


def _uploads_dir(settings: Settings) -> Path | None:
    """Where upload sessions go: the directory the settings name; none (the
    bucket) for an S3 store; else beside the local store, in `$FARM_HOME`."""
    if settings.registry_uploads is not None:
        return settings.registry_uploads
    if settings.storage_url.startswith("s3://"):
        return None
    return settings.home / "uploads"
