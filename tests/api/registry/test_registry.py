"""Every /v2/ endpoint over real HTTP, without auth (the embedded `farm serve`)."""

from __future__ import annotations

import json

import pytest

from buildkit.digest import Digest
from buildkit.image import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from buildkit.store.base import put_bytes
from tests.api.registry.conftest import (
    codes,
    descriptor,
    image,
    make_registry,
    push_blob,
    push_image,
)

MISSING = Digest.of(b"nothing here")


def test_ping(http):
    r = http.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_manifest_byte_for_byte_by_tag_and_digest(http, registry):
    digest, manifest = push_image(http, "team/app", "1.0", "bytes")
    assert digest == Digest.of(manifest)
    for ref in ("1.0", digest):
        r = http.get(f"/v2/team/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == manifest
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        h = http.head(f"/v2/team/app/manifests/{ref}")
        assert h.status_code == 200
        assert h.content == b""
        assert h.headers["Content-Length"] == str(len(manifest))
        assert h.headers["Docker-Content-Digest"] == digest
        assert h.headers["Content-Type"] == OCI_MANIFEST
    # and in the store, where registry:2 would find it
    assert registry.store.resolve("team/app", "1.0").digest == digest


def test_manifest_put_location_and_digest(http):
    blobs, manifest = image("loc")
    for data in blobs.values():
        push_blob(http, "loc", data)
    digest = Digest.of(manifest)
    r = http.put(f"/v2/loc/manifests/{digest}", content=manifest,
                 headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/loc/manifests/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert http.get(r.headers["Location"]).content == manifest


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 200),
        ("*/*", 200),
        (OCI_MANIFEST, 200),
        (f"{DOCKER_MANIFEST}, {OCI_MANIFEST}", 200),
        (DOCKER_MANIFEST, 404),
        (OCI_INDEX, 404),
    ],
)
def test_content_negotiation(http, accept, status):
    push_image(http, "negotiate", "1", "neg")
    headers = {"Accept": accept} if accept else {}
    r = http.get("/v2/negotiate/manifests/1", headers=headers)
    assert r.status_code == status
    if status == 404:
        assert codes(r) == ["MANIFEST_UNKNOWN"]


def test_docker_schema2_manifest_and_list(http):
    blobs, oci = image("docker")
    for data in blobs.values():
        push_blob(http, "docker", data)
    doc = json.loads(oci)
    doc["mediaType"] = DOCKER_MANIFEST
    doc["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    doc["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    manifest = json.dumps(doc).encode()
    r = http.put(
        "/v2/docker/manifests/m", content=manifest, headers={"Content-Type": DOCKER_MANIFEST}
    )
    assert r.status_code == 201, r.text
    listing = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [descriptor(manifest, DOCKER_MANIFEST, platform={"architecture": "amd64", "os": "linux"})],
    }).encode()  # fmt: skip
    r = http.put("/v2/docker/manifests/list", content=listing,
                 headers={"Content-Type": DOCKER_MANIFEST_LIST})  # fmt: skip
    assert r.status_code == 201, r.text
    r = http.get("/v2/docker/manifests/list", headers={"Accept": DOCKER_MANIFEST_LIST})
    assert (r.status_code, r.headers["Content-Type"], r.content) == (
        200,
        DOCKER_MANIFEST_LIST,
        listing,
    )
    r = http.get(
        "/v2/docker/manifests/m", headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}"}
    )
    assert (r.status_code, r.headers["Content-Type"], r.content) == (200, DOCKER_MANIFEST, manifest)
    r = http.get("/v2/docker/manifests/list", headers={"Accept": OCI_INDEX})
    assert r.status_code == 404


