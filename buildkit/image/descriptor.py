"""Descriptors: typed pointers to content (media type, digest, size).

`Descriptor` with its `to_dict` / `from_dict` pair, `descriptor_for` to make one
from bytes, and `parse_platform_object` for the `platform` a descriptor in an
index may carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from buildkit.digest import Digest
from buildkit.image.encoding import (
    ManifestInvalid,
    _digest,
    _int,
    _obj,
    _sorted_map,
    _str,
    _str_map,
    _strs,
)
from buildkit.platforms import Platform


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
