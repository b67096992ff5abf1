"""The `/v2/` routes of distribution-spec v1.1. Each one validates, authorizes,
calls the service or the upload store, and shapes the answer; errors become
the spec's JSON bodies in `errors.py`.

Store calls block (files, S3), so routes are plain functions (run in the
thread pool) unless they read a request body; those stream it and hand the
writes to the thread pool.

The routes live by what they serve: `manifest_routes.py` (tags, referrers,
manifests) and `blob_routes.py` (uploads, blobs), both included in `router`
below in the order FastAPI must match them; `state.py` holds `Registry`.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.registry import blob_routes, manifest_routes
from api.registry.blob_routes import _byte_range
from api.registry.errors import RegistryHTTPError
from api.registry.state import Registry, _registry

__all__ = ["APIVersionHeader", "Registry", "_byte_range", "router"]

router = APIRouter(include_in_schema=False)


class APIVersionHeader:
    """`Docker-Distribution-API-Version: registry/2.0` on every `/v2/` answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"docker-distribution-api-version" for k, _ in headers):
                    headers.append((b"docker-distribution-api-version", b"registry/2.0"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


# ---------------------------------------------------------------- base and token


@router.api_route("/v2/", methods=["GET", "HEAD"])
def ping(request: Request) -> Response:
    _registry(request).auth.check_ping(request)
    return JSONResponse({})


@router.get("/v2/token")
def token_get(request: Request, scope: list[str] = Query(default=[])) -> Response:  # noqa: B008
    return JSONResponse(_registry(request).auth.issue(request, scope))


@router.post("/v2/token")
async def token_post(request: Request) -> Response:
    """The OAuth2 form containerd uses: grant_type=password with the API token as
    password (any username)."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    if form.get("grant_type", [""])[0] != "password":
        raise RegistryHTTPError(
            "UNSUPPORTED",
            "only grant_type=password is supported; or GET with basic auth",
            status=400,
        )
    scopes = form.get("scope", [])
    password = form.get("password", [""])[0]
    reg = _registry(request)
    answer = await run_in_threadpool(reg.auth.issue, request, scopes, password)
    return JSONResponse(answer)


router.include_router(manifest_routes.router)
router.include_router(blob_routes.router)
