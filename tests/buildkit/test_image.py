"""Digests and OCI image types: exact serialisation, and parsing back."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from buildkit.digest import Digest, InvalidDigest, digest_stream, is_digest
from buildkit.errors import ReferenceFormatError
from buildkit.image import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Healthcheck,
    History,
    ImageConfig,
    Index,
    Manifest,
    ManifestInvalid,
    RuntimeConfig,
    descriptor_for,
    detect_media_type,
    format_created,
    parse_config,
    parse_index,
    parse_manifest,
    parse_manifest_or_index,
)
from buildkit.platforms import Platform

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
A = Digest("sha256:" + "a" * 64)
B = Digest("sha256:" + "b" * 64)


# ------------------------------------------------------------ digests


def test_digest_of_and_parts():
    d = Digest.of(b"")
    assert d == EMPTY and isinstance(d, str)
    assert (d.algorithm, d.hex, d.short) == ("sha256", EMPTY[7:], "e3b0c44298fc")
    assert Digest.from_hex(EMPTY[7:]) == d
    assert json.dumps({"d": d}) == f'{{"d": "{EMPTY}"}}'


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "sha256:" + "g" * 64,
        " sha256:" + "a" * 64,
        "sha512:" + "a" * 64,
        "a" * 64,
    ],
)
def test_invalid_digests(text):
    assert not is_digest(text)
    with pytest.raises(InvalidDigest):
        Digest(text)
    with pytest.raises(ReferenceFormatError):
        Digest(text)


def test_sha512_accepted_and_stream_digest():
    assert Digest("sha512:" + "0" * 128).algorithm == "sha512"
    import io

    data = b"x" * (3 << 20)
    assert digest_stream(io.BytesIO(data)) == (
        "sha256:" + hashlib.sha256(data).hexdigest(),
        len(data),
    )


# ------------------------------------------------------------ serialisation


def test_descriptor_field_order_and_omission():
    plain = Descriptor(OCI_LAYER_GZIP, A, 12)
    assert plain.to_dict() == {"mediaType": OCI_LAYER_GZIP, "digest": A, "size": 12}
    full = Descriptor(
        OCI_MANIFEST,
        A,
        3,
        urls=("https://x/y",),
        annotations={"z": "1", "a": "2"},
        platform=Platform("linux", "arm", "v7"),
        artifact_type="application/x",
    )
    text = json.dumps(full.to_dict(), separators=(",", ":"))
    assert text == (
        f'{{"mediaType":"{OCI_MANIFEST}","digest":"{A}","size":3,"urls":["https://x/y"],'
        '"annotations":{"a":"2","z":"1"},'
        '"platform":{"architecture":"arm","os":"linux","variant":"v7"},'
        '"artifactType":"application/x"}'
    )
    assert Descriptor.from_dict(full.to_dict()) == full
    named = plain.with_annotations(**{"org.opencontainers.image.ref.name": "1"})
    assert named.annotations == {"org.opencontainers.image.ref.name": "1"} and not plain.annotations


def sample_config() -> ImageConfig:
    return ImageConfig(
        architecture="arm64",
        os="linux",
        created="2024-01-02T03:04:05Z",
        config=RuntimeConfig(
            user="app",
            exposed_ports=("8080/tcp", "53/udp"),
            env=("PATH=/usr/bin", "B=ü<&>"),
            entrypoint=("/bin/app",),
            cmd=("--serve",),
            volumes=("/data",),
            working_dir="/srv",
            labels={"z": "last", "a": "first"},
            stop_signal="SIGTERM",
            healthcheck=Healthcheck(test=("CMD", "true"), interval=30_000_000_000, retries=3),
            on_build=("RUN echo",),
            shell=("/bin/sh", "-c"),
        ),
        diff_ids=(A, B),
        history=(
            History(created="2024-01-02T03:04:05Z", created_by="COPY . /srv", comment="buildkit"),
            History(created_by="ENV B=1", empty_layer=True),
        ),
    )


def test_image_config_exact_bytes():
    expected = (
        '{"created":"2024-01-02T03:04:05Z","architecture":"arm64","os":"linux",'
        '"config":{"User":"app","ExposedPorts":{"53/udp":{},"8080/tcp":{}},'
        '"Env":["PATH=/usr/bin","B=ü<&>"],"Entrypoint":["/bin/app"],"Cmd":["--serve"],'
        '"Volumes":{"/data":{}},"WorkingDir":"/srv","Labels":{"a":"first","z":"last"},'
        '"StopSignal":"SIGTERM","Healthcheck":{"Test":["CMD","true"],"Interval":30000000000,'
        '"Retries":3},"OnBuild":["RUN echo"],"Shell":["/bin/sh","-c"]},'
        f'"rootfs":{{"type":"layers","diff_ids":["{A}","{B}"]}},'
        '"history":[{"created":"2024-01-02T03:04:05Z","created_by":"COPY . /srv",'
        '"comment":"buildkit"},{"created_by":"ENV B=1","empty_layer":true}]}'
    )
    assert sample_config().to_json() == expected.encode()


def test_image_config_round_trip_and_scratch():
    config = sample_config()
    parsed = parse_config(config.to_json())
    assert parsed.to_json() == config.to_json()
    assert parsed.platform == Platform("linux", "arm64")
    scratch = ImageConfig(architecture="amd64", os="linux")
    assert scratch.to_json() == (
        b'{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}'
    )


def test_parse_docker_config_drops_unknown_fields():
    docker = {
        "architecture": "amd64",
        "os": "linux",
        "variant": "",
        "docker_version": "24.0",
        "container_config": {"Cmd": ["x"]},
        "config": {
            "Env": ["A=1"],
            "Cmd": None,
            "Labels": None,
            "ArgsEscaped": True,
            "ExposedPorts": {"80/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [A]},
    }
    parsed = parse_config(json.dumps(docker))
    assert parsed.config.cmd is None and parsed.config.env == ("A=1",)
    assert parsed.config.args_escaped and parsed.config.exposed_ports == ("80/tcp",)
    assert b"docker_version" not in parsed.to_json()


def test_manifest_and_index_exact_bytes_and_round_trip():
    config = descriptor_for(b"{}", OCI_CONFIG)
    layer = Descriptor(OCI_LAYER_GZIP, A, 100)
    manifest = Manifest(config=config, layers=(layer,))
    assert (
        manifest.to_json()
        == (
            f'{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",'
            f'"config":{{"mediaType":"{OCI_CONFIG}","digest":"{Digest.of(b"{}")}","size":2}},'
            f'"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{A}","size":100}}]}}'
        ).encode()
    )
    assert parse_manifest(manifest.to_json()) == manifest
    entry = descriptor_for(manifest.to_json(), OCI_MANIFEST, platform=Platform("linux", "arm64"))
    index = Index(manifests=(entry,), annotations={"k": "v"})
    assert index.to_json().startswith(
        f'{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{'.encode()
    )
    assert index.to_json().endswith(
        b'"platform":{"architecture":"arm64","os":"linux"}}],"annotations":{"k":"v"}}'
    )
    assert parse_index(index.to_json()) == index
    assert index.for_platform(Platform("linux", "arm64")) == entry
    assert index.for_platform(Platform("linux", "amd64")) is None


def test_docker_schema2_and_media_type_detection():
    docker_manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": A,
            "size": 1,
        },
        "layers": [],
    }
    data = json.dumps(docker_manifest, indent=3).encode()
    assert detect_media_type(data) == DOCKER_MANIFEST
    parsed = parse_manifest_or_index(data)
    assert isinstance(parsed, Manifest) and parsed.media_type == DOCKER_MANIFEST
    docker_list = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": []}
    assert isinstance(parse_manifest_or_index(json.dumps(docker_list)), Index)
    assert detect_media_type('{"schemaVersion":2,"manifests":[]}') == OCI_INDEX
    assert detect_media_type('{"schemaVersion":2,"config":{},"layers":[]}') == OCI_MANIFEST


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"schemaVersion":1,"config":{}}', "schemaVersion"),
        (b'{"schemaVersion":2,"layers":[]}', "config: missing"),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1}}',
            "manifest.config.digest",
        ),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"%s","size":"1"}}' % A.encode(),
            "manifest.config.size",
        ),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"%s","size":1},"layers":[1]}'
            % A.encode(),
            r"manifest.layers\[0\]",
        ),
    ],
)
def test_parse_errors_name_the_field(data, message):
    with pytest.raises(ManifestInvalid, match=message):
        parse_manifest(data)


def test_unsupported_media_type():
    with pytest.raises(ManifestInvalid, match="unsupported"):
        parse_manifest_or_index(b'{"mediaType":"text/plain"}')


@pytest.mark.parametrize(
    ("when", "want"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000.25, "2023-11-14T22:13:20.25Z"),
        (datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC), "2024-01-02T03:04:05.123Z"),
    ],
)
def test_format_created(when, want):
    assert format_created(when) == want
