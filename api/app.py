"""The Farm API: one FastAPI app. Today the OCI registry at `/v2/`; the build
API (`/v1/`), webhooks and the dashboard mount here as they arrive.

    uvicorn --factory api.app:create_app     (or `farm serve`)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from api.registry.auth import Authorizer
from api.registry.config import RegistryConfig
from api.registry.errors import (
    RegistryHTTPError,
    error_response,
    from_farm_error,
    handle_registry_error,
)
from api.registry.routes import APIVersionHeader, Registry, router
from api.registry.service import RegistryService
from api.registry.uploads import FilesystemUploads, UploadBusy, UploadStore, UploadUnknown
from buildkit.errors import FarmError, UserError
from buildkit.store.base import Store
from workers.settings import Settings, get_settings


async def _farm_error(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/v2"):
        try:
            return error_response(from_farm_error(exc), request.method)
        except FarmError:
            pass
    status = 400 if isinstance(exc, UserError) else 500
    if request.url.path.startswith("/v2"):
        body = {"errors": [{"code": "UNKNOWN", "message": str(exc)}]}
        return JSONResponse(body, status_code=status)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _upload_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UploadUnknown):
        error = RegistryHTTPError("BLOB_UPLOAD_UNKNOWN", str(exc))
    else:
        error = RegistryHTTPError("BLOB_UPLOAD_INVALID", str(exc), status=416)
    return error_response(error, request.method)


def open_uploads(store: Store, config: RegistryConfig) -> UploadStore:
    """Upload sessions in `config.uploads_dir`, or else in the S3 store's bucket."""
    if config.uploads_dir is not None:
        return FilesystemUploads(config.uploads_dir, config.upload_max_age)
    from buildkit.store.s3 import S3Store  # boto3 only for an S3 store

    if not isinstance(store, S3Store):
        raise ValueError(f"{store!r} keeps no upload sessions: give RegistryConfig.uploads_dir")
    from api.registry.s3_uploads import S3Uploads

    return S3Uploads(store, config.upload_max_age)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    config: RegistryConfig | None = None,
    uploads: UploadStore | None = None,
) -> FastAPI:
    """The app over `store` (default: the settings' store). Without arguments it
    reads the environment, so `uvicorn --factory api.app:create_app` works."""
    settings = settings or get_settings()
    if store is None:
        from workers.embedded import open_store

        store = open_store(settings)
    config = config or RegistryConfig.from_settings(settings)
    app = FastAPI(title="Farm", docs_url=None, redoc_url=None)
    app.state.registry = Registry(
        service=RegistryService(
            store,
            delete_enabled=config.delete_enabled,
            max_manifest_size=config.max_manifest_size,
        ),
        uploads=uploads or open_uploads(store, config),
        auth=Authorizer(config),
        config=config,
    )
    app.include_router(router)
    app.add_exception_handler(RegistryHTTPError, handle_registry_error)
    app.add_exception_handler(FarmError, _farm_error)
    app.add_exception_handler(UploadUnknown, _upload_error)
    app.add_exception_handler(UploadBusy, _upload_error)
    app.add_middleware(APIVersionHeader)
    return app
