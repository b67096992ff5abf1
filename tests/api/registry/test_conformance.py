"""The distribution-spec conformance suite's checks, mirrored in Python.

The official suite (opencontainers/distribution-spec/conformance) is Go and
needs modules a clean clone cannot fetch here (`make conformance SUITE=...`
runs it where it is at hand; the README has its results); these tests walk
its four workflow categories, in its order, against one server: Pull, Push,
Content Discovery, Content Management. Each test names the spec requirement
it checks.
"""

from __future__ import annotations

import json

import pytest

from buildkit.digest import Digest
from buildkit.image import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST
from tests.api.registry.conftest import codes, descriptor, push_blob

NAME = "conformance/repo"
CROSSMOUNT = "conformance/other"
NONEXISTENT_TAG = "not-a-real-tag"
MISSING = Digest.of(b"conformance: does not exist")
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"conformance layer A"
CHUNKED = b"0123456789" * 1000


def manifest_for(config: bytes, layers: list[bytes], **extra) -> bytes:  # type: ignore[no-untyped-def]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar") for layer in layers],
        **extra,
    }
    return json.dumps(doc).encode()


MANIFEST = manifest_for(CONFIG, [LAYER])
MANIFEST_DIGEST = Digest.of(MANIFEST)
EMPTY_LAYERS = manifest_for(CONFIG, [])


@pytest.fixture(scope="module")
def c(registry):  # one client for the module: the categories build on each other
    with registry.client() as client:
        yield client


# ---------------------------------------------------------------- push (first: pull needs content)


