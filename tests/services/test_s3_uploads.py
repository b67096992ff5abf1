"""Upload sessions in the S3 store's bucket, against a real S3 server: the
session contract, segments and their keys, two writers racing for one offset,
purging, and a chunked upload continued on a second `farm serve` process that
shares nothing with the first but the bucket."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.registry.config import RegistryConfig
from api.registry.s3_uploads import S3Uploads
from api.registry.uploads import UploadBusy, UploadUnknown
from buildkit.digest import Digest
from buildkit.errors import DigestMismatch
from buildkit.store.base import read_blob
from buildkit.store.s3 import MIN_PART_SIZE, S3Store
from tests.api.registry.conftest import ProcessServer, ThreadServer, codes
from tests.api.registry.test_uploads import commit_in_one_request, continue_then_fail_to_commit
from tests.services.conftest import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from workers.settings import Settings

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

PREFIX = "team/farm"


@pytest.fixture
def store(s3: Any, bucket: str) -> S3Store:
    return S3Store(bucket, PREFIX, client=s3)


def keys(s3: Any, bucket: str, prefix: str = f"{PREFIX}/farm/uploads/") -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"].removeprefix(prefix) for o in listing.get("Contents", ())]


def test_session_contract(store: S3Store, s3: Any, bucket: str) -> None:
    uploads = S3Uploads(store, segment_size=4)
    upload = uploads.create("app")
    assert keys(s3, bucket) == [f"{upload.id}/meta.json"]
    writer = uploads.writer("app", upload.id, 0)
    writer.write(b"hello ")  # one segment of 4 is written at once, 2 bytes wait
    (segment,) = keys(s3, bucket, f"{PREFIX}/farm/uploads/{upload.id}/data/")
    token = segment.split("/")[0]
    assert S3Uploads(store).get("app", upload.id).size == 0  # no chunk record yet
    writer.close()
    assert keys(s3, bucket) == [
        f"{upload.id}/chunks/{0:020d}",
        f"{upload.id}/data/{token}/{0:020d}",
        f"{upload.id}/data/{token}/{4:020d}",
        f"{upload.id}/meta.json",
    ]
    record = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/farm/uploads/{upload.id}/chunks/{0:020d}")
    assert json.loads(record["Body"].read()) == {
        "token": token,
        "end": 6,
        "digest": Digest.of(b"hello "),  # written from the start
    }
    with pytest.raises(UploadUnknown):
        S3Uploads(store).get("other", upload.id)  # a process that has not seen it yet
    continue_then_fail_to_commit(uploads, store, upload.id)
    assert keys(s3, bucket) == []
    commit_in_one_request(uploads, store, committer=S3Uploads(store))
    assert keys(s3, bucket) == []


def test_one_request_upload_is_assembled_server_side(store: S3Store, s3: Any, bucket: str) -> None:
    """Written whole by one request: the recorded digest is checked and S3 copies
    the segments into the blob (UploadPartCopy); nothing reads them back."""
    data = os.urandom(2 * MIN_PART_SIZE + 1000)
    uploads = S3Uploads(store, segment_size=MIN_PART_SIZE)
    upload = uploads.create("app")
    writer = uploads.writer("app", upload.id, 0)
    writer.write(data)
    writer.close()
    assert len(keys(s3, bucket, f"{PREFIX}/farm/uploads/{upload.id}/data/")) == 3
    reads = []
    original = store.open_object
    store.open_object = lambda key: reads.append(key) or original(key)  # type: ignore[method-assign]
    desc = uploads.commit("app", upload.id, store, Digest.of(data))
    assert reads == [f"farm/uploads/{upload.id}/chunks/{0:020d}"]  # only the record
    assert (desc.digest, desc.size) == (Digest.of(data), len(data))
    assert read_blob(store, desc.digest) == data
    assert keys(s3, bucket) == []


def test_recorded_digest_that_differs_is_a_mismatch(store: S3Store, s3: Any, bucket: str) -> None:
    uploads = S3Uploads(store)
    upload = uploads.create("app")
    writer = uploads.writer("app", upload.id, 0)
    writer.write(b"the bytes")
    writer.close()
    with pytest.raises(DigestMismatch):
        uploads.commit("app", upload.id, store, Digest.of(b"other bytes"))
    assert store.list_blobs() == [] and keys(s3, bucket) == []


def test_a_continued_upload_is_read_again(store: S3Store) -> None:
    """A second request's bytes are not in the first one's digest: the commit
    hashes every segment again."""
    uploads = S3Uploads(store)
    upload = uploads.create("app")
    for start, chunk in ((0, b"first "), (6, b"second")):
        writer = uploads.writer("app", upload.id, start)
        writer.write(chunk)
        writer.close()
    with pytest.raises(DigestMismatch):
        uploads.commit("app", upload.id, store, Digest.of(b"first "))
    upload = uploads.create("app")
    for start, chunk in ((0, b"first "), (6, b"second")):
        writer = uploads.writer("app", upload.id, start)
        writer.write(chunk)
        writer.close()
    assert uploads.commit("app", upload.id, store, Digest.of(b"first second")).size == 12


def test_rollback_forgets_the_chunk(store: S3Store) -> None:
    uploads = S3Uploads(store, segment_size=4)
    upload = uploads.create("app")
    writer = uploads.writer("app", upload.id, 0)
    writer.write(b"keep")
    writer.close()
    writer = uploads.writer("app", upload.id, 4)
    writer.write(b"0123456789")  # two segments written, two bytes waiting
    writer.rollback()
    writer.close()
    assert uploads.get("app", upload.id).size == 4
    writer = uploads.writer("app", upload.id, 4)
    writer.write(b"!")
    writer.close()
    desc = uploads.commit("app", upload.id, store, Digest.of(b"keep!"))
    assert desc.size == 5


def test_two_writers_at_one_offset(store: S3Store, s3: Any, bucket: str) -> None:
    """Both saw the same size; the second to put its chunk record is told the
    session is busy and its segments go; what the first wrote stays."""
    uploads = S3Uploads(store, segment_size=4)
    upload = uploads.create("app")
    first = uploads.writer("app", upload.id, 0)
    second = S3Uploads(store, segment_size=4).writer("app", upload.id, 0)
    first.write(b"first")
    second.write(b"other")
    first.close()
    with pytest.raises(UploadBusy):
        second.close()
    second.close()  # again: nothing
    assert len(keys(s3, bucket, f"{PREFIX}/farm/uploads/{upload.id}/data/")) == 2
    assert uploads.get("app", upload.id).size == 5
    assert uploads.commit("app", upload.id, store, Digest.of(b"first")).size == 5


class IgnoresIfNoneMatch:
    """A client of an S3 server that does not honour `If-None-Match: *` (older
    Ceph RGW, other S3-compatible servers): every conditional put succeeds."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put_object(self, **kwargs: Any) -> Any:
        kwargs.pop("IfNoneMatch", None)
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_server_without_conditional_puts_never_mixes_chunks(s3: Any, bucket: str) -> None:
    """Both racing requests "win"; the later record replaces the earlier, and a
    record always names its own request's segments and digest, so the blob
    committed under a digest holds exactly those bytes (or nothing is stored)."""
    store = S3Store(bucket, PREFIX, client=IgnoresIfNoneMatch(s3))
    uploads = S3Uploads(store, segment_size=MIN_PART_SIZE)
    a, b = os.urandom(MIN_PART_SIZE), os.urandom(MIN_PART_SIZE)

    def race(last: bytes) -> str:
        """Two requests write a and b at offset 0; the one writing `last` closes last."""
        upload = uploads.create("app")
        writers = {
            a: uploads.writer("app", upload.id, 0),
            b: S3Uploads(store).writer("app", upload.id, 0),
        }
        for data, writer in writers.items():
            writer.write(data)
        for data in sorted(writers, key=lambda data: data is last):
            writers[data].close()
        return upload.id

    upload_id = race(last=a)  # the record that counts: a's
    with pytest.raises(DigestMismatch):
        uploads.commit("app", upload_id, store, Digest.of(b))  # a's bytes: nothing kept
    assert store.list_blobs() == []
    upload_id = race(last=b)  # now b's record counts
    desc = uploads.commit("app", upload_id, store, Digest.of(b))
    assert read_blob(store, desc.digest) == b


