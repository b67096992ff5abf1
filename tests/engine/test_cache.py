"""The step cache through real builds: what hits, what misses, and what a hit gives.

Every test builds twice (or more) in one FARM_HOME: `build(tmp_path, ...)`
called again rewrites the context and reuses the store and its step cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import (
    AMD64,
    ARM64,
    BASE,
    Built,
    build,
    filesystem_step,
    need_arm64,
    outcomes,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

FARM = str(Path(sys.executable).with_name("farm"))


def fs_steps(built: Built, platform: str = AMD64) -> list[tuple[str, str]]:
    """(name, done|cached) of every filesystem step, in Dockerfile order."""
    return [(name, how) for _, name, how in outcomes(built, platform) if filesystem_step(name)]


def meta_steps(built: Built, platform: str = AMD64) -> list[tuple[str, str]]:
    return [(name, how) for _, name, how in outcomes(built, platform) if not filesystem_step(name)]


def cache_dir(built: Built) -> Path:
    return built.home / "registry" / "farm" / "cache"


def records(built: Built) -> dict[str, dict[str, Any]]:
    """The step cache records in the store, by their description."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(cache_dir(built).glob("*.json")):
        data = json.loads(path.read_text())
        assert path.stem == data["key"].removeprefix("sha256:")
        found[data["description"]] = data
    return found


def digests(built: Built, platform: str = AMD64) -> tuple[str, str, str, list[str]]:
    manifest = built.manifest(platform)
    return (
        built.digest,
        built.manifest_digest(platform),
        manifest["config"]["digest"],
        built.layer_digests(platform),
    )


# ---------------------------------------------------------------- nothing changed

STEPS = BASE + (
    "ENV GREETING=hello\n"
    "RUN echo $GREETING > /greeting\n"
    "WORKDIR /app\n"
    "COPY a.txt ./\n"
    "RUN cat a.txt > /copied\n"
    "RUN true\n"
    'CMD ["cat", "/greeting"]\n'
)


def test_a_rebuild_with_nothing_changed_runs_no_step(tmp_path: Path) -> None:
    first = build(tmp_path, STEPS, {"a.txt": "a\n"})
    assert {how for _, how in fs_steps(first)} == {"done"}
    again = build(tmp_path, STEPS, {"a.txt": "a\n"})
    names = [name for name, _ in fs_steps(first)]
    assert names == [
        "ADD rootfs-amd64.tar /",
        "RUN echo $GREETING > /greeting",
        "WORKDIR /app",
        "COPY a.txt ./",
        "RUN cat a.txt > /copied",
        "RUN true",
    ]
    # Every filesystem step is a hit: it starts and is CACHED, none is done or logs.
    assert fs_steps(again) == [(name, "cached") for name in names]
    assert not again.of("step.log")
    for name in names:
        assert [e.kind for e in again.events.events if e.name == name] == [
            "step.start",
            "step.cached",
        ]
    # Metadata steps go through no cache: they start and are done, as the first time.
    assert (
        meta_steps(again)
        == meta_steps(first)
        == [
            ("ARG TARGETARCH=amd64", "done"),
            ("ENV GREETING=hello", "done"),
            ('CMD ["cat", "/greeting"]', "done"),
        ]
    )
    assert digests(again) == digests(first)
    assert again.config() == first.config()
    root = again.rootfs(tmp_path / "root")
    assert (root / "greeting").read_text() == "hello\n"
    assert (root / "copied").read_text() == "a\n"


def test_a_rebuild_of_two_platforms_gives_the_same_index(tmp_path: Path) -> None:
    need_arm64()
    dockerfile = BASE + "COPY a.txt /\nRUN uname -m > /arch\n"
    both = (AMD64, ARM64)
    first = build(tmp_path, dockerfile, {"a.txt": "a"}, platforms=both)
    again = build(tmp_path, dockerfile, {"a.txt": "a"}, platforms=both)
    assert first.result.index is not None
    for platform in both:
        assert {how for _, how in fs_steps(again, platform)} == {"cached"}
        assert digests(again, platform) == digests(first, platform)
    assert again.digest == first.digest


def test_no_cache_runs_every_step_and_gives_the_same_digests(tmp_path: Path) -> None:
    first = build(tmp_path, STEPS, {"a.txt": "a\n"})
    fresh = build(tmp_path, STEPS, {"a.txt": "a\n"}, no_cache=True)
    assert fs_steps(fresh) == [(name, "done") for name, _ in fs_steps(first)]
    assert digests(fresh) == digests(first)


# ---------------------------------------------------------------- context files

LADDER = BASE + (
    "RUN echo one > /one\n"
    "COPY a.txt /a.txt\n"
    "RUN echo two > /two\n"
    "COPY dir/ /dir/\n"
    "RUN cat /dir/b.txt > /three\n"
)
LADDER_FILES = {"a.txt": "a\n", "dir/b.txt": "b\n", "unused.txt": "u\n"}