def test_index_needs_its_manifests_in_the_repository(http):
    _, manifest = image("idx")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(manifest, OCI_MANIFEST)]}).encode()  # fmt: skip
    r = http.put("/v2/idx/manifests/1", content=index, headers={"Content-Type": OCI_INDEX})
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    push_image(http, "idx", Digest.of(manifest), "idx")
    r = http.put("/v2/idx/manifests/1", content=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("path", "code", "status"),
    [
        ("/v2/nothere/manifests/1", "NAME_UNKNOWN", 404),
        ("/v2/team/app/manifests/nope", "MANIFEST_UNKNOWN", 404),
        (f"/v2/team/app/manifests/{MISSING}", "MANIFEST_UNKNOWN", 404),
        ("/v2/team/app/manifests/sha256:abc", "DIGEST_INVALID", 400),
        ("/v2/Team/app/manifests/1", "NAME_INVALID", 400),
        ("/v2/team//app/manifests/1", "NAME_INVALID", 400),
        (f"/v2/team/app/blobs/{MISSING}", "BLOB_UNKNOWN", 404),
        ("/v2/team/app/blobs/sha256:xyz", "DIGEST_INVALID", 400),
        ("/v2/team/app/blobs/md5:abcdef", "DIGEST_INVALID", 400),
        ("/v2/nothere/tags/list", "NAME_UNKNOWN", 404),
        (
            "/v2/team/app/blobs/uploads/5b5bd1ab-0c6a-4d5f-9fa5-000000000000",
            "BLOB_UPLOAD_UNKNOWN",
            404,
        ),
        ("/v2/team/app/blobs/uploads/not-a-uuid", "BLOB_UPLOAD_UNKNOWN", 404),
    ],
)
def test_pull_errors(http, path, code, status):
    push_image(http, "team/app", "1.0", "bytes")
    r = http.get(path)
    assert r.status_code == status, r.text
    assert codes(r) == [code]
    assert r.headers["Content-Type"] == "application/json"
    if ("/blobs/" in path or "/manifests/" in path) and "/uploads/" not in path:
        assert http.head(path).status_code == status


