"""The blob routes of `/v2/`: uploads (started, mounted, sent whole, in
chunks or in one PATCH stream, finished, cancelled) and a blob's GET (whole,
a byte range, or a redirect to the store), HEAD and DELETE. Included in
`routes.router`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.registry.auth import DELETE, PULL, PUSH
from api.registry.errors import RegistryHTTPError
from api.registry.service import check_name, parse_digest
from api.registry.state import authorized, authorized_async
from api.registry.uploads import ChunkWriter, RangeMismatch, UploadBusy, UploadStore
from buildkit.digest import Digest

router = APIRouter(include_in_schema=False)

CHUNK = 1 << 20
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


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
) -> int:
    """Append the request body to the upload; return the upload's size then.
    With a Content-Range (or `chunk`, a body that must arrive whole) an
    incomplete body is cut off again."""
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
    except UploadBusy as exc:
        raise await _busy(uploads, name, upload_id, exc) from None
    try:
        await _append(request, writer, span, atomic=chunk or span is not None)
    except UploadBusy as exc:
        raise await _busy(uploads, name, upload_id, exc) from None
    return writer.end


async def _busy(
    uploads: UploadStore, name: str, upload_id: str, exc: UploadBusy
) -> RegistryHTTPError:
    """Another request is appending: 416 with where the session stands, as for
    a chunk out of order, so the client can go on from there."""
    size = (await run_in_threadpool(uploads.get, name, upload_id)).size
    return RegistryHTTPError(
        "BLOB_UPLOAD_INVALID", str(exc), status=416, headers=_upload_headers(name, upload_id, size)
    )


async def _append(
    request: Request, writer: ChunkWriter, span: tuple[int, int] | None, *, atomic: bool
) -> None:
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
        await run_in_threadpool(writer.close)  # may fail too (busy): then it is rolled back
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
    reg = await authorized_async(request, name, PUSH)
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
    size = await _receive(request, reg.uploads, name, upload.id, chunk=expected is not None)
    if expected is not None:
        desc = await run_in_threadpool(
            reg.service.commit_upload, reg.uploads, name, upload.id, expected
        )
        return _blob_created(name, desc.digest)
    return Response(status_code=202, headers=_upload_headers(name, upload.id, size))


@router.get("/v2/{name:path}/blobs/uploads/{upload_id}")
def upload_status(request: Request, name: str, upload_id: str) -> Response:
    reg = authorized(request, name, PUSH)
    upload = reg.uploads.get(name, upload_id)
    return Response(status_code=204, headers=_upload_headers(name, upload.id, upload.size))


@router.patch("/v2/{name:path}/blobs/uploads/{upload_id}")
async def patch_upload(request: Request, name: str, upload_id: str) -> Response:
    reg = await authorized_async(request, name, PUSH)
    size = await _receive(request, reg.uploads, name, upload_id, chunk=False)
    return Response(status_code=202, headers=_upload_headers(name, upload_id, size))


@router.put("/v2/{name:path}/blobs/uploads/{upload_id}")
async def finish_upload(
    request: Request, name: str, upload_id: str, digest: str | None = None
) -> Response:
    reg = await authorized_async(request, name, PUSH)
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
    reg = authorized(request, name, PUSH)
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
    reg = authorized(request, name, PULL)
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
    reg = authorized(request, name, DELETE)
    reg.service.delete_blob(name, parse_digest(digest))
    return Response(status_code=202)
