"""OCI image types: descriptors, the image configuration, manifests and indexes.

Pure data, no I/O. Each type is a frozen dataclass with `to_dict()` / `to_json()`
and a `from_dict()` / `parse_*` twin that reads what Farm, BuildKit, Docker or
any registry wrote (unknown fields are dropped, wrong types raise
`ManifestInvalid` naming the field).

Serialisation is fixed, so the same values always give the same bytes (and
digest): compact UTF-8 JSON (`,` and `:` without spaces, no trailing newline,
non-ASCII kept as is), fields in the order of the Go structs of
opencontainers/image-spec and BuildKit's `DockerOCIImage` (what `json.Marshal`
emits for BuildKit's output), empty optional fields left out as `omitempty`
does, and the keys of maps (annotations, Labels, ExposedPorts, Volumes) sorted,
as Go sorts map keys. Unlike Go, `<`, `>` and `&` are not escaped as `\\u003c`...,
so bytes can differ from BuildKit's for such strings; digests are always over
the bytes Farm wrote, so this never matters for correctness.

The package is one module per kind of object: `mediatypes` (the media type
strings), `encoding` (canonical JSON and the field readers the others share),
`descriptor`, `config` (the image configuration) and `manifest` (manifests and
indexes). Import from `buildkit.image`: everything public is re-exported here.
"""

from __future__ import annotations

from buildkit.image.config import (
    Healthcheck,
    History,
    ImageConfig,
    RuntimeConfig,
    parse_config,
)
from buildkit.image.descriptor import Descriptor, descriptor_for, parse_platform_object
from buildkit.image.encoding import ManifestInvalid, canonical_json, format_created
from buildkit.image.manifest import (
    Index,
    Manifest,
    detect_media_type,
    parse_index,
    parse_manifest,
    parse_manifest_or_index,
)
from buildkit.image.mediatypes import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_CREATED,
    ANNOTATION_REF_NAME,
    CONFIG_TYPES,
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_TO_OCI,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    OCI_TO_DOCKER,
)

__all__ = [
    "ANNOTATION_CONTAINERD_NAME",
    "ANNOTATION_CREATED",
    "ANNOTATION_REF_NAME",
    "CONFIG_TYPES",
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER_GZIP",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_TO_OCI",
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "OCI_TO_DOCKER",
    "Descriptor",
    "Healthcheck",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "ManifestInvalid",
    "RuntimeConfig",
    "canonical_json",
    "descriptor_for",
    "detect_media_type",
    "format_created",
    "parse_config",
    "parse_index",
    "parse_manifest",
    "parse_manifest_or_index",
    "parse_platform_object",
]
