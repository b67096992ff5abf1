"""Image manifests and indexes, and reading manifest JSON of either kind.

`Manifest` (a config and its layers) and `Index` (a list of manifests, one per
platform), OCI or Docker: the shapes are the same. `detect_media_type` tells
which one some JSON is; `parse_manifest`, `parse_index` and
`parse_manifest_or_index` read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from buildkit.image.descriptor import Descriptor
from buildkit.image.encoding import (
    ManifestInvalid,
    _load,
    _obj,
    _sorted_map,
    _str,
    _str_map,
    canonical_json,
)
from buildkit.image.mediatypes import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST
from buildkit.platforms import Platform


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


def _envelope(doc: Manifest | Index, body: dict[str, Any]) -> dict[str, Any]:
    """The fields a manifest and an index share, around `body`, in the order
    the digest depends on."""
    obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": doc.media_type}
    if doc.artifact_type:
        obj["artifactType"] = doc.artifact_type
    obj.update(body)
    if doc.subject is not None:
        obj["subject"] = doc.subject.to_dict()
    if doc.annotations:
        obj["annotations"] = _sorted_map(doc.annotations)
    return obj


def _envelope_fields(obj: dict[str, Any], where: str, default_type: str) -> dict[str, Any]:
    """Read the fields a manifest and an index share (see `_envelope`)."""
    return {
        "media_type": _str(obj, "mediaType", where) or default_type,
        "artifact_type": _str(obj, "artifactType", where),
        "subject": _subject(obj, where),
        "annotations": _str_map(obj, "annotations", where),
    }


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
        return _envelope(
            self,
            {"config": self.config.to_dict(), "layers": [d.to_dict() for d in self.layers]},
        )

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
            **_envelope_fields(obj, where, OCI_MANIFEST),
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
        return _envelope(self, {"manifests": [d.to_dict() for d in self.manifests]})

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any, where: str = "index") -> Index:
        obj = _obj(obj, where)
        _schema_version(obj, where)
        return cls(
            manifests=_descriptors(obj, "manifests", where),
            **_envelope_fields(obj, where, OCI_INDEX),
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