def test_a_changed_file_reruns_from_the_first_copy_that_reads_it(tmp_path: Path) -> None:
    build(tmp_path, LADDER, LADDER_FILES)
    changed = build(tmp_path, LADDER, {**LADDER_FILES, "dir/b.txt": "B\n"})
    assert fs_steps(changed) == [
        ("ADD rootfs-amd64.tar /", "cached"),
        ("RUN echo one > /one", "cached"),
        ("COPY a.txt /a.txt", "cached"),
        ("RUN echo two > /two", "cached"),
        ("COPY dir/ /dir/", "done"),
        ("RUN cat /dir/b.txt > /three", "done"),
    ]
    assert (changed.rootfs(tmp_path / "root") / "three").read_text() == "B\n"

    earlier = build(tmp_path, LADDER, {**LADDER_FILES, "a.txt": "A\n", "dir/b.txt": "B\n"})
    assert [how for _, how in fs_steps(earlier)] == ["cached", "cached"] + ["done"] * 4


def test_a_file_no_copy_reads_and_an_mtime_change_are_hits(tmp_path: Path) -> None:
    first = build(tmp_path, LADDER, LADDER_FILES)
    context = tmp_path / "context"
    os.utime(context / "a.txt", (1, 1))
    os.utime(context / "dir/b.txt", (2, 2))
    os.utime(context / "dir", (3, 3))
    (context / "unused.txt").write_text("changed, but no COPY reads it\n")
    again = build(tmp_path, LADDER, {})
    assert {how for _, how in fs_steps(again)} == {"cached"}
    assert digests(again) == digests(first)


# ---------------------------------------------------------------- each input of a key

Variant = tuple[str, dict[str, Any], dict[str, Any]]  # dockerfile, files, build options

RUN_BASE = BASE + "RUN echo first > /first\n"


def _run(tail1: str, tail2: str, **opts: Any) -> tuple[Variant, Variant]:
    """Two builds of RUN_BASE + a tail (`one=`/`two=`: build options of each)."""
    return (RUN_BASE + tail1, {}, opts.get("one", {})), (RUN_BASE + tail2, {}, opts.get("two", {}))


def _copy(
    tail1: str, tail2: str, files1: dict[str, Any], files2: dict[str, Any] | None = None
) -> tuple[Variant, Variant]:
    """Two builds of a scratch image with a first COPY that stays the same, then a tail."""
    base = "FROM scratch\nCOPY keep.txt /keep.txt\n"
    keep = {"keep.txt": "keep\n"}
    one: Variant = (base + tail1, {**keep, **files1}, {})
    two: Variant = (base + tail2, {**keep, **(files2 or files1)}, {})
    return one, two


# (first build, second build, the step that must miss in the second)
INPUTS: dict[str, tuple[tuple[Variant, Variant], str]] = {
    "run command": (_run("RUN echo a > /x\n", "RUN echo b > /x\n"), "RUN echo b > /x"),
    "env value": (
        _run("ENV V=1\nRUN echo $V > /x\n", "ENV V=2\nRUN echo $V > /x\n"),
        "RUN echo $V > /x",
    ),
    "arg value": (
        _run(
            "ARG V=1\nRUN echo $V > /x\n",
            "ARG V=1\nRUN echo $V > /x\n",
            two={"build_args": {"V": "2"}},
        ),
        "RUN echo $V > /x",
    ),
    "user": (
        _run("USER root\nRUN id -u > /tmp/u\n", "USER nobody\nRUN id -u > /tmp/u\n"),
        "RUN id -u > /tmp/u",
    ),
    "workdir": (_run("WORKDIR /a\nRUN pwd > /x\n", "WORKDIR /b\nRUN pwd > /x\n"), "WORKDIR /b"),
    "shell": (
        _run(
            'SHELL ["/bin/sh", "-c"]\nRUN echo $0 > /x\n',
            'SHELL ["/bin/ash", "-c"]\nRUN echo $0 > /x\n',
        ),
        "RUN echo $0 > /x",
    ),
    "network mode": (
        _run("RUN ls /sys/class/net > /x\n", "RUN --network=none ls /sys/class/net > /x\n"),
        "RUN --network=none ls /sys/class/net > /x",
    ),
    "mount option": (
        _run(
            "RUN --mount=type=cache,target=/c,sharing=shared true\n",
            "RUN --mount=type=cache,target=/c,sharing=locked true\n",
        ),
        "RUN --mount=type=cache,target=/c,sharing=locked true",
    ),
    "bind mount content": (
        (
            (RUN_BASE + "RUN --mount=source=m.txt,target=/m cat /m > /x\n", {"m.txt": "1"}, {}),
            (RUN_BASE + "RUN --mount=source=m.txt,target=/m cat /m > /x\n", {"m.txt": "2"}, {}),
        ),
        "RUN --mount=type=bind,source=m.txt,target=/m cat /m > /x",
    ),
    "copy dest": (_copy("COPY f /a\n", "COPY f /b\n", {"f": "f"}), "COPY f /b"),
    "chown": (
        _copy("COPY --chown=1:1 f /f\n", "COPY --chown=2:2 f /f\n", {"f": "f"}),
        "COPY --chown=2:2 f /f",
    ),
    "chmod": (
        _copy("COPY --chmod=644 f /f\n", "COPY --chmod=600 f /f\n", {"f": "f"}),
        "COPY --chmod=600 f /f",
    ),
    "exclude": (
        _copy(
            "COPY --exclude=*.log d /d\n",
            "COPY --exclude=*.tmp d /d\n",
            {"d/x.log": "l", "d/x.tmp": "t"},
        ),
        "COPY d /d",  # (the step's name leaves --exclude out)
    ),
    "link": (_copy("COPY f /f\n", "COPY --link f /f\n", {"f": "f"}), "COPY --link f /f"),
    "source content": (_copy("COPY f /f\n", "COPY f /f\n", {"f": "1"}, {"f": "2"}), "COPY f /f"),
    "source mode": (
        _copy("COPY f /f\n", "COPY f /f\n", {"f": ("f", 0o644)}, {"f": ("f", 0o755)}),
        "COPY f /f",
    ),
}


