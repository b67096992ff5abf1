"""Running one build step (a RUN) in isolation: the types every sandbox shares.

A `StepSpec` says what to run and over which filesystem: the read-only lower
dirs (snapshots of the parent layers, top first), the overlay upper dir that
becomes the step's new layer, and the overlay work dir beside it. A `Sandbox`
runs it, streams the combined stdout/stderr to a callback, and returns a
`StepResult`. `namespaces.NamespaceSandbox` is the Linux implementation.

The spec travels to the sandbox helper process as JSON (`spec_to_dict` /
`spec_from_dict`), so everything here is plain data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from buildkit.errors import InternalError

#: Characters overlayfs cannot take in a lowerdir/upperdir/workdir option.
_OVERLAY_UNSAFE = frozenset(",:\\\n")


class SandboxError(InternalError):
    """The sandbox itself failed (setup, helper, cgroup, network), not the step."""


class NetworkMode(enum.StrEnum):
    """`default`: own netns behind slirp4netns (outside world, no host loopback);
    `none`: own netns with only `lo`; `host`: the host's network (needs
    `--allow network.host`, which the caller checks)."""

    DEFAULT = "default"
    NONE = "none"
    HOST = "host"


@dataclass(frozen=True)
class BindMount:
    """A host file or directory bound at `target` (cache, bind and secret mounts)."""

    source: str
    target: str
    readonly: bool = True


@dataclass(frozen=True)
class TmpfsMount:
    """A fresh tmpfs at `target`; `size_bytes` 0 means the kernel default (half of RAM)."""

    target: str
    size_bytes: int = 0


Mount = BindMount | TmpfsMount


@dataclass(frozen=True)
class Limits:
    """Resource limits of one step; None means unlimited."""

    memory_bytes: int | None = None
    pids: int | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class StepSpec:
    """Everything a sandbox needs to run one step. Paths are host paths except
    `cwd` and mount targets, which are paths inside the step's root."""

    lower_dirs: tuple[str, ...]
    upper_dir: str
    work_dir: str
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    extra_gids: tuple[int, ...] = ()
    hostname: str = "farm"
    network: NetworkMode = NetworkMode.NONE
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    hosts: str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    resolv_conf: str = ""
    hostname_file: str | None = None  # contents of /etc/hostname; None: hostname + "\n"

    def validate(self) -> None:
        """Raise SandboxError when the spec cannot be run as given."""
        problems: list[str] = []
        for path in (*self.lower_dirs, self.upper_dir, self.work_dir):
            if not path.startswith("/"):
                problems.append(f"overlay path {path!r} is not absolute")
            if _OVERLAY_UNSAFE & set(path):
                problems.append(f"overlay path {path!r} contains one of , : \\ or a newline")
        if not self.argv or not self.argv[0]:
            problems.append("argv is empty")
        problems.extend(f"env entry {e!r} has no '='" for e in self.env if "=" not in e)
        if not self.cwd.startswith("/"):
            problems.append(f"cwd {self.cwd!r} is not absolute")
        if min(self.uid, self.gid, *self.extra_gids) < 0:
            problems.append("uid, gid and extra gids must not be negative")
        if not 0 < len(self.hostname) <= 64 or "/" in self.hostname:
            problems.append(f"hostname {self.hostname!r} is not valid")
        for mount in self.mounts:
            if not mount.target.startswith("/") or mount.target.rstrip("/") == "":
                problems.append(f"mount target {mount.target!r} must be an absolute path, not /")
            if isinstance(mount, BindMount) and not mount.source.startswith("/"):
                problems.append(f"bind source {mount.source!r} is not absolute")
        if problems:
            raise SandboxError("invalid step: " + "; ".join(problems))


@dataclass(frozen=True)
class StepResult:
    """How a step ended. `exit_code` follows the shell: 128+N when killed by signal N."""

    exit_code: int
    duration: float
    timed_out: bool = False
    oom_killed: bool = False
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


OutputCallback = Callable[[bytes], None]


class Sandbox(Protocol):
    """Runs one step in isolation; the upper dir holds exactly what the step changed."""

    def run(self, spec: StepSpec, output: OutputCallback) -> StepResult: ...

    def cancel_all(self) -> None:
        """Kill every running step (from another thread, e.g. on Ctrl-C)."""
        ...


def spec_to_dict(spec: StepSpec) -> dict[str, Any]:
    """The JSON-ready form of a spec (inverse of `spec_from_dict`)."""
    mounts: list[dict[str, Any]] = []
    for mount in spec.mounts:
        if isinstance(mount, BindMount):
            mounts.append(
                {"type": "bind", "source": mount.source, "target": mount.target,
                 "readonly": mount.readonly}
            )  # fmt: skip
        else:
            mounts.append({"type": "tmpfs", "target": mount.target, "size": mount.size_bytes})
    return {
        "lower_dirs": list(spec.lower_dirs),
        "upper_dir": spec.upper_dir,
        "work_dir": spec.work_dir,
        "argv": list(spec.argv),
        "env": list(spec.env),
        "cwd": spec.cwd,
        "uid": spec.uid,
        "gid": spec.gid,
        "extra_gids": list(spec.extra_gids),
        "hostname": spec.hostname,
        "network": spec.network.value,
        "mounts": mounts,
        "limits": {
            "memory_bytes": spec.limits.memory_bytes,
            "pids": spec.limits.pids,
            "timeout_seconds": spec.limits.timeout_seconds,
        },
        "hosts": spec.hosts,
        "resolv_conf": spec.resolv_conf,
        "hostname_file": spec.hostname_file,
    }


def spec_from_dict(data: dict[str, Any]) -> StepSpec:
    mounts: list[Mount] = []
    for m in data["mounts"]:
        if m["type"] == "bind":
            mounts.append(BindMount(m["source"], m["target"], bool(m["readonly"])))
        else:
            mounts.append(TmpfsMount(m["target"], int(m["size"])))
    limits = data["limits"]
    return StepSpec(
        lower_dirs=tuple(data["lower_dirs"]),
        upper_dir=data["upper_dir"],
        work_dir=data["work_dir"],
        argv=tuple(data["argv"]),
        env=tuple(data["env"]),
        cwd=data["cwd"],
        uid=int(data["uid"]),
        gid=int(data["gid"]),
        extra_gids=tuple(int(g) for g in data["extra_gids"]),
        hostname=data["hostname"],
        network=NetworkMode(data["network"]),
        mounts=tuple(mounts),
        limits=Limits(limits["memory_bytes"], limits["pids"], limits["timeout_seconds"]),
        hosts=data["hosts"],
        resolv_conf=data["resolv_conf"],
        hostname_file=data["hostname_file"],
    )
