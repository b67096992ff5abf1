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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import RegistryError
from buildkit.platforms import Platform

# ------------------------------------------------------------ media types

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)
# The same thing in the other vocabulary, for converting on push or pull.
DOCKER_TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_MANIFEST_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER: OCI_LAYER,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
}
OCI_TO_DOCKER = {oci: docker for docker, oci in DOCKER_TO_OCI.items()}

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"


class ManifestInvalid(RegistryError):
    """JSON that is not the image object it claims to be."""

    retryable = False


# ------------------------------------------------------------ serialisation


def canonical_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON, keys in the order given (see the module docstring)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def format_created(when: int | float | datetime) -> str:
    """RFC 3339 in UTC as Go formats a time.Time: `2024-01-02T03:04:05Z`,
    fractional seconds only when there are some (trailing zeros trimmed)."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    when = when.astimezone(UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def _sorted_map(m: Mapping[str, str]) -> dict[str, str]:
    return {k: m[k] for k in sorted(m)}


def _set_map(keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {k: {} for k in sorted(keys)}


# ------------------------------------------------------------ parsing helpers


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where}: expected a JSON object")
    return value


def _str(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise ManifestInvalid(f"{where}.{key}: missing")
        return ""
    if not isinstance(value, str):
        raise ManifestInvalid(f"{where}.{key}: expected a string")
    return value


def _int(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> int:
    value = obj.get(key)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestInvalid(f"{where}.{key}: expected an integer")
    return value


def _strs(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestInvalid(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _str_map(obj: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestInvalid(f"{where}.{key}: expected an object of strings")
    return dict(value)


def _digest(obj: dict[str, Any], key: str, where: str) -> Digest:
    try:
        return Digest(_str(obj, key, where, required=True))
    except InvalidDigest as exc:
        raise ManifestInvalid(f"{where}.{key}: {exc}") from None


def _load(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        return _obj(json.loads(data), what)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"{what}: not valid JSON: {exc}") from None


# ------------------------------------------------------------ descriptors


def parse_platform_object(obj: Any, where: str = "platform") -> Platform:
    obj = _obj(obj, where)
    return Platform(
        _str(obj, "os", where, required=True),
        _str(obj, "architecture", where, required=True),
        _str(obj, "variant", where),
    )


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to content. `annotations` must not be mutated."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            obj["urls"] = list(self.urls)
        if self.annotations:
            obj["annotations"] = _sorted_map(self.annotations)
        if self.platform is not None:
            obj["platform"] = self.platform.to_oci()
        if self.artifact_type:
            obj["artifactType"] = self.artifact_type
        return obj

    @classmethod
    def from_dict(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        obj = _obj(obj, where)
        platform = obj.get("platform")
        size = _int(obj, "size", where, required=True)
        if size < 0:
            raise ManifestInvalid(f"{where}.size: negative")
        return cls(
            media_type=_str(obj, "mediaType", where, required=True),
            digest=_digest(obj, "digest", where),
            size=size,
            urls=_strs(obj, "urls", where) or (),
            annotations=_str_map(obj, "annotations", where),
            platform=None
            if platform is None
            else parse_platform_object(platform, where + ".platform"),
            artifact_type=_str(obj, "artifactType", where),
        )

    def with_annotations(self, **extra: str) -> Descriptor:
        """A copy with `extra` merged into the annotations (keys may contain dots:
        pass them as `**{"org.opencontainers.image.ref.name": tag}`)."""
        merged = {**self.annotations, **extra}
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            self.urls,
            merged,
            self.platform,
            self.artifact_type,
        )


def descriptor_for(data: bytes, media_type: str, **kwargs: Any) -> Descriptor:
    """The descriptor of `data` (digest and size computed here)."""
    return Descriptor(media_type, Digest.of(data), len(data), **kwargs)


# ------------------------------------------------------------ image configuration


@dataclass(frozen=True)
class Healthcheck:
    """Durations in nanoseconds, as Docker stores them; 0 means "inherit the default"."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        pairs = [
            ("Test", list(self.test)),
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ]
        return {k: v for k, v in pairs if v}

    @classmethod
    def from_dict(cls, obj: Any, where: str = "Healthcheck") -> Healthcheck:
        obj = _obj(obj, where)
        return cls(
            _strs(obj, "Test", where) or (),
            _int(obj, "Interval", where),
            _int(obj, "Timeout", where),
            _int(obj, "StartPeriod", where),
            _int(obj, "StartInterval", where),
            _int(obj, "Retries", where),
        )


