"""--cache-to / --cache-from type=local: a second machine (FARM_HOME) reuses the first's steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildkit.cache.local import parse_cache_option
from buildkit.events import Recorder
from tests.engine.conftest import settings_for, write_context
from workers.embedded import LocalBuild, run_build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(90)]

DOCKERFILE = """\
FROM scratch AS base
ADD rootfs-amd64.tar /
RUN echo one > /one

FROM base AS tool
RUN echo tool > /tool && echo scratch > /scratch

FROM base
COPY --from=tool /tool /tool
COPY app.txt /app.txt
RUN cat /app.txt > /copy
"""


def _build(home: Path, ctx: Path, **options) -> tuple[Recorder, str]:
    recorder = Recorder()
    local = run_build(
        LocalBuild(context=str(ctx), **options), settings_for(home), recorder, warn=lambda t: None
    )
    return recorder, local.result.descriptor.digest


def _ran(recorder: Recorder) -> list[str]:
    return [
        e.name for e in recorder.of_kind("step.done") if e.name.startswith(("RUN", "COPY", "ADD"))
    ]


# min exports only the steps whose layers are in the result: the tool stage's
# RUN runs again on the second machine (its COPY --from is still a hit).
@pytest.mark.parametrize(
    ("mode", "expect_ran"),
    [("max", []), ("min", ["RUN echo tool > /tool && echo scratch > /scratch"])],
)
def test_second_home_reuses_exported_cache(
    tmp_path: Path, mode: str, expect_ran: list[str]
) -> None:
    ctx = write_context(tmp_path / "ctx", DOCKERFILE, {"app.txt": "hello\n"})
    cache = tmp_path / "cache"
    first, digest1 = _build(
        tmp_path / "h1", ctx, cache_to=(parse_cache_option(f"type=local,dest={cache},mode={mode}"),)
    )
    assert len(_ran(first)) == 6
    second, digest2 = _build(
        tmp_path / "h2", ctx, cache_from=(parse_cache_option(f"type=local,src={cache}"),)
    )
    assert _ran(second) == expect_ran
    assert len(second.of_kind("step.cached")) == 6 - len(expect_ran)
    assert digest1 == digest2


def test_missing_cache_dir_is_a_warning_not_an_error(tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", DOCKERFILE, {"app.txt": "x\n"})
    warnings: list[str] = []
    run_build(
        LocalBuild(
            context=str(ctx),
            cache_from=(parse_cache_option(f"type=local,src={tmp_path / 'none'}"),),
        ),
        settings_for(tmp_path / "h"),
        Recorder(),
        warn=warnings.append,
    )
    assert any("no cache there yet" in w for w in warnings)
