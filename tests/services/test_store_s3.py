"""The S3 store against a real S3 HTTP server (moto's server mode): the same
contract as the filesystem store, the exact keys, multipart uploads and copies,
and botocore's errors translated into Farm's."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from buildkit.digest import Digest
from buildkit.errors import StorageError
from buildkit.image import OCI_MANIFEST
from buildkit.store import StoreURLError, open_store
from buildkit.store.base import BlobURLs, put_bytes, read_blob
from buildkit.store.filesystem import FilesystemStore
from buildkit.store.s3 import MIN_PART_SIZE, S3Store
from tests.buildkit.store_contract import StoreContract, StoreHarness, blob_key, manifest_bytes
from tests.services.conftest import free_port, s3_client

pytestmark = pytest.mark.services

PART = MIN_PART_SIZE
PREFIX = "team/farm"
REPO_ROOT = Path(__file__).resolve().parents[2]


class S3Harness(StoreHarness):
    def __init__(self, client: Any, bucket: str, prefix: str = PREFIX) -> None:
        self.client = client
        self.bucket = bucket
        self.s3 = S3Store(bucket, prefix, client=client, part_size=PART)
        self.store = self.s3
        self.big = 2 * PART + 12345  # three parts

    def all_keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))

    def _under(self, prefix: str) -> list[str]:
        return [k[len(prefix) :] for k in self.all_keys() if k.startswith(prefix)]

    def files(self) -> list[str]:
        return self._under(self.s3.v2)

    def _get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def read(self, key: str) -> bytes:
        return self._get(self.s3.v2 + key)

    def read_record(self, key: str) -> bytes:
        return self._get(self.s3.records + key)

    def uploads(self) -> list[str]:
        response = self.client.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in response.get("Uploads", ())]

    def leftovers(self) -> list[str]:
        return self._under(self.s3.tmp) + self.uploads()

    @contextlib.contextmanager
    def writes(self) -> Iterator[list[str]]:
        """Keys in the order they became visible: PutObject, CopyObject and
        CompleteMultipartUpload are the only calls that make one appear."""
        order: list[str] = []

        def spy(name: str) -> Any:
            real = getattr(self.client, name)

            def call(**kwargs: Any) -> Any:
                result = real(**kwargs)
                if kwargs["Key"].startswith(self.s3.v2):
                    order.append(kwargs["Key"][len(self.s3.v2) :])
                return result

            return call

        names = ("put_object", "copy_object", "complete_multipart_upload")
        with contextlib.ExitStack() as stack:
            for name in names:
                stack.enter_context(mock.patch.object(self.client, name, spy(name)))
            yield order


class TestS3Contract(StoreContract):
    @pytest.fixture
    def harness(self, s3: Any, bucket: str) -> S3Harness:
        return S3Harness(s3, bucket)


@pytest.fixture
def harness(s3: Any, bucket: str) -> S3Harness:
    return S3Harness(s3, bucket)


@contextlib.contextmanager
def calls(client: Any, *names: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Record the client's calls of `names`, with their arguments."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def spy(name: str) -> Any:
        real = getattr(client, name)

        def call(**kwargs: Any) -> Any:
            seen.append((name, kwargs))
            return real(**kwargs)

        return call

    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch.object(client, name, spy(name)))
        yield seen


UPLOADS = (
    "put_object",
    "create_multipart_upload",
    "upload_part",
    "copy_object",
    "upload_part_copy",
)


# ------------------------------------------------------------ the exact keys


@pytest.mark.parametrize("prefix", ["team/farm", "/team/farm/", ""])
def test_every_key_in_the_distribution_layout(s3, bucket, prefix):
    h = S3Harness(s3, bucket, prefix)
    store = h.store
    data = manifest_bytes(store)
    desc = store.put_manifest("app", data, OCI_MANIFEST)
    store.link_manifest("app", desc, tag="1.0")
    store.put_json("builds/b1", {"ok": True})
    config = Digest.of(b'{"marker":"x"}')
    root = "team/farm/" if prefix.strip("/") else ""
    v2 = root + "docker/registry/v2/"
    h_ = desc.digest.hex
    assert h.all_keys() == sorted(
        [
            f"{v2}blobs/sha256/{config.hex[:2]}/{config.hex}/data",
            f"{v2}blobs/sha256/{h_[:2]}/{h_}/data",
            f"{v2}repositories/app/_layers/sha256/{config.hex}/link",
            f"{v2}repositories/app/_manifests/revisions/sha256/{h_}/link",
            f"{v2}repositories/app/_manifests/tags/1.0/current/link",
            f"{v2}repositories/app/_manifests/tags/1.0/index/sha256/{h_}/link",
            f"{root}farm/builds/b1.json",
        ]
    )
    for key in h.all_keys():
        if key.endswith("/link"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert body in (f"sha256:{h_}".encode(), f"sha256:{config.hex}".encode())


def test_small_blob_is_one_put_at_its_final_key(harness):
    with calls(harness.client, *UPLOADS) as seen:
        desc = put_bytes(harness.store, b"small")
    assert [(name, kw["Key"]) for name, kw in seen] == [
        ("put_object", harness.s3.v2 + blob_key(desc.digest))
    ]


def test_large_blob_without_digest_goes_through_a_temporary_key(harness):
    data = os.urandom(harness.big)
    with calls(harness.client, *UPLOADS, "delete_object") as seen:
        desc = harness.store.put_blob(io.BytesIO(data))
    names = [name for name, _ in seen]
    assert names == [
        "create_multipart_upload",
        "upload_part",
        "upload_part",
        "upload_part",
        "copy_object",
        "delete_object",
    ]
    temp = seen[0][1]["Key"]
    assert temp.startswith(f"{PREFIX}/farm/.tmp/")
    assert [len(kw["Body"]) for name, kw in seen if name == "upload_part"] == [PART, PART, 12345]
    assert seen[4][1]["Key"] == harness.s3.v2 + blob_key(desc.digest)
    assert seen[4][1]["CopySource"] == {"Bucket": harness.bucket, "Key": temp}
    assert seen[5][1]["Key"] == temp
    assert read_blob(harness.store, desc.digest) == data
    assert harness.leftovers() == []


def test_large_blob_with_digest_is_uploaded_to_its_final_key(harness):
    data = os.urandom(harness.big)
    digest = Digest.of(data)
    with calls(harness.client, *UPLOADS) as seen:
        harness.store.put_blob(io.BytesIO(data), digest)
    assert {kw["Key"] for _, kw in seen} == {harness.s3.v2 + blob_key(digest)}
    assert [name for name, _ in seen].count("upload_part") == 3
    with calls(harness.client, *UPLOADS, "get_object") as seen:  # stored: nothing is sent
        harness.store.put_blob(io.BytesIO(data), digest)
    assert seen == []
    assert read_blob(harness.store, digest) == data


def test_multipart_copy_past_the_copy_limit(harness):
    harness.s3.max_copy_size = PART
    harness.s3.copy_part_size = PART
    data = os.urandom(harness.big)
    with calls(harness.client, "copy_object", "upload_part_copy") as seen:
        desc = harness.store.put_blob(io.BytesIO(data))
    assert [kw["CopySourceRange"] for _, kw in seen] == [
        f"bytes=0-{PART - 1}",
        f"bytes={PART}-{2 * PART - 1}",
        f"bytes={2 * PART}-{harness.big - 1}",
    ]
    assert read_blob(harness.store, desc.digest) == data
    assert harness.leftovers() == []


def test_part_size_below_the_s3_minimum_is_refused(s3):
    with pytest.raises(ValueError, match="minimum"):
        S3Store("b", client=s3, part_size=1 << 20)


# ------------------------------------------------------------ errors


def test_missing_bucket_is_a_storage_error_naming_it(s3):
    store = S3Store("no-such-bucket-farm", "p", client=s3)
    with pytest.raises(StorageError, match="s3://no-such-bucket-farm/p/docker/") as info:
        put_bytes(store, b"x")
    assert isinstance(info.value.__cause__, ClientError)
    assert "NoSuchBucket" in str(info.value)
    with pytest.raises(StorageError, match="no-such-bucket-farm"):
        store.repositories()
    with pytest.raises(StorageError, match="no-such-bucket-farm"):
        store.get_json("builds/x")


def test_unreachable_endpoint_is_a_storage_error():
    client = s3_client(
        f"http://127.0.0.1:{free_port()}", retries={"max_attempts": 1}, connect_timeout=2
    )
    store = S3Store("bucket", client=client)
    with pytest.raises(StorageError, match="s3://bucket/") as info:
        store.has_blob(Digest.of(b"x"))
    assert isinstance(info.value.__cause__, EndpointConnectionError)
    assert info.value.retryable


def test_corrupt_link_is_a_storage_error(harness):
    desc = harness.store.put_manifest("app", manifest_bytes(harness.store), OCI_MANIFEST)
    harness.store.link_manifest("app", desc, tag="t")
    key = harness.s3.v2 + "repositories/app/_manifests/tags/t/current/link"
    harness.client.put_object(Bucket=harness.bucket, Key=key, Body=b"sha256:nonsense\n")
    with pytest.raises(StorageError, match="corrupt link"):
        harness.store.resolve("app", "t")


# ------------------------------------------------------------ open_store


def test_open_store_s3(s3_endpoint):
    store = open_store(
        "s3://my-bucket/some/prefix/",
        s3_endpoint_url=s3_endpoint,
        s3_region="eu-central-1",
        s3_path_style=True,
    )
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")
    assert store.client.meta.endpoint_url == s3_endpoint
    assert store.client.meta.region_name == "eu-central-1"
    assert store.client.meta.config.s3 == {"addressing_style": "path"}
    plain = open_store("s3://b")
    assert isinstance(plain, S3Store) and plain.prefix == ""
    assert (plain.client.meta.config.s3 or {}).get("addressing_style") != "path"


def test_open_store_file(tmp_path):
    store = open_store(f"file://{tmp_path}/registry")
    assert isinstance(store, FilesystemStore) and store.root == tmp_path / "registry"


@pytest.mark.parametrize(
    "url", ["", "/just/a/path", "file://", "s3://", "s3:///prefix", "s3://b/p?x=1", "gs://b/p"]
)
def test_open_store_refuses(url):
    with pytest.raises(StoreURLError, match="storage URL"):
        open_store(url)


def test_open_store_imports_boto3_only_for_s3(tmp_path):
    code = (
        "import sys\n"
        "from buildkit.store import open_store\n"
        f"open_store('file://{tmp_path}')\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'imported'\n"
        "open_store('s3://bucket')\n"
        "assert 'boto3' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_embedded_open_store_uses_the_settings(s3_endpoint, tmp_path):
    from workers.embedded import open_store as open_configured
    from workers.settings import Settings

    settings = Settings(
        home=tmp_path,
        storage="s3://farm-bucket/images",
        s3_endpoint_url=s3_endpoint,
        s3_region="eu-west-1",
        s3_path_style=True,
    )
    store = open_configured(settings)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("farm-bucket", "images")
    assert store.client.meta.endpoint_url == s3_endpoint
    assert store.client.meta.region_name == "eu-west-1"
    assert isinstance(open_configured(Settings(home=tmp_path, storage="")), FilesystemStore)


def test_presigned_blob_url(harness):
    assert isinstance(harness.store, BlobURLs)
    desc = put_bytes(harness.store, b"fetch me")
    url = harness.s3.blob_url(desc.digest, expires_in=60)
    assert url.startswith(harness.client.meta.endpoint_url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        assert response.read() == b"fetch me"
