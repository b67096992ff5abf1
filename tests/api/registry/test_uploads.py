"""Chunked uploads: PATCHes in order, out of order (416), status, cancel, and a
session continued through a second API process sharing the store and uploads."""

from __future__ import annotations

import httpx
import pytest

from api.registry.uploads import (
    FilesystemUploads,
    RangeMismatch,
    UploadBusy,
    UploadStore,
    UploadUnknown,
)
from buildkit.digest import Digest
from buildkit.errors import DigestMismatch
from buildkit.store.base import Store
from buildkit.store.filesystem import FilesystemStore
from tests.api.registry.conftest import ProcessServer, codes

DATA = bytes(range(256)) * 300  # 76800 bytes
CHUNKS = [DATA[:30000], DATA[30000:60000], DATA[60000:]]


def patch(client: httpx.Client, location: str, start: int, chunk: bytes) -> httpx.Response:
    return client.patch(
        location,
        content=chunk,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        },
    )


def test_three_chunks_then_put(http, registry):
    r = http.post("/v2/chunked/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-0"
    location = r.headers["Location"]
    start = 0
    for chunk in CHUNKS:
        r = patch(http, location, start, chunk)
        assert r.status_code == 202, r.text
        start += len(chunk)
        assert r.headers["Range"] == f"0-{start - 1}"
        location = r.headers["Location"]
        status = http.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{start - 1}"
        assert status.headers["Location"] == location
    r = http.put(location, params={"digest": Digest.of(DATA)})
    assert r.status_code == 201
    assert http.get(f"/v2/chunked/blobs/{Digest.of(DATA)}").content == DATA


def test_out_of_order_chunk_is_416(http):
    r = http.post("/v2/chunked/blobs/uploads/", headers={"Content-Length": "0"})
    location = r.headers["Location"]
    r = patch(http, location, len(CHUNKS[0]), CHUNKS[1])  # the second chunk first
    assert r.status_code == 416
    assert r.headers["Range"] == "0-0"
    assert patch(http, location, 0, CHUNKS[0]).status_code == 202
    r = patch(http, location, 0, CHUNKS[0])  # the first again
    assert r.status_code == 416
    assert r.headers["Range"] == f"0-{len(CHUNKS[0]) - 1}"
    r = http.get(location)  # nothing was appended by the refused chunks
    assert r.headers["Range"] == f"0-{len(CHUNKS[0]) - 1}"


def test_final_chunk_in_put_and_streamed_patch(http):
    r = http.post("/v2/chunked/blobs/uploads/")
    location = r.headers["Location"]
    r = http.patch(location, content=CHUNKS[0])  # streamed: no Content-Range
    assert r.status_code == 202
    r = patch(http, r.headers["Location"], len(CHUNKS[0]), CHUNKS[1])
    last = len(CHUNKS[0]) + len(CHUNKS[1])
    r = http.put(
        r.headers["Location"],
        params={"digest": Digest.of(DATA)},
        content=CHUNKS[2],
        headers={"Content-Range": f"{last}-{len(DATA) - 1}"},
    )
    assert r.status_code == 201, r.text
    assert http.get(r.headers["Location"]).content == DATA


def test_chunk_shorter_than_its_range_is_refused_and_forgotten(http):
    location = http.post("/v2/chunked/blobs/uploads/").headers["Location"]
    r = http.patch(location, content=b"abc", headers={"Content-Range": "0-9"})
    assert (r.status_code, codes(r)) == (400, ["SIZE_INVALID"])
    assert http.get(location).headers["Range"] == "0-0"
    r = http.patch(location, content=b"abc", headers={"Content-Range": "zero-two"})
    assert codes(r) == ["BLOB_UPLOAD_INVALID"]


def test_cancel(http):
    location = http.post("/v2/chunked/blobs/uploads/").headers["Location"]
    assert patch(http, location, 0, b"partial").status_code == 202
    assert http.delete(location).status_code == 204
    r = http.get(location)
    assert (r.status_code, codes(r)) == (404, ["BLOB_UPLOAD_UNKNOWN"])
    assert codes(patch(http, location, 7, b"more")) == ["BLOB_UPLOAD_UNKNOWN"]
    assert http.delete(location).status_code == 404


def test_a_busy_session_answers_416_with_its_range(http, registry):
    """While another request appends, a chunk is refused with the session's
    Range and Location, so the client knows where to go on from."""
    location = http.post("/v2/busy/blobs/uploads/").headers["Location"]
    assert patch(http, location, 0, b"abc").status_code == 202
    upload_id = location.rpartition("/")[2]
    holder = FilesystemUploads(registry.home / "uploads").writer("busy", upload_id)
    try:
        r = patch(http, location, 3, b"def")
    finally:
        holder.close()
    assert (r.status_code, codes(r)) == (416, ["BLOB_UPLOAD_INVALID"])
    assert r.headers["Range"] == "0-2" and r.headers["Location"] == location
    assert patch(http, location, 3, b"def").status_code == 202


def test_session_belongs_to_its_repository(http):
    location = http.post("/v2/mine/blobs/uploads/").headers["Location"]
    stolen = location.replace("/v2/mine/", "/v2/theirs/")
    assert codes(http.get(stolen)) == ["BLOB_UPLOAD_UNKNOWN"]


def test_upload_continues_on_a_second_process(registry, tmp_path):
    """The first server is this process's thread; the second a `farm serve`
    process over the same FARM_HOME (store and uploads)."""
    env = {"FARM_HOME": str(registry.home), "FARM_STORAGE": "", "FARM_API_TOKENS": ""}
    with (
        ProcessServer(env) as second,
        registry.client() as one,
        httpx.Client(base_url=second.url, timeout=30) as two,
    ):
        location = one.post("/v2/shared/blobs/uploads/").headers["Location"]
        assert patch(one, location, 0, CHUNKS[0]).status_code == 202
        r = patch(two, location, len(CHUNKS[0]), CHUNKS[1])
        assert r.status_code == 202, r.text
        assert two.get(location).headers["Range"] == f"0-{len(CHUNKS[0]) + len(CHUNKS[1]) - 1}"
        assert patch(one, location, 0, CHUNKS[0]).status_code == 416  # both see one state
        assert patch(one, location, 60000, CHUNKS[2]).status_code == 202
        r = two.put(location, params={"digest": Digest.of(DATA)})
        assert r.status_code == 201, r.text
        assert one.get(f"/v2/shared/blobs/{Digest.of(DATA)}").content == DATA
        assert two.get(f"/v2/shared/blobs/{Digest.of(DATA)}").content == DATA


# ---------------------------------------------------------------- the upload store itself


def test_filesystem_uploads(tmp_path):
    uploads = FilesystemUploads(tmp_path / "uploads")
    store = FilesystemStore(tmp_path / "registry")
    upload = uploads.create("app")
    writer = uploads.writer("app", upload.id, 0)
    with pytest.raises(UploadBusy):
        uploads.writer("app", upload.id)  # one writer at a time
    writer.write(b"hello ")
    writer.close()
    continue_then_fail_to_commit(uploads, store, upload.id)
    commit_in_one_request(uploads, store)
    assert list((tmp_path / "uploads").iterdir()) == []


def continue_then_fail_to_commit(uploads: UploadStore, store: Store, upload_id: str) -> None:
    """The contract of any upload store, from a session of app holding b"hello "."""
    with pytest.raises(RangeMismatch) as info:
        uploads.writer("app", upload_id, 0)
    assert info.value.size == 6
    writer = uploads.writer("app", upload_id, 6)
    writer.write(b"world")
    writer.close()
    assert uploads.get("app", upload_id).size == 11
    with pytest.raises(UploadUnknown):
        uploads.get("other", upload_id)
    with pytest.raises(DigestMismatch):
        uploads.commit("app", upload_id, store, Digest.of(b"something else"))
    assert store.list_blobs() == []
    with pytest.raises(UploadUnknown):  # a failed commit ends the session
        uploads.get("app", upload_id)


def commit_in_one_request(
    uploads: UploadStore, store: Store, committer: UploadStore | None = None
) -> None:
    """A session written by one request, committed (by `committer`, another
    process's store of the same sessions, when given)."""
    upload = uploads.create("app")
    writer = uploads.writer("app", upload.id)
    writer.write(b"hello world")
    writer.close()
    desc = (committer or uploads).commit("app", upload.id, store, Digest.of(b"hello world"))
    assert (desc.digest, desc.size) == (Digest.of(b"hello world"), 11)
    assert store.list_blobs() == [desc.digest]


def test_stale_uploads_are_purged(tmp_path):
    uploads = FilesystemUploads(tmp_path, max_age=60)
    old = uploads.create("app")
    assert uploads.purge(now=uploads.get("app", old.id).started + 30) == 0
    assert uploads.purge(now=uploads.get("app", old.id).started + 3600) == 1
    with pytest.raises(UploadUnknown):
        uploads.get("app", old.id)