def test_a_session_ended_during_commit_stores_nothing(store: S3Store) -> None:
    """A DELETE on another process while the blob is being assembled, then a
    slow request that had been given offset 0 writing new bytes: the commit
    says the upload is unknown, and no blob appears."""
    uploads = S3Uploads(store)
    a, b = os.urandom(1000), os.urandom(1000)
    upload = uploads.create("app")
    stale = S3Uploads(store).writer("app", upload.id, 0)
    writer = uploads.writer("app", upload.id, 0)
    writer.write(a)
    writer.close()
    original = store.put_blob_from_objects

    def racing(digest: Digest, objects: Any) -> Any:
        S3Uploads(store).cancel("app", upload.id)
        stale.write(b)
        stale.close()
        return original(digest, objects)

    store.put_blob_from_objects = racing  # type: ignore[method-assign]
    with pytest.raises(UploadUnknown):
        uploads.commit("app", upload.id, store, Digest.of(a))
    assert store.list_blobs() == []


def test_stale_sessions_are_purged(store: S3Store, s3: Any, bucket: str) -> None:
    uploads = S3Uploads(store, max_age=60)
    old = uploads.create("app")
    writer = uploads.writer("app", old.id)
    writer.write(b"data")
    writer.close()
    started = uploads.get("app", old.id).started
    assert uploads.purge(now=started + 30) == 0
    assert uploads.purge(now=started + 3600) == 1
    with pytest.raises(UploadUnknown):
        uploads.get("app", old.id)
    assert keys(s3, bucket) == []


