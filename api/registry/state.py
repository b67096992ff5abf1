"""What every `/v2/` route works with: `Registry` (the service, the upload
store, the authorizer and the config), kept on `app.state.registry` by
`api.app` and read back by `_registry(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from api.registry.auth import Authorizer
from api.registry.config import RegistryConfig
from api.registry.service import RegistryService
from api.registry.uploads import UploadStore


@dataclass(frozen=True)
class Registry:
    """What the routes work with, kept on `app.state.registry`."""

    service: RegistryService
    uploads: UploadStore
    auth: Authorizer
    config: RegistryConfig


def _registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]
