"""Multi-stage builds: only the needed stages run, --target, cross-compilation, QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildkit.platforms import host_platform, parse_platform
from tests.engine.conftest import AMD64, ARM64, BASE, build, need_arm64

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

STAGES = (
    BASE.replace("FROM scratch", "FROM scratch AS base")
    + "FROM base AS unused\nRUN echo unused > /unused\n"
    + "FROM base AS first\nRUN echo first > /first\n"
    + "FROM first AS second\nRUN echo second > /second\n"
)


def _stages_started(built) -> set[str]:  # type: ignore[no-untyped-def]
    return {e.stage for e in built.of("step.start")}


def test_an_unused_stage_never_runs(tmp_path: Path) -> None:
    built = build(tmp_path, STAGES)
    assert _stages_started(built) == {"base", "first", "second"}
    assert not [e for e in built.events.events if "unused" in e.name]
    root = built.rootfs(tmp_path / "root")
    assert (root / "first").exists() and (root / "second").exists()
    assert not (root / "unused").exists()


def test_target_stops_at_the_named_stage(tmp_path: Path) -> None:
    built = build(tmp_path, STAGES, target="first")
    assert _stages_started(built) == {"base", "first"}
    root = built.rootfs(tmp_path / "root")
    assert (root / "first").exists()
    assert not (root / "second").exists()


def test_unknown_target_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="nosuch"):
        build(tmp_path, STAGES, target="nosuch")


def test_stage_used_by_copy_from_runs_before_it(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE.replace("FROM scratch", "FROM scratch AS tools")
        + "RUN echo tool > /tool\n"
        + "FROM scratch AS skipped\nCOPY Dockerfile /\n"
        + "FROM scratch\nCOPY --from=tools /tool /tool\n",
    )
    starts = built.of("step.start")
    assert {e.stage for e in starts} == {"tools", "stage-2"}
    last_tools = max(i for i, e in enumerate(starts) if e.stage == "tools")
    first_final = min(i for i, e in enumerate(starts) if e.stage == "stage-2")
    assert last_tools < first_final


def test_arm64_run_is_emulated(tmp_path: Path) -> None:
    need_arm64()
    if host_platform() == parse_platform(ARM64):
        pytest.skip("arm64 is native here")
    built = build(tmp_path, BASE + "RUN uname -m > /arch\n", platforms=[ARM64])
    assert (built.rootfs(tmp_path / "root", ARM64) / "arch").read_text() == "aarch64\n"
    # Only RUN executes the image's binaries: only RUN is marked emulated.
    starts = built.of("step.start", platform=ARM64)
    assert [e.name for e in starts if e.emulated] == ["RUN uname -m > /arch"]
    config = built.config(ARM64)
    assert config["architecture"] == "arm64"
    assert config.get("variant", "v8") == "v8"
    # The busybox binary in the image is the arm64 one.
    busybox = (built.rootfs(tmp_path / "root2", ARM64) / "bin/busybox").read_bytes()[:20]
    assert busybox[18] == 0xB7  # e_machine EM_AARCH64


def test_cross_compilation_with_buildplatform(tmp_path: Path) -> None:
    need_arm64()
    if host_platform() != parse_platform(AMD64):
        pytest.skip("this test cross-compiles from amd64")
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM scratch AS build\n"
        "ARG BUILDARCH\n"
        "ADD rootfs-${BUILDARCH}.tar /\n"
        "ARG TARGETARCH\n"
        "ARG TARGETPLATFORM\n"
        'RUN echo "built on $(uname -m) for $TARGETARCH ($TARGETPLATFORM)" > /out\n'
        "FROM scratch\n"
        "ARG TARGETARCH\n"
        "ADD rootfs-${TARGETARCH}.tar /\n"
        "COPY --from=build /out /out\n"
        "RUN uname -m > /final-arch\n"
    )
    built = build(tmp_path, dockerfile, platforms=[AMD64, ARM64])
    for platform, machine in ((AMD64, "x86_64"), (ARM64, "aarch64")):
        root = built.rootfs(tmp_path / platform.replace("/", "_"), platform)
        arch = platform.split("/")[1]
        assert (root / "out").read_text() == f"built on x86_64 for {arch} ({platform})\n"
        assert (root / "final-arch").read_text() == f"{machine}\n"
    # The build stage runs natively for both targets; only the arm64 final stage is emulated.
    build_runs = [e for e in built.of("step.start", stage="build") if e.name.startswith("RUN")]
    assert len(build_runs) == 2
    assert all(e.platform == AMD64 and not e.emulated for e in build_runs)
    final_runs = [e for e in built.of("step.start", stage="stage-1") if e.name.startswith("RUN")]
    assert {(e.platform, e.emulated) for e in final_runs} == {(AMD64, False), (ARM64, True)}
    assert built.config(ARM64)["architecture"] == "arm64"


def test_a_failing_emulated_step_names_its_platform(tmp_path: Path) -> None:
    from buildkit.errors import BuildStepError

    need_arm64()
    with pytest.raises(BuildStepError) as info:
        build(
            tmp_path,
            BASE + 'RUN test "$(uname -m)" = x86_64\n',
            platforms=[AMD64, ARM64],
            tags=["never:1"],
        )
    assert info.value.platform == ARM64
    assert info.value.exit_code == 1
    assert "[linux/arm64]" in str(info.value)
