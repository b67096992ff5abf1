"""The `/v2/` routes of distribution-spec v1.1. Each one validates, authorizes,
calls the service or the upload store, and shapes the answer; errors become
the spec's JSON bodies in `errors.py`.

Store calls block (files, S3), so routes are plain functions (run in the
thread pool) unless they read a request body; those stream it and hand the
writes to the thread pool.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.registry.auth import DELETE, PULL, PUSH, Authorizer
from api.registry.config import RegistryConfig
from api.registry.errors import RegistryHTTPError
from api.registry.service import (
    RegistryService,
    accepts,
    check_name,
    manifest_too_large,
    parse_digest,
)
from api.registry.uploads import ChunkWriter, RangeMismatch, UploadStore
from buildkit.digest import Digest
from buildkit.image import OCI_INDEX

router = APIRouter(include_in_schema=False)

CHUNK = 1 << 20
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Registry:
    """What the routes work with, kept on `app.state.registry`."""

    service: RegistryService
    uploads: UploadStore
    auth: Authorizer
    config: RegistryConfig


def _registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


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


# ---------------------------------------------------------------- tags and referrers


@router.get("/v2/{name:path}/tags/list")
def tags_list(
    request: Request, name: str, n: str | None = None, last: str | None = None
) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, PULL)
    limit = None
    if n is not None:
        if not n.isdigit():
            raise RegistryHTTPError(
                "UNSUPPORTED", f"n must be a non-negative integer, not {n!r}", status=400
            )
        limit = int(n)
    tags, more = reg.service.tags(name, limit, last)
    headers = {}
    if more:
        headers["Link"] = f'</v2/{name}/tags/list?n={limit}&last={quote(tags[-1])}>; rel="next"'
    return JSONResponse({"name": name, "tags": tags}, headers=headers)


@router.get("/v2/{name:path}/referrers/{digest}")
def referrers(
    request: Request, name: str, digest: str, artifactType: str | None = None
) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, PULL)
    subject = parse_digest(digest)
    body = reg.service.referrers(name, subject, artifactType or None)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifactType else {}
    return Response(body, media_type=OCI_INDEX, headers=headers)


# ---------------------------------------------------------------- manifests


@router.api_route("/v2/{name:path}/manifests/{reference}", methods=["GET", "HEAD"])
def get_manifest(request: Request, name: str, reference: str) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, PULL)
    desc, data = reg.service.get_manifest(name, reference)
    if not accepts(request.headers.getlist("accept"), desc.media_type):
        raise RegistryHTTPError(
            "MANIFEST_UNKNOWN",
            f"manifest {name}:{reference} is {desc.media_type}, which the Accept header excludes",
            detail={"mediaType": desc.media_type},
        )
    headers = {
        "Content-Type": desc.media_type,
        "Docker-Content-Digest": str(desc.digest),
        "ETag": f'"{desc.digest}"',
        "Content-Length": str(len(data)),
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return Response(data, headers=headers)


@router.put("/v2/{name:path}/manifests/{reference}")
async def put_manifest(request: Request, name: str, reference: str) -> Response:
    reg = _registry(request)
    check_name(name)
    await run_in_threadpool(reg.auth.check, request, name, PUSH)
    limit = reg.config.max_manifest_size
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise manifest_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise manifest_too_large(limit)
    desc, subject = await run_in_threadpool(
        reg.service.put_manifest,
        name,
        reference,
        bytes(body),
        request.headers.get("content-type", ""),
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{desc.digest}",
        "Docker-Content-Digest": str(desc.digest),
    }
    if subject is not None:
        headers["OCI-Subject"] = str(subject.digest)
    return Response(status_code=201, headers=headers)


@router.delete("/v2/{name:path}/manifests/{reference}")
def delete_manifest(request: Request, name: str, reference: str) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, DELETE)
    reg.service.delete_manifest(name, reference)
    return Response(status_code=202)


# ---------------------------------------------------------------- uploads


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _blob_created(name: str, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
    )


def _content_range(request: Request) -> tuple[int, int] | None:
    text = request.headers.get("content-range")
    if text is None:
        return None
    match = _CONTENT_RANGE_RE.match(text.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise RegistryHTTPError(
            "BLOB_UPLOAD_INVALID", f"invalid Content-Range {text!r}: expected <start>-<end>"
        )
    return int(match[1]), int(match[2])


async def _receive(
    request: Request, uploads: UploadStore, name: str, upload_id: str, *, chunk: bool
) -> None:
    """Append the request body to the upload. With a Content-Range (or `chunk`,
    a body that must arrive whole) an incomplete body is cut off again."""
    span = _content_range(request)
    try:
        writer: ChunkWriter = await run_in_threadpool(
            uploads.writer, name, upload_id, span[0] if span else None
        )
    except RangeMismatch as exc:
        raise RegistryHTTPError(
            "BLOB_UPLOAD_INVALID",
            f"chunk starts at {span[0] if span else '?'}, the upload holds {exc.size} bytes",
            status=416,
            headers=_upload_headers(name, upload_id, exc.size),
        ) from None
    atomic = chunk or span is not None
    buffer = bytearray()
    try:
        async for data in request.stream():
            buffer += data
            if len(buffer) >= CHUNK:
                await run_in_threadpool(writer.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(writer.write, bytes(buffer))
        if span is not None and writer.written != span[1] - span[0] + 1:
            raise RegistryHTTPError(
                "SIZE_INVALID",
                f"Content-Range {span[0]}-{span[1]} announces {span[1] - span[0] + 1} bytes, "
                f"the body has {writer.written}",
            )
    except BaseException:
        if atomic:
            await run_in_threadpool(writer.rollback)
        raise
    finally:
        await run_in_threadpool(writer.close)


@router.post("/v2/{name:path}/blobs/uploads/")
async def start_upload(
    request: Request,
    name: str,
    digest: str | None = None,
    mount: str | None = None,
    source: str | None = Query(default=None, alias="from"),
) -> Response:
    reg = _registry(request)
    check_name(name)
    await run_in_threadpool(reg.auth.check, request, name, PUSH)
    if mount:
        wanted = parse_digest(mount)
        if source is not None:
            try:
                check_name(source)
                allowed = await run_in_threadpool(reg.auth.may, request, source, PULL)
            except RegistryHTTPError:
                allowed = False
        else:
            allowed = True
        mounted = None
        if allowed:
            mounted = await run_in_threadpool(reg.service.mount, name, wanted, source)
        if mounted is not None:
            return _blob_created(name, mounted.digest)
        # not mountable: start an ordinary upload (202), as the spec says
    expected = parse_digest(digest) if digest is not None else None
    upload = await run_in_threadpool(reg.uploads.create, name)
    await _receive(request, reg.uploads, name, upload.id, chunk=expected is not None)
    if expected is not None:
        desc = await run_in_threadpool(
            reg.service.commit_upload, reg.uploads, name, upload.id, expected
        )
        return _blob_created(name, desc.digest)
    size = (await run_in_threadpool(reg.uploads.get, name, upload.id)).size
    return Response(status_code=202, headers=_upload_headers(name, upload.id, size))


@router.get("/v2/{name:path}/blobs/uploads/{upload_id}")
def upload_status(request: Request, name: str, upload_id: str) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, PUSH)
    upload = reg.uploads.get(name, upload_id)
    return Response(status_code=204, headers=_upload_headers(name, upload.id, upload.size))


@router.patch("/v2/{name:path}/blobs/uploads/{upload_id}")
async def patch_upload(request: Request, name: str, upload_id: str) -> Response:
    reg = _registry(request)
    check_name(name)
    await run_in_threadpool(reg.auth.check, request, name, PUSH)
    await _receive(request, reg.uploads, name, upload_id, chunk=False)
    size = (await run_in_threadpool(reg.uploads.get, name, upload_id)).size
    return Response(status_code=202, headers=_upload_headers(name, upload_id, size))


@router.put("/v2/{name:path}/blobs/uploads/{upload_id}")
async def finish_upload(
    request: Request, name: str, upload_id: str, digest: str | None = None
) -> Response:
    reg = _registry(request)
    check_name(name)
    await run_in_threadpool(reg.auth.check, request, name, PUSH)
    if digest is None:
        raise RegistryHTTPError("DIGEST_INVALID", "the closing PUT needs ?digest=<digest>")
    expected = parse_digest(digest)
    await _receive(request, reg.uploads, name, upload_id, chunk=True)
    desc = await run_in_threadpool(
        reg.service.commit_upload, reg.uploads, name, upload_id, expected
    )
    return _blob_created(name, desc.digest)


@router.delete("/v2/{name:path}/blobs/uploads/{upload_id}")
def cancel_upload(request: Request, name: str, upload_id: str) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, PUSH)
    reg.uploads.cancel(name, upload_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- blobs


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`Range: bytes=a-b` (one range) -> (start, end inclusive); None for the whole
    blob (no header, several ranges); 416 when it cannot be satisfied."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None or (not match[1] and not match[2]):
        return None  # several ranges, or nonsense: the whole blob, as RFC 9110 allows
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    else:  # the last N bytes
        start, end = max(size - int(match[2]), 0), size - 1
    if start >= size or start > end:
        raise RegistryHTTPError(
            "SIZE_INVALID",
            f"range {header!r} is outside the blob ({size} bytes)",
            status=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def _iter_blob(f: BinaryIO, length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            data = f.read(min(CHUNK, length))
            if not data:
                break
            length -= len(data)
            yield data
    finally:
        f.close()


@router.api_route("/v2/{name:path}/blobs/{digest}", methods=["GET", "HEAD"])
def get_blob(request: Request, name: str, digest: str) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, PULL)
    wanted = parse_digest(digest)
    size = reg.service.blob_size(name, wanted)
    headers = {
        "Docker-Content-Digest": str(wanted),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{wanted}"',
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers={**headers, "Content-Length": str(size)})
    span = _byte_range(request.headers.get("range"), size)
    url = reg.service.blob_url(wanted, size, reg.config.redirect_min_size)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Docker-Content-Digest": wanted})
    start, end = span if span is not None else (0, size - 1)
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    f = reg.service.open_blob(wanted, start)
    return StreamingResponse(_iter_blob(f, length), status_code=status, headers=headers)


@router.delete("/v2/{name:path}/blobs/{digest}")
def delete_blob(request: Request, name: str, digest: str) -> Response:
    reg = _registry(request)
    check_name(name)
    reg.auth.check(request, name, DELETE)
    reg.service.delete_blob(name, parse_digest(digest))
    return Response(status_code=202)