def test_blob_get_head_and_range(http):
    data = bytes(range(256)) * 40
    digest = push_blob(http, "blobs", data)
    r = http.get(f"/v2/blobs/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    h = http.head(f"/v2/blobs/blobs/{digest}")
    assert (h.status_code, h.headers["Content-Length"], h.content) == (200, str(len(data)), b"")
    r = http.get(f"/v2/blobs/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    r = http.get(f"/v2/blobs/blobs/{digest}", headers={"Range": "bytes=-10"})
    assert (r.status_code, r.content) == (206, data[-10:])
    r = http.get(f"/v2/blobs/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_blob_of_another_repository_is_not_served(http):
    digest = push_blob(http, "owner", b"private layer")
    assert http.head(f"/v2/owner/blobs/{digest}").status_code == 200
    assert http.head(f"/v2/stranger/blobs/{digest}").status_code == 404


def test_monolithic_post_then_put(http):
    data = b"monolithic"
    r = http.post("/v2/mono/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    assert location.startswith("/v2/mono/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"] in location
    r = http.put(location, params={"digest": Digest.of(data)}, content=data,
                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/mono/blobs/{Digest.of(data)}"
    assert http.get(r.headers["Location"]).content == data
    assert http.get(location).status_code == 404  # the session is over


def test_wrong_digest_is_digest_invalid_and_stores_nothing(http, registry):
    data = b"the real bytes"
    wrong = Digest.of(b"other bytes")
    r = http.post("/v2/wrong/blobs/uploads/", params={"digest": wrong}, content=data)
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    assert not registry.store.has_blob(Digest.of(data))
    assert not registry.store.has_blob(wrong)
    r = http.post("/v2/wrong/blobs/uploads/")
    r = http.put(r.headers["Location"], params={"digest": wrong}, content=data)
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    r = http.put(r.request.url.path, params={"digest": "sha256:nothex"}, content=data)
    assert codes(r) in (["DIGEST_INVALID"], ["BLOB_UPLOAD_UNKNOWN"])


def test_wrong_bytes_for_a_digest_already_stored(http):
    digest = push_blob(http, "known", b"known bytes")
    r = http.post("/v2/other/blobs/uploads/", params={"digest": digest}, content=b"forged")
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    assert http.head(f"/v2/other/blobs/{digest}").status_code == 404


def test_put_without_digest(http):
    r = http.post("/v2/nodigest/blobs/uploads/")
    r = http.put(r.headers["Location"], content=b"x")
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])


def test_cross_repository_mount(http):
    digest = push_blob(http, "source", b"shared layer")
    r = http.post("/v2/target/blobs/uploads/", params={"mount": digest, "from": "source"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/target/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert http.get(f"/v2/target/blobs/{digest}").content == b"shared layer"
    # a repository that does not hold it: an upload session instead
    r = http.post("/v2/target2/blobs/uploads/", params={"mount": digest, "from": "nothere"})
    assert r.status_code == 202 and "Location" in r.headers
    r = http.post("/v2/target2/blobs/uploads/", params={"mount": MISSING, "from": "source"})
    assert r.status_code == 202
    # without from: not found anywhere in the store, only in the target itself
    r = http.post("/v2/target3/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 202 and "Location" in r.headers
    r = http.post("/v2/target/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201
    r = http.post("/v2/target3/blobs/uploads/", params={"mount": MISSING})
    assert r.status_code == 202


def test_manifest_errors(http, registry):
    blobs, manifest = image("errs")
    r = http.put("/v2/errs/manifests/1", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    assert registry.store.repositories().count("errs") == 0  # nothing half written
    r = http.put(
        "/v2/errs/manifests/1", content=b"{not json", headers={"Content-Type": OCI_MANIFEST}
    )
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_INVALID"])
    r = http.put(
        "/v2/errs/manifests/1",
        content=b'{"schemaVersion":2}',
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert codes(r) == ["MANIFEST_INVALID"]
    r = http.put("/v2/errs/manifests/1", content=manifest, headers={"Content-Type": OCI_INDEX})
    assert codes(r) == ["MANIFEST_INVALID"]  # declares one type, sent as another
    for data in blobs.values():
        push_blob(http, "errs", data)
    r = http.put(
        f"/v2/errs/manifests/{MISSING}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    r = http.put(
        "/v2/errs/manifests/-bad-tag", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_INVALID"])
    r = http.put("/v2/BAD/manifests/1", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert (r.status_code, codes(r)) == (400, ["NAME_INVALID"])
    assert http.get("/v2/errs/manifests/1").status_code == 404
    r = http.put("/v2/errs/manifests/1", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201


def test_oversize_manifest(registry, tmp_path):
    for small in make_registry(tmp_path, max_manifest_size=1000):
        with small.client() as client:
            _, manifest = image("big")
            padded = manifest[:-1] + b',"annotations":{"pad":"' + b"x" * 2000 + b'"}}'
            r = client.put(
                "/v2/big/manifests/1", content=padded, headers={"Content-Type": OCI_MANIFEST}
            )
            assert (r.status_code, codes(r)) == (413, ["SIZE_INVALID"])

            def chunks(data=padded):  # no Content-Length: the limit holds while reading
                yield data[:500]
                yield data[500:]

            r = client.put(
                "/v2/big/manifests/1", content=chunks(), headers={"Content-Type": OCI_MANIFEST}
            )
            assert r.status_code == 413


def test_tags_list_and_pagination(http):
    for tag in ("b", "a", "c", "D", "e1"):
        push_image(http, "tagged", tag, "t")
    r = http.get("/v2/tagged/tags/list")
    assert r.json() == {"name": "tagged", "tags": ["D", "a", "b", "c", "e1"]}
    assert "Link" not in r.headers
    r = http.get("/v2/tagged/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["D", "a"]
    assert r.headers["Link"] == '</v2/tagged/tags/list?n=2&last=a>; rel="next"'
    r = http.get(r.headers["Link"].split(";")[0].strip("<>"))
    assert r.json()["tags"] == ["b", "c"]
    r = http.get("/v2/tagged/tags/list", params={"n": 2, "last": "c"})
    assert r.json()["tags"] == ["e1"] and "Link" not in r.headers
    r = http.get("/v2/tagged/tags/list", params={"last": "b"})
    assert r.json()["tags"] == ["c", "e1"]
    r = http.get("/v2/tagged/tags/list", params={"n": 0})
    assert r.json()["tags"] == [] and "Link" not in r.headers
    assert http.get("/v2/tagged/tags/list", params={"n": "-1"}).status_code == 400


def _artifact(
    http, repo: str, subject: bytes, artifact_type: str | None, marker: str
) -> tuple[str, bytes]:
    config = b"{}"
    push_blob(http, repo, config)
    layer = marker.encode()
    push_blob(http, repo, layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(
            config, OCI_EMPTY if artifact_type else "application/vnd.example.config+json"
        ),
        "layers": [descriptor(layer, "application/octet-stream")],
        "subject": descriptor(subject, OCI_MANIFEST),
        "annotations": {"org.example.marker": marker},
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    data = json.dumps(doc).encode()
    r = http.put(
        f"/v2/{repo}/manifests/{Digest.of(data)}",
        content=data,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == Digest.of(subject)
    return Digest.of(data), data


def test_referrers_with_artifact_type_filter(http):
    _, subject = image("subject")
    subject_digest = Digest.of(subject)
    # a referrer pushed before its subject is accepted, as the spec requires
    sbom, sbom_bytes = _artifact(http, "refs", subject, "application/vnd.example.sbom", "sbom")
    sig, _ = _artifact(http, "refs", subject, "application/vnd.example.sig", "sig")
    plain, _ = _artifact(http, "refs", subject, None, "plain")
    push_image(http, "refs", "1", "subject")
    r = http.get(f"/v2/refs/referrers/{subject_digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in r.headers
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {sbom, sig, plain}
    assert by_digest[sbom] == {
        "mediaType": OCI_MANIFEST, "digest": sbom, "size": len(sbom_bytes),
        "artifactType": "application/vnd.example.sbom",
        "annotations": {"org.example.marker": "sbom"},
    }  # fmt: skip
    assert by_digest[plain]["artifactType"] == "application/vnd.example.config+json"
    r = http.get(
        f"/v2/refs/referrers/{subject_digest}",
        params={"artifactType": "application/vnd.example.sig"},
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sig]
    # no referrers, unknown repository: an empty index, never 404
    for path in (f"/v2/refs/referrers/{MISSING}", f"/v2/nothere/referrers/{MISSING}"):
        r = http.get(path)
        assert r.status_code == 200 and r.json()["manifests"] == []
    assert http.get("/v2/refs/referrers/sha256:bad").status_code == 400


def test_referrers_in_pages(http):
    """Past `n` (or the service's page size) the index comes in pages linked by
    the spec's Link header, the filter carried along; following the links
    yields every referrer once."""
    _, subject = image("paged")
    subject_digest = Digest.of(subject)
    sboms = {_artifact(http, "pages", subject, "application/vnd.example.sbom", f"s{i}")[0]
             for i in range(5)}  # fmt: skip
    _artifact(http, "pages", subject, "application/vnd.example.sig", "sig")
    url: str | None = (
        f"/v2/pages/referrers/{subject_digest}?artifactType=application/vnd.example.sbom&n=2"
    )
    seen = []
    pages = 0
    while url:
        r = http.get(url)
        assert r.status_code == 200
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
        digests = [d["digest"] for d in r.json()["manifests"]]
        assert 0 < len(digests) <= 2
        seen += digests
        pages += 1
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        if url:
            assert 'rel="next"' in link and "artifactType=application%2Fvnd.example.sbom" in url
    assert pages == 3
    assert seen == sorted(sboms)
    r = http.get(f"/v2/pages/referrers/{subject_digest}")  # under the page size: one page
    assert len(r.json()["manifests"]) == 6 and "Link" not in r.headers
    for bad in ("many", "²", "-1"):
        r = http.get(f"/v2/pages/referrers/{subject_digest}", params={"n": bad})
        assert (r.status_code, codes(r)) == (400, ["UNSUPPORTED"])
        assert codes(http.get("/v2/pages/tags/list", params={"n": bad})) == ["UNSUPPORTED"]


def test_delete_tag_manifest_blob(http, registry):
    digest, _ = push_image(http, "del", "1", "del")
    push_image(http, "del", "2", "del")
    r = http.delete("/v2/del/manifests/1")
    assert r.status_code == 202
    assert http.get("/v2/del/manifests/1").status_code == 404
    assert http.get(f"/v2/del/manifests/{digest}").status_code == 200  # only the tag went
    assert http.delete("/v2/del/manifests/1").status_code == 404
    r = http.delete(f"/v2/del/manifests/{digest}")
    assert r.status_code == 202
    assert http.get(f"/v2/del/manifests/{digest}").status_code == 404
    assert http.get("/v2/del/manifests/2").status_code == 404  # its tags go with it
    assert codes(http.delete(f"/v2/del/manifests/{digest}")) == ["MANIFEST_UNKNOWN"]
    assert codes(http.delete(f"/v2/nothere/manifests/{digest}")) == ["NAME_UNKNOWN"]
    layer = push_blob(http, "del", b"to delete")
    assert http.delete(f"/v2/del/blobs/{layer}").status_code == 202
    assert http.head(f"/v2/del/blobs/{layer}").status_code == 404
    assert codes(http.delete(f"/v2/del/blobs/{layer}")) == ["BLOB_UNKNOWN"]
    assert registry.store.has_blob(layer)  # prune removes what nothing links to


def test_delete_disabled(tmp_path):
    for reg in make_registry(tmp_path, delete_enabled=False):
        with reg.client() as client:
            digest, _ = push_image(client, "keep", "1", "keep")
            for path in ("/v2/keep/manifests/1", f"/v2/keep/manifests/{digest}"):
                r = client.delete(path)
                assert (r.status_code, codes(r)) == (405, ["UNSUPPORTED"])
            assert client.get("/v2/keep/manifests/1").status_code == 200


# ---------------------------------------------------------------- blobs of other repositories


def test_mount_without_from_does_not_reach_unlinked_blobs(http, registry):
    """A blob in the store but linked nowhere the client can see (a pulled private
    base image, a cache layer) cannot be claimed by naming its digest."""
    secret = put_bytes(registry.store, b"private base layer").digest
    assert registry.store.has_blob(secret)
    r = http.post("/v2/thief/blobs/uploads/", params={"mount": secret})
    assert r.status_code == 202 and r.headers["Location"]  # an upload, not a mount
    assert not registry.store.blob_linked("thief", secret)
    assert http.get(f"/v2/thief/blobs/{secret}").status_code == 404
    # from a repository it is not linked into: no mount either
    push_blob(http, "decoy", b"decoy")
    r = http.post("/v2/thief/blobs/uploads/", params={"mount": secret, "from": "decoy"})
    assert r.status_code == 202
    assert http.head(f"/v2/thief/blobs/{secret}").status_code == 404


def test_manifest_cannot_link_blobs_not_in_the_repository(http, registry):
    blobs, manifest = image("stolen")
    for data in blobs.values():
        put_bytes(registry.store, data)  # stored, linked into no repository
    headers = {"Content-Type": OCI_MANIFEST}
    r = http.put("/v2/thief2/manifests/1", content=manifest, headers=headers)
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    for digest in blobs:
        assert http.get(f"/v2/thief2/blobs/{digest}").status_code == 404
        assert not registry.store.blob_linked("thief2", Digest(digest))
    # linked into another repository only: the same
    push_image(http, "owner", "1", "owned")
    owned, manifest = image("owned")
    r = http.put("/v2/thief2/manifests/1", content=manifest, headers=headers)
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    for digest in owned:
        assert http.get(f"/v2/thief2/blobs/{digest}").status_code == 404
    # once the client mounts them (with from) or pushes them, the manifest goes in
    for digest in owned:
        r = http.post("/v2/thief2/blobs/uploads/", params={"mount": digest, "from": "owner"})
        assert r.status_code == 201
    r = http.put("/v2/thief2/manifests/1", content=manifest, headers=headers)
    assert r.status_code == 201, r.text


def test_a_subject_that_is_not_there_is_accepted(http):
    blobs, _ = image("subj")
    for data in blobs.values():
        push_blob(http, "subj", data)
    layer, config = blobs.values()
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(config, OCI_CONFIG), "layers": [descriptor(layer, OCI_LAYER_GZIP)],
           "subject": {"mediaType": OCI_MANIFEST, "digest": MISSING, "size": 12}}  # fmt: skip
    data = json.dumps(doc).encode()
    r = http.put(f"/v2/subj/manifests/{Digest.of(data)}", content=data,
                 headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 201, r.text