def test_bad_ids_are_unknown(store: S3Store) -> None:
    uploads = S3Uploads(store)
    for bad in ("../../docker", "not-a-uuid", ""):
        with pytest.raises(UploadUnknown):
            uploads.get("app", bad)


def test_upload_continues_on_a_process_sharing_only_the_bucket(
    s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Two `farm serve` processes with separate FARM_HOMEs (no shared upload
    directory) and one S3 store: PATCHes alternate between them."""
    data = os.urandom(70000)
    chunks = [data[:30000], data[30000:60000], data[60000:]]
    env = {
        "FARM_STORAGE": f"s3://{bucket}/{PREFIX}",
        "FARM_S3_ENDPOINT_URL": s3_endpoint,
        "FARM_S3_PATH_STYLE": "true",
        "FARM_S3_REGION": S3_REGION,
        "FARM_API_TOKENS": "",
        "FARM_REGISTRY_UPLOADS": "",
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }
    with (
        ProcessServer({**env, "FARM_HOME": str(tmp_path / "one")}) as a,
        ProcessServer({**env, "FARM_HOME": str(tmp_path / "two")}) as b,
        httpx.Client(base_url=a.url, timeout=30) as one,
        httpx.Client(base_url=b.url, timeout=30) as two,
    ):
        location = one.post("/v2/shared/blobs/uploads/").headers["Location"]
        start = 0
        for client, chunk in zip((one, two, one), chunks, strict=True):
            r = client.patch(
                location,
                content=chunk,
                headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"},
            )
            assert r.status_code == 202, r.text
            start += len(chunk)
            assert r.headers["Range"] == f"0-{start - 1}"
        session = location.rpartition("/")[2]
        assert f"{session}/meta.json" in keys(s3, bucket)  # the session is in the bucket
        assert two.get(location).headers["Range"] == f"0-{len(data) - 1}"
        r = one.patch(location, content=chunks[0], headers={"Content-Range": f"0-{29999}"})
        assert r.status_code == 416  # both see one state
        r = two.put(location, params={"digest": Digest.of(data)})
        assert r.status_code == 201, r.text
        assert one.get(f"/v2/shared/blobs/{Digest.of(data)}").content == data
        assert two.get(location).status_code == 404  # the session is gone for both
    assert not (tmp_path / "one" / "uploads").exists()
    assert not (tmp_path / "two" / "uploads").exists()


def test_put_of_a_session_ended_meanwhile_is_404(store: S3Store, tmp_path: Path) -> None:
    """Over HTTP: the closing PUT loses its session to a DELETE on another
    process mid-commit; the client hears BLOB_UPLOAD_UNKNOWN, not a 500."""
    uploads = S3Uploads(store)
    data = os.urandom(1000)
    original = store.put_blob_from_objects

    def racing(digest: Digest, objects: Any) -> Any:
        S3Uploads(store).cancel("app", location.rpartition("/")[2])
        return original(digest, objects)

    store.put_blob_from_objects = racing  # type: ignore[method-assign]
    app = create_app(
        Settings(home=tmp_path, api_tokens=""),
        store=store,
        config=RegistryConfig(),
        uploads=uploads,
    )
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        location = http.post("/v2/app/blobs/uploads/").headers["Location"]
        assert http.patch(location, content=data).status_code == 202
        r = http.put(location, params={"digest": Digest.of(data)})
        assert (r.status_code, codes(r)) == (404, ["BLOB_UPLOAD_UNKNOWN"])
    assert store.list_blobs() == []
