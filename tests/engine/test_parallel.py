"""Stages and platforms side by side, observed through the order of events.

Where two steps must overlap, they prove it to each other: each one leaves a
mark in a cache mount they share (cache mounts of one id are one directory on
the host, across stages and platforms) and waits for the other's. Run one
after the other, the first would time out and the build fail; events show the
same thing (both started before either was done).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from buildkit.errors import BuildStepError
from buildkit.events import Event
from tests.engine.conftest import (
    AMD64,
    ARM64,
    BASE,
    Built,
    build,
    filesystem_step,
    need_arm64,
    processes_with,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

ROOT = BASE.replace("FROM scratch", "FROM scratch AS base")

#: Leave mark $1 in /meet, wait (up to 10 s) for mark $2.
MEET = (
    "RUN --mount=type=cache,target=/meet,id=meet "
    "touch /meet/{mine} && i=0 && while [ ! -e /meet/{theirs} ]; do "
    'sleep 0.05; i=$((i+1)); [ "$i" -lt 200 ] || exit 9; done && echo {mine} > /{mine}\n'
)


def meet(mine: str, theirs: str) -> str:
    return MEET.format(mine=mine, theirs=theirs)


def position(built: Built, kind: str, **match: object) -> int:
    """The index in the event stream of the one event of `kind` matching `match`."""
    (found,) = [
        n
        for n, e in enumerate(built.events.events)
        if e.kind == kind and all(getattr(e, k) == v for k, v in match.items())
    ]
    return found


def overlap(built: Built, one: dict[str, object], other: dict[str, object]) -> bool:
    """Both steps started before either of them was done."""
    starts = position(built, "step.start", **one), position(built, "step.start", **other)
    dones = position(built, "step.done", **one), position(built, "step.done", **other)
    return max(starts) < min(dones)


def runs(built: Built, platform: str = AMD64) -> list[Event]:
    return [e for e in built.events.events if e.platform == platform and e.name.startswith("RUN")]


TWO_STAGES = ROOT + (
    "FROM base AS left\n" + meet("left", "right") + "FROM base AS right\n" + meet("right", "left")
    + "FROM scratch\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n"
)  # fmt: skip


def test_independent_stages_run_side_by_side(tmp_path: Path) -> None:
    built = build(tmp_path, TWO_STAGES, jobs=2)
    assert overlap(built, {"stage": "left"}, {"stage": "right"})
    # The final stage waited for both.
    last_run = max(position(built, "step.done", stage=s) for s in ("left", "right"))
    first_copy = min(n for n, e in enumerate(built.events.events) if e.stage == "stage-3")
    assert last_run < first_copy
    root = built.rootfs(tmp_path / "root")
    assert (root / "left").read_text() == "left\n"
    assert (root / "right").read_text() == "right\n"


def test_one_job_runs_one_filesystem_step_at_a_time(tmp_path: Path) -> None:
    dockerfile = ROOT + "".join(
        f"FROM base AS s{n}\nRUN sleep 0.2 && echo {n} > /{n}\n" for n in range(3)
    ) + "FROM scratch\n" + "".join(f"COPY --from=s{n} /{n} /{n}\n" for n in range(3))  # fmt: skip
    built = build(tmp_path, dockerfile, jobs=1)
    running = 0
    for e in built.events.events:
        if not filesystem_step(e.name):
            continue
        if e.kind == "step.start":
            running += 1
            assert running == 1, f"{e.label} started while another filesystem step ran"
        elif e.kind in ("step.done", "step.cached", "step.error"):
            running -= 1
    assert running == 0
    assert len([e for e in built.of("step.done") if e.name.startswith("RUN sleep")]) == 3


def test_platforms_run_side_by_side(tmp_path: Path) -> None:
    need_arm64()
    dockerfile = BASE + (
        "ARG TARGETARCH\n"
        "RUN --mount=type=cache,target=/meet,id=meet touch /meet/$TARGETARCH && "
        'other=$([ "$TARGETARCH" = amd64 ] && echo arm64 || echo amd64) && i=0 && '
        'while [ ! -e /meet/$other ]; do sleep 0.05; i=$((i+1)); [ "$i" -lt 200 ] || exit 9; '
        "done && uname -m > /arch\n"
    )
    built = build(tmp_path, dockerfile, platforms=[AMD64, ARM64], jobs=2)
    amd = runs(built, AMD64)[-1]
    arm = runs(built, ARM64)[-1]
    assert overlap(
        built, {"platform": AMD64, "line": amd.line}, {"platform": ARM64, "line": arm.line}
    )
    assert (built.rootfs(tmp_path / "amd", AMD64) / "arch").read_text() == "x86_64\n"
    assert (built.rootfs(tmp_path / "arm", ARM64) / "arch").read_text() == "aarch64\n"


def test_unused_stages_never_run_even_when_they_would_fail(tmp_path: Path) -> None:
    dockerfile = ROOT + (
        "FROM base AS broken\nRUN exit 1\n"
        "FROM broken AS on-broken\nRUN echo never > /never\n"
        "FROM base AS used\nRUN echo used > /used\n"
        "FROM scratch AS orphan\nCOPY Dockerfile /\n"
        "FROM base\nCOPY --from=used /used /used\n"
    )
    built = build(tmp_path, dockerfile, jobs=4)
    assert {e.stage for e in built.events.events} == {"base", "used", "stage-5"}
    assert (built.rootfs(tmp_path / "root") / "used").exists()


# ---------------------------------------------------------------- shared stages

COUNTED = (
    # Tools built on the build platform: the same for every target.
    "FROM --platform=PLATFORM scratch AS tools\n"
    "ARG BUILDARCH\n"
    "ADD rootfs-${BUILDARCH}.tar /\n"
    "RUN --mount=type=cache,target=/count,id=count echo x >> /count/runs && echo tool > /tool\n"
    + BASE
    + "COPY --from=tools /tool /tool\n"
    "RUN --mount=type=cache,target=/count,id=count wc -l < /count/runs > /runs\n"
)


@pytest.mark.parametrize("platform", ["$BUILDPLATFORM", AMD64])
def test_a_stage_shared_by_two_targets_runs_once(tmp_path: Path, platform: str) -> None:
    need_arm64()
    built = build(tmp_path, COUNTED.replace("PLATFORM", platform), platforms=[AMD64, ARM64], jobs=4)
    counting = [e for e in built.events.events if e.stage == "tools" and e.name.startswith("RUN")]
    # One of the two targets runs it; the other waits and takes its result.
    assert [e.kind for e in counting if e.kind != "step.start"] in (
        ["step.done", "step.cached"],
        ["step.cached", "step.done"],
    )
    assert {e.platform for e in counting} == {AMD64}  # it runs for the build platform
    for target in (AMD64, ARM64):
        root = built.rootfs(tmp_path / target.replace("/", "_"), target)
        assert (root / "tool").read_text() == "tool\n"
        assert (root / "runs").read_text().strip() == "1"
    # Both images carry the very same tools layer.
    tools_layer = built.layer_digests(AMD64)[1]
    assert tools_layer == built.layer_digests(ARM64)[1]


def test_a_build_platform_stage_reading_target_args_runs_per_target(tmp_path: Path) -> None:
    need_arm64()
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM scratch AS cross\n"
        "ARG BUILDARCH\nADD rootfs-${BUILDARCH}.tar /\n"
        "ARG TARGETARCH\nRUN echo $TARGETARCH > /for\n"
        "FROM scratch\nCOPY --from=cross /for /for\n"
    )
    built = build(tmp_path, dockerfile, platforms=[AMD64, ARM64], jobs=4)
    cross = [e for e in built.of("step.done") if e.name == "RUN echo $TARGETARCH > /for"]
    assert len(cross) == 2  # two different keys: no sharing
    assert built.layer_file(-1, "for", AMD64) == b"amd64\n"
    assert built.layer_file(-1, "for", ARM64) == b"arm64\n"


# ---------------------------------------------------------------- failure


def test_a_failing_step_cancels_the_other_stages(tmp_path: Path) -> None:
    dockerfile = ROOT + (
        "FROM base AS slow\n"
        "RUN --mount=type=cache,target=/meet,id=meet touch /meet/slow && sleep 29.25\n"
        "FROM base AS failing\n"
        # Fail once the slow step surely runs (or after 10 s anyway).
        "RUN --mount=type=cache,target=/meet,id=meet i=0; while [ ! -e /meet/slow ]; do "
        'sleep 0.05; i=$((i+1)); [ "$i" -lt 200 ] || break; done; echo broken; exit 3\n'
        "FROM scratch\nCOPY --from=slow /bin/sh /a\nCOPY --from=failing /bin/sh /b\n"
    )
    started = time.monotonic()
    with pytest.raises(BuildStepError) as info:
        build(tmp_path, dockerfile, jobs=2)
    assert time.monotonic() - started < 10
    assert info.value.exit_code == 3
    assert "broken" in info.value.log_tail
    assert not processes_with("sleep 29.25")
