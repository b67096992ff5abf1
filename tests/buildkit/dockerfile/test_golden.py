"""Golden tests: testdata/<case>/{Dockerfile, options.json, expected.txt |
expected-error.txt}, through the real parser and the planner.

options.json: platforms, build_platform, target, build_args, and optionally
images: {normalised reference: {env, working_dir, user, shell, on_build,
digest}} answered by the image resolver.

expected.txt is `describe(plans)`, written by hand from BuildKit's documented
behaviour. expected-error.txt holds `line: N` (optional) and substrings the
DockerfileError's message must contain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildkit.dockerfile.plan import BuildOptions, ImageConfig, describe, plan_build
from buildkit.errors import DockerfileError
from buildkit.platforms import Platform, parse_platform

parse_dockerfile = pytest.importorskip("buildkit.dockerfile").__dict__.get("parse_dockerfile")

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "Dockerfile").exists())


def load_options(case: Path) -> BuildOptions:
    raw = json.loads((case / "options.json").read_text())
    build = parse_platform(raw.get("build_platform", "linux/amd64"))
    images = {
        ref: ImageConfig(
            env=tuple(cfg.get("env", ())),
            working_dir=cfg.get("working_dir", ""),
            user=cfg.get("user", ""),
            shell=tuple(cfg.get("shell", ())),
            on_build=tuple(cfg.get("on_build", ())),
            digest=cfg.get("digest", ""),
        )
        for ref, cfg in raw.get("images", {}).items()
    }

    def resolve(ref: str, platform: Platform) -> ImageConfig | None:
        return images.get(ref)

    return BuildOptions(
        target_platforms=tuple(parse_platform(p) for p in raw.get("platforms", ())),
        build_platform=build,
        target=raw.get("target", ""),
        build_args=raw.get("build_args", {}),
        resolve_image=resolve,
    )


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    if parse_dockerfile is None:
        pytest.skip("parse_dockerfile has not landed yet")
    case = TESTDATA / name
    options = load_options(case)
    text = (case / "Dockerfile").read_text()
    error_file = case / "expected-error.txt"
    if error_file.exists():
        want_line = None
        substrings = []
        for line in error_file.read_text().splitlines():
            if line.startswith("line: "):
                want_line = int(line.removeprefix("line: "))
            elif line.strip():
                substrings.append(line.strip())
        with pytest.raises(DockerfileError) as info:
            plan_build(parse_dockerfile(text, "Dockerfile"), options)
        message = str(info.value)
        for sub in substrings:
            assert sub in message
        if want_line is not None:
            assert info.value.line == want_line, message
        assert info.value.path == "Dockerfile"
        return
    plans = plan_build(parse_dockerfile(text, "Dockerfile"), options)
    assert describe(plans) == (case / "expected.txt").read_text()
