"""Farm's settings: `FARM_*` environment variables, read once, at the edges.

The engine (`buildkit/`) never reads the environment: the CLI, the API and the
workers read `get_settings()` and hand the engine plain values.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "farm"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    storage: str = ""  # file:///path or s3://bucket/prefix; default file://$FARM_HOME/registry
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_path_style: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_tokens: str = ""
    server: str = ""
    token: str = ""
    worker_native_platforms: str = ""
    worker_emulated_platforms: str = ""
    # The registry API (api/registry/config.py says what each means).
    registry_anonymous_pull: str = ""
    registry_delete: bool = True
    registry_redirect_min_size: int = 0
    registry_token_secret: str = ""
    registry_token_ttl: int = 300
    registry_realm: str = ""
    registry_uploads: Path | None = None

    @field_validator("home", mode="after")
    @classmethod
    def _canonical_home(cls, value: Path) -> Path:
        # Overlay links and mount bookkeeping compare against the kernel's canonical paths.
        return value.expanduser().resolve()

    @field_validator("registry_uploads", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # FARM_REGISTRY_UPLOADS= means the default

    @property
    def storage_url(self) -> str:
        return self.storage or f"file://{self.home / 'registry'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
