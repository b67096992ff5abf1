"""The manifest routes of `/v2/`: tag lists, referrers, and a manifest's GET,
HEAD, PUT and DELETE. Included in `routes.router`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.registry.auth import DELETE, PULL, PUSH
from api.registry.errors import RegistryHTTPError
from api.registry.service import accepts, manifest_too_large, parse_digest
from api.registry.state import authorized, authorized_async
from buildkit.image import OCI_INDEX

router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------- tags and referrers


def _page_size(n: str | None) -> int | None:
    if n is None:
        return None
    if not n.isascii() or not n.isdigit():  # "²".isdigit() too
        raise RegistryHTTPError(
            "UNSUPPORTED", f"n must be a non-negative integer, not {n!r}", status=400
        )
    return int(n)


def _next_link(path: str, **params: str | int | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f'<{path}?{query}>; rel="next"'


@router.get("/v2/{name:path}/tags/list")
def tags_list(
    request: Request, name: str, n: str | None = None, last: str | None = None
) -> Response:
    reg = authorized(request, name, PULL)
    limit = _page_size(n)
    tags, more = reg.service.tags(name, limit, last)
    headers = {}
    if more:
        headers["Link"] = _next_link(f"/v2/{name}/tags/list", n=limit, last=tags[-1])
    return JSONResponse({"name": name, "tags": tags}, headers=headers)


@router.get("/v2/{name:path}/referrers/{digest}")
def referrers(
    request: Request,
    name: str,
    digest: str,
    artifactType: str | None = None,
    n: str | None = None,
    last: str | None = None,
) -> Response:
    """The referrers of `digest`, in pages (the spec's Link header) when there
    are more than `n` or the service's page size."""
    reg = authorized(request, name, PULL)
    subject = parse_digest(digest)
    body, after = reg.service.referrers(name, subject, artifactType or None, _page_size(n), last)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifactType else {}
    if after is not None:
        headers["Link"] = _next_link(
            f"/v2/{name}/referrers/{subject}", artifactType=artifactType or None, n=n, last=after
        )
    return Response(body, media_type=OCI_INDEX, headers=headers)


# ---------------------------------------------------------------- manifests


@router.api_route("/v2/{name:path}/manifests/{reference}", methods=["GET", "HEAD"])
def get_manifest(request: Request, name: str, reference: str) -> Response:
    reg = authorized(request, name, PULL)
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
    reg = await authorized_async(request, name, PUSH)
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
    reg = authorized(request, name, DELETE)
    reg.service.delete_manifest(name, reference)
    return Response(status_code=202)