@pytest.mark.parametrize("what", list(INPUTS))
def test_changing_one_input_misses_from_its_step(tmp_path: Path, what: str) -> None:
    (one, two), missed = INPUTS[what]
    build(tmp_path, one[0], one[1], **one[2])
    second = build(tmp_path, two[0], two[1], **two[2])
    steps = fs_steps(second)
    names = [name for name, _ in steps]
    assert missed in names, steps
    at = names.index(missed)
    assert at > 0
    # Everything before the changed input is a hit; from it on, everything runs.
    assert steps == [(n, "cached") for n in names[:at]] + [(n, "done") for n in names[at:]]
    # And the first variant is still in the cache.
    back = build(tmp_path, one[0], one[1], **one[2])
    assert {how for _, how in fs_steps(back)} == {"cached"}


def test_the_platform_is_in_every_key(tmp_path: Path) -> None:
    need_arm64()  # only COPY: nothing runs an arm64 binary, but the build checks emulation
    dockerfile = "FROM scratch\nCOPY f /f\n"
    build(tmp_path, dockerfile, {"f": "f"}, platforms=[AMD64])
    arm = build(tmp_path, dockerfile, {"f": "f"}, platforms=[ARM64])
    assert fs_steps(arm, ARM64) == [("COPY f /f", "done")]
    again = build(tmp_path, dockerfile, {"f": "f"}, platforms=[ARM64])
    assert fs_steps(again, ARM64) == [("COPY f /f", "cached")]


def test_a_changed_from_stage_misses_only_the_copy_that_reads_it(tmp_path: Path) -> None:
    dockerfile = (
        "FROM scratch AS src\nCOPY f /f\n"
        "FROM scratch\nCOPY g /g\nCOPY --from=src /f /f\nCOPY h /h\n"
    )
    files = {"f": "1", "g": "g", "h": "h"}
    build(tmp_path, dockerfile, files)
    second = build(tmp_path, dockerfile, {**files, "f": "2"})
    assert [(stage, name, how) for stage, name, how in outcomes(second)] == [
        ("src", "COPY f /f", "done"),
        ("stage-1", "COPY g /g", "cached"),
        ("stage-1", "COPY --from=src /f /f", "done"),
        ("stage-1", "COPY h /h", "done"),
    ]
    assert second.layer_file(1, "f") == b"2"


def test_a_rebuilt_base_image_misses_every_step(tmp_path: Path) -> None:
    base = BASE + "RUN echo VERSION > /version\n"
    app = "FROM farm-test/base:1\nRUN cat /version > /seen\nCOPY f /f\n"
    build(tmp_path, base.replace("VERSION", "1"), context_name="base", tags=["farm-test/base:1"])
    first = build(tmp_path, app, {"f": "f"}, context_name="app")
    assert fs_steps(first) == [("RUN cat /version > /seen", "done"), ("COPY f /f", "done")]
    same = build(tmp_path, app, {"f": "f"}, context_name="app")
    assert {how for _, how in fs_steps(same)} == {"cached"}

    build(tmp_path, base.replace("VERSION", "2"), context_name="base", tags=["farm-test/base:1"])
    rebased = build(tmp_path, app, {"f": "f"}, context_name="app")
    assert fs_steps(rebased) == [("RUN cat /version > /seen", "done"), ("COPY f /f", "done")]
    assert (rebased.rootfs(tmp_path / "root") / "seen").read_text() == "2\n"


