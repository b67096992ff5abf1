"""The content store (`Store`, in `base.py`) and its drivers: `filesystem.py`
for a local directory, `s3.py` for a bucket (its requests in `s3bucket.py`),
both thin backends under `layout.py` (the registry:2 layout, written once).
`open_store` picks one by URL.

boto3 is imported only when an `s3://` store is opened: the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from buildkit.errors import UserError

if TYPE_CHECKING:
    from buildkit.store.base import Store


class StoreURLError(UserError, ValueError):
    """A storage URL that names no store Farm can open."""


def open_store(
    url: str, *, s3_endpoint_url: str = "", s3_region: str = "", s3_path_style: bool = False
) -> Store:
    """`file:///path` (a local directory) or `s3://bucket/prefix` (a bucket, every
    key under the prefix; credentials from boto3's usual chain). The S3 options
    reach S3-compatible servers: MinIO, Ceph RGW, R2."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreURLError(f"storage URL {url!r}: expected file:///path or s3://bucket/prefix")
    if scheme == "file":
        if not rest:
            raise StoreURLError(f"storage URL {url!r}: no path after file://")
        from buildkit.store.filesystem import FilesystemStore

        return FilesystemStore(Path(rest))
    if scheme == "s3":
        parts = urlsplit(url)
        bucket = parts.netloc
        if not bucket or parts.query or parts.fragment or "@" in bucket:
            raise StoreURLError(
                f"storage URL {url!r}: expected s3://bucket/prefix (no credentials, query or fragment)"
            )
        return _open_s3(
            bucket,
            parts.path.strip("/"),
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            path_style=s3_path_style,
        )
    raise StoreURLError(
        f"storage URL {url!r}: unsupported scheme {scheme!r}; use file:///path or s3://bucket/prefix"
    )


def _open_s3(
    bucket: str, prefix: str, *, endpoint_url: str, region: str, path_style: bool
) -> Store:
    import boto3
    from botocore.config import Config

    from buildkit.store.s3 import S3Store

    options: dict[str, object] = {"retries": {"mode": "standard", "max_attempts": 5}}
    if path_style:
        options["s3"] = {"addressing_style": "path"}
    if endpoint_url:
        # S3-compatible servers: checksums only where S3 requires them (botocore
        # >= 1.36 otherwise sends CRC32 trailers many of them refuse).
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=Config(**options),  # type: ignore[arg-type]
    )
    return S3Store(bucket, prefix, client=client)