class TestPush:
    def test_post_then_put_monolithic(self, c):
        r = c.post(f"/v2/{NAME}/blobs/uploads/")
        assert r.status_code == 202 and r.headers["Location"]
        r = c.put(r.headers["Location"], params={"digest": Digest.of(CONFIG)}, content=CONFIG,
                  headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 201 and r.headers["Location"]

    def test_single_post_monolithic(self, c):
        r = c.post(f"/v2/{NAME}/blobs/uploads/", params={"digest": Digest.of(LAYER)}, content=LAYER,
                   headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code in (201, 202)
        assert r.status_code == 201 and r.headers["Location"]

    def test_streamed_patch_then_put(self, c):
        location = c.post(f"/v2/{NAME}/blobs/uploads/").headers["Location"]
        r = c.patch(
            location, content=b"streamed blob", headers={"Content-Type": "application/octet-stream"}
        )
        assert r.status_code == 202
        r = c.put(r.headers["Location"], params={"digest": Digest.of(b"streamed blob")})
        assert r.status_code == 201

    def test_chunked_out_of_order_is_416(self, c):
        location = c.post(f"/v2/{NAME}/blobs/uploads/", headers={"Content-Length": "0"}).headers[
            "Location"
        ]
        r = c.patch(
            location, content=CHUNKED[5000:], headers={"Content-Range": f"5000-{len(CHUNKED) - 1}"}
        )
        assert r.status_code == 416

    def test_chunked_status_and_final_chunk_in_put(self, c):
        location = c.post(f"/v2/{NAME}/blobs/uploads/", headers={"Content-Length": "0"}).headers[
            "Location"
        ]
        r = c.patch(location, content=CHUNKED[:5000], headers={"Content-Range": "0-4999"})
        assert r.status_code == 202
        assert r.headers["Range"] == "0-4999"
        status = c.get(r.headers["Location"])
        assert status.status_code == 204 and status.headers["Range"] == "0-4999"
        assert status.headers["Location"]
        r = c.put(status.headers["Location"], params={"digest": Digest.of(CHUNKED)},
                  content=CHUNKED[5000:], headers={"Content-Range": f"5000-{len(CHUNKED) - 1}"})  # fmt: skip
        assert r.status_code == 201

    def test_cancel_upload(self, c):
        location = c.post(f"/v2/{NAME}/blobs/uploads/").headers["Location"]
        assert c.delete(location).status_code == 204
        assert c.get(location).status_code == 404

    def test_cross_mount_with_and_without_from(self, c):
        r = c.post(
            f"/v2/{CROSSMOUNT}/blobs/uploads/", params={"mount": Digest.of(LAYER), "from": NAME}
        )
        assert r.status_code == 201
        assert r.headers["Location"] == f"/v2/{CROSSMOUNT}/blobs/{Digest.of(LAYER)}"
        assert c.head(r.headers["Location"]).status_code == 200
        # without from: no automatic discovery of other repositories' blobs (the
        # spec's 202, an upload session); a blob linked into the target mounts
        r = c.post(f"/v2/{CROSSMOUNT}/blobs/uploads/", params={"mount": Digest.of(CONFIG)})
        assert r.status_code == 202 and r.headers["Location"]
        r = c.post(f"/v2/{CROSSMOUNT}/blobs/uploads/", params={"mount": Digest.of(LAYER)})
        assert r.status_code == 201
        r = c.post(f"/v2/{CROSSMOUNT}/blobs/uploads/", params={"mount": MISSING, "from": NAME})
        assert r.status_code == 202 and r.headers["Location"]

    def test_get_nonexistent_manifest_404(self, c):
        assert c.get(f"/v2/{NAME}/manifests/{NONEXISTENT_TAG}").status_code == 404

    def test_manifest_upload_by_tags_and_digest(self, c):
        for tag in ("test0", "test1", "test2", "test3"):
            r = c.put(
                f"/v2/{NAME}/manifests/{tag}",
                content=MANIFEST,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert r.status_code == 201 and r.headers["Location"]
            assert r.headers["Docker-Content-Digest"] == MANIFEST_DIGEST
        r = c.put(f"/v2/{NAME}/manifests/{MANIFEST_DIGEST}", content=MANIFEST,
                  headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        assert r.status_code == 201

    def test_manifest_with_no_layers(self, c):
        r = c.put(f"/v2/{NAME}/manifests/emptylayer", content=EMPTY_LAYERS,
                  headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        assert r.status_code == 201

    def test_manifest_referencing_missing_blob_is_refused(self, c):
        bad = manifest_for(CONFIG, [b"never uploaded"])
        r = c.put(f"/v2/{NAME}/manifests/bad", content=bad, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400 and codes(r) == ["MANIFEST_BLOB_UNKNOWN"]

    def test_manifest_with_subject_answers_oci_subject(self, c):
        push_blob(c, NAME, b"{}")
        artifact = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.conformance.a",
            "config": descriptor(b"{}", OCI_EMPTY), "layers": [descriptor(b"{}", OCI_EMPTY)],
            "subject": descriptor(MANIFEST, OCI_MANIFEST),
        }).encode()  # fmt: skip
        r = c.put(f"/v2/{NAME}/manifests/{Digest.of(artifact)}", content=artifact,
                  headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        assert r.status_code == 201
        assert r.headers["OCI-Subject"] == MANIFEST_DIGEST


# ---------------------------------------------------------------- pull


class TestPull:
    def test_base_route(self, c):
        assert c.get("/v2/").status_code == 200

    def test_manifest_by_tag_and_digest(self, c):
        for ref in ("test0", MANIFEST_DIGEST):
            h = c.head(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            assert h.status_code == 200 and h.headers["Docker-Content-Digest"] == MANIFEST_DIGEST
            r = c.get(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.content == MANIFEST
            assert r.headers["Content-Type"] == OCI_MANIFEST

    def test_nonexistent_manifest_404(self, c):
        assert c.head(f"/v2/{NAME}/manifests/{NONEXISTENT_TAG}").status_code == 404
        r = c.get(f"/v2/{NAME}/manifests/{MISSING}")
        assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]

    def test_blobs(self, c):
        for blob in (CONFIG, LAYER):
            assert c.head(f"/v2/{NAME}/blobs/{Digest.of(blob)}").status_code == 200
            r = c.get(f"/v2/{NAME}/blobs/{Digest.of(blob)}")
            assert r.status_code == 200 and r.content == blob
            assert r.headers["Docker-Content-Digest"] == Digest.of(blob)

    def test_nonexistent_blob_404(self, c):
        assert c.head(f"/v2/{NAME}/blobs/{MISSING}").status_code == 404
        r = c.get(f"/v2/{NAME}/blobs/{MISSING}")
        assert r.status_code == 404 and codes(r) == ["BLOB_UNKNOWN"]

    def test_nonexistent_repository_404(self, c):
        assert c.get(f"/v2/{NAME}/nothere/manifests/test0").status_code == 404


# ---------------------------------------------------------------- content discovery


class TestDiscovery:
    def test_tags_list(self, c):
        r = c.get(f"/v2/{NAME}/tags/list")
        assert r.status_code == 200
        assert r.json() == {
            "name": NAME,
            "tags": ["emptylayer", "test0", "test1", "test2", "test3"],
        }

    def test_tags_list_n_and_last(self, c):
        r = c.get(f"/v2/{NAME}/tags/list", params={"n": 2})
        assert r.json()["tags"] == ["emptylayer", "test0"]
        r = c.get(f"/v2/{NAME}/tags/list", params={"n": 2, "last": "test1"})
        assert r.json()["tags"] == ["test2", "test3"]
        r = c.get(f"/v2/{NAME}/tags/list", params={"n": 0})
        assert r.json()["tags"] == [] and "Link" not in r.headers

    def test_referrers(self, c):
        r = c.get(f"/v2/{NAME}/referrers/{MANIFEST_DIGEST}")
        assert r.status_code == 200 and r.headers["Content-Type"] == OCI_INDEX
        assert [d["artifactType"] for d in r.json()["manifests"]] == [
            "application/vnd.conformance.a"
        ]
        r = c.get(
            f"/v2/{NAME}/referrers/{MANIFEST_DIGEST}",
            params={"artifactType": "application/vnd.other"},
        )
        assert r.json()["manifests"] == [] and r.headers["OCI-Filters-Applied"] == "artifactType"
        r = c.get(f"/v2/{NAME}/referrers/{MISSING}")
        assert r.status_code == 200 and r.json()["manifests"] == []


# ---------------------------------------------------------------- content management


class TestManagement:
    def test_delete_tag(self, c):
        assert c.delete(f"/v2/{NAME}/manifests/test3").status_code == 202
        assert c.get(f"/v2/{NAME}/manifests/test3").status_code == 404
        assert "test3" not in c.get(f"/v2/{NAME}/tags/list").json()["tags"]

    def test_delete_manifest(self, c):
        assert c.delete(f"/v2/{NAME}/manifests/{MANIFEST_DIGEST}").status_code == 202
        assert c.get(f"/v2/{NAME}/manifests/{MANIFEST_DIGEST}").status_code == 404
        assert c.get(f"/v2/{NAME}/manifests/test0").status_code == 404

    def test_delete_blobs(self, c):
        for blob in (CONFIG, LAYER):
            assert c.delete(f"/v2/{NAME}/blobs/{Digest.of(blob)}").status_code == 202
            assert c.get(f"/v2/{NAME}/blobs/{Digest.of(blob)}").status_code == 404
        assert c.delete(f"/v2/{NAME}/blobs/{MISSING}").status_code == 404

    def test_delete_in_nonexistent_repository(self, c):
        assert c.delete(f"/v2/{NAME}/nothere/manifests/{MANIFEST_DIGEST}").status_code == 404