# ---------------------------------------------------------------- --no-cache-filter

STAGED = BASE.replace("FROM scratch", "FROM scratch AS base") + (
    "RUN echo base > /base\n"
    "FROM base AS compile\nRUN echo compiled > /compiled\n"
    "FROM base\nCOPY --from=compile /compiled /compiled\nRUN echo final > /final\n"
)


def test_no_cache_filter_reruns_only_that_stage(tmp_path: Path) -> None:
    first = build(tmp_path, STAGED)
    again = build(tmp_path, STAGED, no_cache_filter=["Compile"])
    assert [
        (stage, name, how) for stage, name, how in outcomes(again) if filesystem_step(name)
    ] == [
        ("base", "ADD rootfs-amd64.tar /", "cached"),
        ("base", "RUN echo base > /base", "cached"),
        ("compile", "RUN echo compiled > /compiled", "done"),
        ("stage-2", "COPY --from=compile /compiled /compiled", "cached"),
        ("stage-2", "RUN echo final > /final", "cached"),
    ]
    assert digests(again) == digests(first)


# ---------------------------------------------------------------- the records


def test_records_live_in_the_store_and_a_hit_bumps_last_used(tmp_path: Path) -> None:
    first = build(tmp_path, STEPS, {"a.txt": "a\n"})
    found = records(first)
    assert sorted(found) == sorted(name for name, _ in fs_steps(first))
    layers = first.layer_digests()
    for description, data in found.items():
        assert data["created"] == data["last_used"] > 0
        if description == "RUN true":  # it wrote nothing: a record without a layer
            assert data["layer"] is None
        else:
            assert data["layer"]["digest"] in layers
    assert len(layers) == len(found) - 1

    for path in cache_dir(first).glob("*.json"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "created": 1000.0, "last_used": 1000.0}))
    build(tmp_path, STEPS, {"a.txt": "a\n"})
    for data in records(first).values():
        assert data["created"] == 1000.0
        assert data["last_used"] > 1000.0


def test_a_record_whose_blob_is_gone_is_a_miss(tmp_path: Path) -> None:
    first = build(tmp_path, STEPS, {"a.txt": "a\n"})
    gone = records(first)["RUN echo $GREETING > /greeting"]["layer"]["digest"]
    assert first.store.delete_blob(gone)
    again = build(tmp_path, STEPS, {"a.txt": "a\n"})
    assert [(name, how) for name, how in fs_steps(again) if how == "done"] == [
        ("RUN echo $GREETING > /greeting", "done")
    ]
    assert first.store.has_blob(gone)
    assert digests(again) == digests(first)


# ---------------------------------------------------------------- the real CLI


def farm(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "FARM_HOME": str(home)}
    return subprocess.run(
        [FARM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=50
    )


def test_cli_shows_cached_steps_in_plain_and_rawjson_progress(tmp_path: Path, home: Path) -> None:
    from tests.engine.conftest import write_context

    ctx = write_context(tmp_path / "ctx", BASE + "COPY a.txt /\nRUN cat /a.txt\n", {"a.txt": "a"})
    args = ("build", "--platform", AMD64, "-t", "cached:1", ".")
    first = farm(home, *args[:1], "--progress", "plain", *args[1:], cwd=ctx)
    assert first.returncode == 0, first.stderr
    assert "CACHED" not in first.stderr

    plain = farm(home, *args[:1], "--progress", "plain", *args[1:], cwd=ctx)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == first.stdout  # the same digest
    lines = plain.stderr.splitlines()
    for name in ("ADD rootfs-amd64.tar /", "COPY a.txt /", "RUN cat /a.txt"):
        (header,) = [line for line in lines if line.endswith(f"] {name}")]
        number = header.split()[0]
        assert f"{number} CACHED" in lines
        assert not [line for line in lines if line.startswith(f"{number} DONE")]

    raw = farm(home, *args[:1], "--progress", "rawjson", *args[1:], cwd=ctx)
    assert raw.returncode == 0, raw.stderr
    events = []
    for line in raw.stderr.splitlines():
        if line == "naming to cached:1 done":
            continue
        events.append(json.loads(line))  # every other line is one JSON event
    cached = [e["name"] for e in events if e["kind"] == "step.cached"]
    assert cached == ["ADD rootfs-amd64.tar /", "COPY a.txt /", "RUN cat /a.txt"]
    assert {e["kind"] for e in events} == {"step.start", "step.done", "step.cached"}
    assert all(e["platform"] == AMD64 for e in events)