@dataclass(frozen=True)
class RuntimeConfig:
    """The `config` object of an image configuration: how to run a container.

    `exposed_ports` ("80/tcp") and `volumes` ("/data") are sets in JSON
    (`{"80/tcp": {}}`); they are kept sorted here."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [
            ("User", self.user),
            ("ExposedPorts", _set_map(self.exposed_ports)),
            ("Env", list(self.env)),
            ("Entrypoint", list(self.entrypoint or ())),
            ("Cmd", list(self.cmd or ())),
            ("Volumes", _set_map(self.volumes)),
            ("WorkingDir", self.working_dir),
            ("Labels", _sorted_map(self.labels)),
            ("StopSignal", self.stop_signal),
            ("ArgsEscaped", self.args_escaped),
            ("Healthcheck", self.healthcheck.to_dict() if self.healthcheck else None),
            ("OnBuild", list(self.on_build)),
            ("Shell", list(self.shell)),
        ]
        return {k: v for k, v in pairs if v}

    @classmethod
    def from_dict(cls, obj: Any, where: str = "config") -> RuntimeConfig:
        obj = _obj(obj if obj is not None else {}, where)
        health = obj.get("Healthcheck")
        return cls(
            user=_str(obj, "User", where),
            exposed_ports=tuple(
                sorted(_obj(obj.get("ExposedPorts") or {}, where + ".ExposedPorts"))
            ),
            env=_strs(obj, "Env", where) or (),
            entrypoint=_strs(obj, "Entrypoint", where),
            cmd=_strs(obj, "Cmd", where),
            volumes=tuple(sorted(_obj(obj.get("Volumes") or {}, where + ".Volumes"))),
            working_dir=_str(obj, "WorkingDir", where),
            labels=_str_map(obj, "Labels", where),
            stop_signal=_str(obj, "StopSignal", where),
            args_escaped=bool(obj.get("ArgsEscaped", False)),
            healthcheck=None
            if health is None
            else Healthcheck.from_dict(health, where + ".Healthcheck"),
            on_build=_strs(obj, "OnBuild", where) or (),
            shell=_strs(obj, "Shell", where) or (),
        )


@dataclass(frozen=True)
class History:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        pairs = [
            ("created", self.created),
            ("created_by", self.created_by),
            ("author", self.author),
            ("comment", self.comment),
            ("empty_layer", self.empty_layer),
        ]
        return {k: v for k, v in pairs if v}

    @classmethod
    def from_dict(cls, obj: Any, where: str = "history") -> History:
        obj = _obj(obj, where)
        return cls(
            _str(obj, "created", where),
            _str(obj, "created_by", where),
            _str(obj, "author", where),
            _str(obj, "comment", where),
            bool(obj.get("empty_layer", False)),
        )


@dataclass(frozen=True)
class ImageConfig:
    """The configuration blob a manifest's `config` descriptor points to."""

    architecture: str
    os: str
    variant: str = ""
    created: str = ""
    author: str = ""
    config: RuntimeConfig = field(default_factory=RuntimeConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        if self.created:
            obj["created"] = self.created
        if self.author:
            obj["author"] = self.author
        obj["architecture"] = self.architecture
        obj["os"] = self.os
        if self.variant:
            obj["variant"] = self.variant
        obj["config"] = self.config.to_dict()
        obj["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            obj["history"] = [h.to_dict() for h in self.history]
        return obj

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any, where: str = "image config") -> ImageConfig:
        obj = _obj(obj, where)
        rootfs = _obj(obj.get("rootfs") or {}, where + ".rootfs")
        diff_ids = rootfs.get("diff_ids") or []
        if not isinstance(diff_ids, list):
            raise ManifestInvalid(f"{where}.rootfs.diff_ids: expected a list")
        history = obj.get("history") or []
        if not isinstance(history, list):
            raise ManifestInvalid(f"{where}.history: expected a list")
        return cls(
            architecture=_str(obj, "architecture", where, required=True),
            os=_str(obj, "os", where, required=True),
            variant=_str(obj, "variant", where),
            created=_str(obj, "created", where),
            author=_str(obj, "author", where),
            config=RuntimeConfig.from_dict(obj.get("config"), where + ".config"),
            diff_ids=tuple(
                _digest({"d": d}, "d", f"{where}.rootfs.diff_ids[{i}]")
                for i, d in enumerate(diff_ids)
            ),
            history=tuple(
                History.from_dict(h, f"{where}.history[{i}]") for i, h in enumerate(history)
            ),
        )


def parse_config(data: bytes | str) -> ImageConfig:
    return ImageConfig.from_dict(_load(data, "image config"))


# ------------------------------------------------------------ manifests and indexes


def _descriptors(obj: dict[str, Any], key: str, where: str) -> tuple[Descriptor, ...]:
    items = obj.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ManifestInvalid(f"{where}.{key}: expected a list")
    return tuple(Descriptor.from_dict(d, f"{where}.{key}[{i}]") for i, d in enumerate(items))


def _subject(obj: dict[str, Any], where: str) -> Descriptor | None:
    subject = obj.get("subject")
    return None if subject is None else Descriptor.from_dict(subject, where + ".subject")


def _schema_version(obj: dict[str, Any], where: str) -> None:
    if obj.get("schemaVersion") != 2:
        raise ManifestInvalid(f"{where}.schemaVersion: expected 2")


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI, or Docker schema 2: the same shape)."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = OCI_MANIFEST
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            obj["artifactType"] = self.artifact_type
        obj["config"] = self.config.to_dict()
        obj["layers"] = [d.to_dict() for d in self.layers]
        if self.subject is not None:
            obj["subject"] = self.subject.to_dict()
        if self.annotations:
            obj["annotations"] = _sorted_map(self.annotations)
        return obj

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any, where: str = "manifest") -> Manifest:
        obj = _obj(obj, where)
        _schema_version(obj, where)
        if "config" not in obj:
            raise ManifestInvalid(f"{where}.config: missing")
        return cls(
            config=Descriptor.from_dict(obj["config"], where + ".config"),
            layers=_descriptors(obj, "layers", where),
            media_type=_str(obj, "mediaType", where) or OCI_MANIFEST,
            artifact_type=_str(obj, "artifactType", where),
            subject=_subject(obj, where),
            annotations=_str_map(obj, "annotations", where),
        )


