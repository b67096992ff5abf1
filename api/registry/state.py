"""What every `/v2/` route works with: `Registry` (the service, the upload
store, the authorizer and the config), kept on `app.state.registry` by
`api.app` and read back by `_registry(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.registry.auth import Authorizer
from api.registry.config import RegistryConfig
from api.registry.service import RegistryService, check_name
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


def authorized(request: Request, name: str, action: str) -> Registry:
    """The registry, once `name` is a valid repository name and the request may
    `action` (pull, push, delete) it; else the spec's error."""
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, action)
    return reg


async def authorized_async(request: Request, name: str, action: str) -> Registry:
    """`authorized`, for async routes (checking a token may read files)."""
    reg = _registry(request)
    check_name(name)
    await run_in_threadpool(reg.auth.check, request, name, action)
    return reg
