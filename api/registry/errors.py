"""The distribution-spec's errors: `{"errors": [{"code", "message", "detail"}]}`
with the HTTP status each code travels with."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

# code -> the status it usually travels with
STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
}


class RegistryHTTPError(Exception):
    """An error the registry answers with a spec error body."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS[code]
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def error_response(exc: RegistryHTTPError, method: str = "GET") -> Response:
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **exc.headers}
    if method == "HEAD":  # a HEAD answer has no body
        return Response(status_code=exc.status, headers=headers)
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def handle_registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryHTTPError)
    return error_response(exc, request.method)


def from_farm_error(exc: Exception) -> RegistryHTTPError:
    """The spec's error for what the store raised (context-free meanings only:
    the service raises the context-dependent ones, as MANIFEST_BLOB_UNKNOWN)."""
    from buildkit.digest import InvalidDigest
    from buildkit.errors import BlobUnknown, DigestMismatch, ManifestUnknown, ReferenceFormatError
    from buildkit.image import ManifestInvalid
    from buildkit.store.base import NameUnknown

    message = str(exc)
    if isinstance(exc, NameUnknown):
        return RegistryHTTPError("NAME_UNKNOWN", message)
    if isinstance(exc, ManifestUnknown):
        return RegistryHTTPError("MANIFEST_UNKNOWN", message)
    if isinstance(exc, BlobUnknown):
        return RegistryHTTPError("BLOB_UNKNOWN", message)
    if isinstance(exc, InvalidDigest | DigestMismatch):
        return RegistryHTTPError("DIGEST_INVALID", message)
    if isinstance(exc, ManifestInvalid):
        return RegistryHTTPError("MANIFEST_INVALID", message)
    if isinstance(exc, ReferenceFormatError):
        return RegistryHTTPError("NAME_INVALID", message)
    raise exc


async def handle_farm_error(request: Request, exc: Exception) -> Response:
    return error_response(from_farm_error(exc), request.method)