@dataclass(frozen=True)
class Index:
    """An image index (OCI, or a Docker manifest list: the same shape)."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = OCI_INDEX
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            obj["artifactType"] = self.artifact_type
        obj["manifests"] = [d.to_dict() for d in self.manifests]
        if self.subject is not None:
            obj["subject"] = self.subject.to_dict()
        if self.annotations:
            obj["annotations"] = _sorted_map(self.annotations)
        return obj

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any, where: str = "index") -> Index:
        obj = _obj(obj, where)
        _schema_version(obj, where)
        return cls(
            manifests=_descriptors(obj, "manifests", where),
            media_type=_str(obj, "mediaType", where) or OCI_INDEX,
            artifact_type=_str(obj, "artifactType", where),
            subject=_subject(obj, where),
            annotations=_str_map(obj, "annotations", where),
        )

    def for_platform(self, platform: Platform) -> Descriptor | None:
        """The first entry for exactly `platform` (matching rules live in platforms.py)."""
        for desc in self.manifests:
            if desc.platform == platform:
                return desc
        return None


def detect_media_type(data: bytes | str) -> str:
    """The media type of manifest JSON: its `mediaType`, or guessed from its shape
    (an index has `manifests`, an image manifest has `config`)."""
    obj = _load(data, "manifest")
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj:
        return OCI_MANIFEST
    raise ManifestInvalid("manifest: neither an image manifest nor an index")


def parse_manifest(data: bytes | str) -> Manifest:
    return Manifest.from_dict(_load(data, "manifest"))


def parse_index(data: bytes | str) -> Index:
    return Index.from_dict(_load(data, "index"))


def parse_manifest_or_index(data: bytes | str, media_type: str = "") -> Manifest | Index:
    """Parse manifest JSON as the type `media_type` (or its own) says."""
    kind = media_type or detect_media_type(data)
    if kind in INDEX_TYPES:
        return parse_index(data)
    if kind in MANIFEST_TYPES:
        return parse_manifest(data)
    raise ManifestInvalid(f"manifest: unsupported media type {kind!r}")
