from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from buildkit.sandbox import NamespaceSandbox, StepResult, StepSpec
from tests.fixtures.leaks import remove_farm_cgroup_parents
from tests.fixtures.rootfs import busybox_rootfs


@dataclass
class Ran:
    result: StepResult
    output: bytes
    upper: Path

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def upper_entries(self) -> set[str]:
        return {str(p.relative_to(self.upper)) for p in self.upper.rglob("*")}


Runner = Callable[..., Ran]


def _need_sandbox() -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace sandbox needs root")
    if not Path("/proc/filesystems").read_text().count("overlay"):
        pytest.skip("no overlayfs")


@pytest.fixture
def sandbox(tmp_path: Path) -> NamespaceSandbox:
    _need_sandbox()
    return NamespaceSandbox(scratch_root=tmp_path / "scratch")


@pytest.fixture
def amd64_root() -> Path:
    return busybox_rootfs("amd64")


@pytest.fixture
def run_step(sandbox: NamespaceSandbox, tmp_path: Path, amd64_root: Path) -> Iterator[Runner]:
    """Run a shell script (or argv) over the amd64 busybox root; fresh upper per call."""
    counter = iter(range(1000))

    def run(script: str | None = None, *, argv: tuple[str, ...] | None = None,
            lowers: tuple[str, ...] | None = None,
            output_hook: Callable[[bytes], None] | None = None, **fields: Any) -> Ran:  # fmt: skip
        n = next(counter)
        upper, work = tmp_path / f"upper{n}", tmp_path / f"work{n}"
        upper.mkdir()
        work.mkdir()
        spec = StepSpec(
            lower_dirs=lowers if lowers is not None else (str(amd64_root),),
            upper_dir=str(upper),
            work_dir=str(work),
            argv=argv or ("/bin/sh", "-c", script or "true"),
            env=("PATH=/usr/bin:/bin", "HOME=/root"),
        )
        spec = replace(spec, **fields)
        chunks: list[bytes] = []

        def output(data: bytes) -> None:
            chunks.append(data)
            if output_hook is not None:
                output_hook(data)

        result = sandbox.run(spec, output)
        return Ran(result, b"".join(chunks), upper)

    yield run
    # Overlay work dirs hold a root-only "work" dir; make sure tmp_path cleanup can go.
    for work in tmp_path.glob("work*"):
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _remove_farm_cgroup_parents() -> Iterator[None]:
    """Remove the farm-owned cgroup parents after the session if nothing else uses them."""
    yield
    remove_farm_cgroup_parents()
