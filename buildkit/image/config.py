"""The image configuration: the blob a manifest's `config` descriptor points to.

`ImageConfig` (platform, root filesystem diff_ids, history) with the
`RuntimeConfig` it holds (how to run a container: user, env, entrypoint, ports,
labels, `Healthcheck`, ...), the `History` entries, and `parse_config`.
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
    _load,
    _obj,
    _set_map,
    _sorted_map,
    _str,
    _str_map,
    _strs,
    canonical_json,
)
from buildkit.platforms import Platform


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
