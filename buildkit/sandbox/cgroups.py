"""One cgroup leaf per step: memory and pids limits, and a kill that catches everything.

The unified (v2) hierarchy does the tracking and the killing (`cgroup.kill`).
Where v2 has the memory/pids controllers, they set the limits too; on hybrid
hosts, where those controllers still live in v1 hierarchies, a leaf is made in
each of those as well. Leaves are named `step-<caller pid>-<n>` under a
farm-owned parent (`farm` at the v2 root; `<own cgroup>/farm` in v1, so outer
limits still apply); leaves of dead callers are removed on the next run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from buildkit.sandbox.base import Limits, SandboxError

_counter = itertools.count()
_lock = threading.Lock()


@dataclass(frozen=True)
class CgroupLayout:
    """Where the hierarchies are: the v2 root and the caller's v1 cgroup per controller."""

    v2_root: Path | None
    v2_controllers: frozenset[str]
    v1: dict[str, Path]  # controller -> the caller's own cgroup dir in that hierarchy


def detect_layout() -> CgroupLayout:
    """Read /proc/self/mountinfo and /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name] = path
    v2_root: Path | None = None
    v1: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3]
        mount_point, mount_root = Path(fields[4]), fields[3]
        if fstype == "cgroup2" and v2_root is None and mount_root == "/":
            v2_root = mount_point
        elif fstype == "cgroup" and mount_root == "/":
            for controller in ("memory", "pids"):
                if controller in options.split(","):
                    v1[controller] = mount_point / own.get(controller, "/").lstrip("/")
    controllers: frozenset[str] = frozenset()
    if v2_root is not None:
        text = (v2_root / "cgroup.controllers").read_text()
        controllers = frozenset(text.split())
    return CgroupLayout(v2_root, controllers, v1)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


class StepCgroup:
    """The leaf cgroups of one step (one per hierarchy in use)."""

    def __init__(self, leaves: list[Path], v2_leaf: Path | None) -> None:
        self.leaves = leaves
        self.v2_leaf = v2_leaf

    @property
    def procs_files(self) -> list[str]:
        return [str(leaf / "cgroup.procs") for leaf in self.leaves]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for leaf in self.leaves:
            with contextlib.suppress(FileNotFoundError):
                found.update(int(p) for p in (leaf / "cgroup.procs").read_text().split())
        return found

    def kill(self) -> None:
        """SIGKILL every process in the step's cgroup."""
        if self.v2_leaf is not None and (self.v2_leaf / "cgroup.kill").exists():
            _write(self.v2_leaf / "cgroup.kill", "1")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def oom_killed(self) -> bool:
        for leaf, name in itertools.product(self.leaves, ("memory.events", "memory.oom_control")):
            with contextlib.suppress(FileNotFoundError, ValueError):
                for line in (leaf / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left, wait for the leaves to empty, remove them."""
        deadline = time.monotonic() + timeout
        while self.pids():
            self.kill()
            if time.monotonic() > deadline:
                raise SandboxError(f"processes survive in cgroup {self.leaves}: {self.pids()}")
            time.sleep(0.01)
        for leaf in self.leaves:
            while True:
                try:
                    leaf.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last exits are accounted
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)


class Cgroups:
    """Makes step leaves under farm-owned parents."""

    def __init__(self, parent: str = "farm", layout: CgroupLayout | None = None) -> None:
        self.layout = layout or detect_layout()
        self.parent = parent

    def _parents(self, limits: Limits) -> tuple[Path | None, list[Path]]:
        layout = self.layout
        v2 = layout.v2_root / self.parent if layout.v2_root is not None else None
        v1: list[Path] = []
        for controller, wanted in (("memory", limits.memory_bytes), ("pids", limits.pids)):
            if wanted is None or controller in layout.v2_controllers:
                continue
            if controller not in layout.v1:
                raise SandboxError(
                    f"no cgroup {controller} controller to limit the step's {controller}"
                )
            v1.append(layout.v1[controller] / self.parent)
        return v2, v1

    def _prepare_v2_parent(self, parent: Path, limits: Limits) -> None:
        parent.mkdir(exist_ok=True)
        wanted = [c for c, v in (("memory", limits.memory_bytes), ("pids", limits.pids))
                  if v is not None and c in self.layout.v2_controllers]  # fmt: skip
        if not wanted:
            return
        try:
            for level in (parent.parent, parent):
                enabled = (level / "cgroup.subtree_control").read_text().split()
                missing = " ".join(f"+{c}" for c in wanted if c not in enabled)
                if missing:
                    _write(level / "cgroup.subtree_control", missing)
        except OSError as exc:
            raise SandboxError(
                f"cannot enable {wanted} for {parent} ({exc}); give Farm a delegated cgroup"
            ) from exc

    def create(self, limits: Limits) -> StepCgroup:
        v2_parent, v1_parents = self._parents(limits)
        name = f"step-{os.getpid()}-{next(_counter)}"
        leaves: list[Path] = []
        v2_leaf: Path | None = None
        with _lock:
            if v2_parent is not None:
                self._prepare_v2_parent(v2_parent, limits)
            for parent in v1_parents:
                parent.mkdir(exist_ok=True)
            for parent in filter(None, [v2_parent, *v1_parents]):
                _collect_stale(parent)
        try:
            if v2_parent is not None:
                v2_leaf = v2_parent / name
                v2_leaf.mkdir()
                leaves.append(v2_leaf)
            for parent in v1_parents:
                (parent / name).mkdir()
                leaves.append(parent / name)
            self._limit(leaves, limits)
        except BaseException:
            StepCgroup(leaves, v2_leaf).remove()
            raise
        return StepCgroup(leaves, v2_leaf)

    def _limit(self, leaves: list[Path], limits: Limits) -> None:
        for leaf in leaves:
            if limits.memory_bytes is not None:
                if (leaf / "memory.max").exists():
                    _write(leaf / "memory.max", str(limits.memory_bytes))
                    if (leaf / "memory.swap.max").exists():
                        _write(leaf / "memory.swap.max", "0")
                elif (leaf / "memory.limit_in_bytes").exists():
                    _write(leaf / "memory.limit_in_bytes", str(limits.memory_bytes))
                    with contextlib.suppress(FileNotFoundError, OSError):
                        _write(leaf / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            if limits.pids is not None and (leaf / "pids.max").exists():
                _write(leaf / "pids.max", str(limits.pids))


def _collect_stale(parent: Path) -> None:
    """Remove empty leaves left by callers that died (SIGKILL leaves no chance to clean up)."""
    for leaf in parent.glob("step-*-*"):
        caller = int(leaf.name.split("-")[1])
        if caller == os.getpid() or Path(f"/proc/{caller}").exists():
            continue
        with contextlib.suppress(OSError):
            leaf.rmdir()  # fails (EBUSY) if anything still runs in it
