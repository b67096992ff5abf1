"""A build that cannot publish its result moves no tag.

Every destination (--output oci/local, --cache-to, --cache-from, --metadata-file)
is checked before any step runs; outputs are written in the order files and
cache, pushes, tags: a failure while writing one leaves every tag where it
was, and the CLI reports it as one line naming the option, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from buildkit.cache.local import parse_cache_option
from buildkit.errors import UserError
from buildkit.events import Event, Recorder
from buildkit.images import split_tag
from buildkit.platforms import parse_platforms
from buildkit.store.filesystem import FilesystemStore
from tests.engine.conftest import AMD64, BASE, settings_for, write_context
from workers.embedded import LocalBuild, OutputError, parse_output, run_build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

FARM = str(Path(sys.executable).with_name("farm"))
DOCKERFILE = BASE + "ARG V=1\nRUN echo $V > /v\n"


class Sabotage(Recorder):
    """Records events, and calls `act` once, when the first step starts: a
    destination that was fine when checked goes bad during the build."""

    def __init__(self, act: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.act: Callable[[], None] | None = act

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if event.kind == "step.start" and self.act is not None:
            act, self.act = self.act, None
            act()


def run(
    context: Path,
    home: Path,
    *,
    v: str = "1",
    outputs: tuple[str, ...] = (),
    cache_to: tuple[str, ...] = (),
    cache_from: tuple[str, ...] = (),
    emit: Recorder | None = None,
) -> str:
    request = LocalBuild(
        context=str(context),
        platforms=parse_platforms([AMD64]),
        build_args={"V": v},
        tags=("app:1",),
        outputs=tuple(parse_output(o) for o in outputs),
        cwd=context,
        cache_to=tuple(parse_cache_option(c, flag="--cache-to") for c in cache_to),
        cache_from=tuple(parse_cache_option(c, flag="--cache-from") for c in cache_from),
    )
    local = run_build(request, settings_for(home), emit or Recorder(), warn=lambda _: None)
    return str(local.result.descriptor.digest)


def tagged(home: Path) -> str:
    repo, tag = split_tag("app:1")
    return str(FilesystemStore(home / "registry").resolve(repo, tag).digest)


@pytest.fixture
def first(tmp_path: Path, home: Path) -> tuple[Path, str]:
    """A context built once as app:1; (context, the digest app:1 names)."""
    context = write_context(tmp_path / "context", DOCKERFILE)
    digest = run(context, home)
    assert tagged(home) == digest
    return context, digest


# ------------------------------------------------ checked before any step runs


def bad_destinations(tmp_path: Path) -> dict[str, tuple[dict[str, tuple[str, ...]], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    return {
        "oci-missing-parent": (
            {"outputs": ("type=image", f"type=oci,dest={tmp_path}/nonexistent/x.tar")},
            "--output type=oci",
        ),
        "oci-is-a-directory": (
            {"outputs": ("type=image", f"type=oci,dest={a_dir}")},
            "--output type=oci",
        ),
        "local-is-a-file": (
            {"outputs": ("type=image", f"type=local,dest={a_file}")},
            "--output type=local",
        ),
        "local-under-a-file": (
            {"outputs": ("type=image", f"type=local,dest={a_file}/sub")},
            "--output type=local",
        ),
        "cache-to-is-a-file": (
            {"cache_to": (f"type=local,dest={a_file}",)},
            "--cache-to type=local",
        ),
        "cache-from-is-a-file": (
            {"cache_from": (f"type=local,src={a_file}",)},
            "--cache-from type=local",
        ),
    }


CASES = (
    "oci-missing-parent",
    "oci-is-a-directory",
    "local-is-a-file",
    "local-under-a-file",
    "cache-to-is-a-file",
    "cache-from-is-a-file",
)


@pytest.mark.parametrize("case", CASES)
def test_a_bad_destination_fails_before_any_step(
    tmp_path: Path, home: Path, first: tuple[Path, str], case: str
) -> None:
    context, digest = first
    options, option = bad_destinations(tmp_path)[case]
    events = Recorder()
    with pytest.raises(OutputError) as info:
        run(context, home, v="2", emit=events, **options)  # type: ignore[arg-type]
    assert str(info.value).startswith(option)
    assert events.of_kind("step.start") == []
    assert tagged(home) == digest


def test_a_missing_cache_from_directory_is_only_a_warning(
    tmp_path: Path, home: Path, first: tuple[Path, str]
) -> None:
    context, _ = first
    digest = run(context, home, v="2", cache_from=(f"type=local,src={tmp_path}/none",))
    assert tagged(home) == digest


def test_fresh_destinations_pass_the_check(
    tmp_path: Path, home: Path, first: tuple[Path, str]
) -> None:
    context, _ = first
    digest = run(
        context,
        home,
        v="2",
        outputs=(
            "type=image",
            f"type=oci,dest={tmp_path}/x.tar",
            f"type=local,dest={tmp_path}/a/b",
        ),
        cache_to=(f"type=local,dest={tmp_path}/cache",),
    )
    assert tagged(home) == digest
    assert (tmp_path / "x.tar").is_file()
    assert (tmp_path / "a" / "b" / "v").read_text() == "2\n"
    assert (tmp_path / "cache" / "index.json").is_file()


# ------------------------------------------------ failing while writing


def test_a_failed_oci_output_moves_no_tag(
    tmp_path: Path, home: Path, first: tuple[Path, str]
) -> None:
    context, digest = first
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputError, match=r"^--output type=oci,dest=.*out/x\.tar: ") as info:
        run(
            context, home, v="2",
            outputs=("type=image", f"type=oci,dest={out}/x.tar"),
            emit=Sabotage(lambda: shutil.rmtree(out)),
        )  # fmt: skip
    assert isinstance(info.value, UserError)
    assert tagged(home) == digest


def test_a_failed_local_output_moves_no_tag(
    tmp_path: Path, home: Path, first: tuple[Path, str]
) -> None:
    context, digest = first
    dest = tmp_path / "rootfs"
    with pytest.raises(OutputError, match=r"^--output type=local,dest=.*rootfs: "):
        run(
            context, home, v="2",
            outputs=(f"type=local,dest={dest}", "type=image"),
            emit=Sabotage(lambda: dest.write_text("now a file\n")),
        )  # fmt: skip
    assert tagged(home) == digest


def test_a_failed_cache_export_moves_no_tag(
    tmp_path: Path, home: Path, first: tuple[Path, str]
) -> None:
    context, digest = first
    dest = tmp_path / "cache"
    with pytest.raises(UserError, match=r"--cache-to.*cache"):
        run(
            context, home, v="2",
            cache_to=(f"type=local,dest={dest}",),
            emit=Sabotage(lambda: dest.write_text("now a file\n")),
        )  # fmt: skip
    assert tagged(home) == digest


def test_an_ignored_cache_export_failure_still_tags(
    tmp_path: Path, home: Path, first: tuple[Path, str]
) -> None:
    context, _ = first
    dest = tmp_path / "cache"
    digest = run(
        context, home, v="2",
        cache_to=(f"type=local,dest={dest},ignore-error=true",),
        emit=Sabotage(lambda: dest.write_text("now a file\n")),
    )  # fmt: skip
    assert tagged(home) == digest


# ------------------------------------------------ the CLI


def farm(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "FARM_HOME": str(home)}  # fmt: skip
    return subprocess.run(
        [FARM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=100
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("-o", "type=image", "-o", "type=oci,dest=/nonexistent/x.tar"), "--output type=oci"),
        (("-o", "type=image", "-o", "type=local,dest=Dockerfile"), "--output type=local"),
        (("--cache-to", "type=local,dest=Dockerfile"), "--cache-to type=local"),
        (("--metadata-file", "/nonexistent/meta.json"), "--metadata-file"),
    ],
)
def test_the_cli_reports_a_bad_destination_in_one_line(
    tmp_path: Path, home: Path, args: tuple[str, ...], option: str
) -> None:
    context = write_context(tmp_path / "context", DOCKERFILE)
    built = farm(home, "build", "--progress", "plain", "-t", "app:1", ".", cwd=context)
    assert built.returncode == 0, built.stderr
    before = farm(home, "images", cwd=context)
    res = farm(home, "build", "--progress", "plain", "--build-arg", "V=2", "-t", "app:1",
               *args, ".", cwd=context)  # fmt: skip
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert f"ERROR: {option}" in res.stderr
    assert "RUN echo" not in res.stderr  # no step ran
    assert farm(home, "images", cwd=context).stdout == before.stdout
