"""Build checks: one row per rule, with BuildKit's wording."""

from __future__ import annotations

import pytest

from buildkit.dockerfile import parse_dockerfile
from buildkit.dockerfile.checks import parse_check_directive, run_checks
from buildkit.dockerfile.plan import BuildOptions, plan_build
from buildkit.errors import DockerfileError
from buildkit.platforms import parse_platform

AMD64 = parse_platform("linux/amd64")


def check(text: str, **kw: object) -> list[tuple[str, int, str]]:
    options = BuildOptions(target_platforms=(AMD64,), build_platform=AMD64, **kw)  # type: ignore[arg-type]
    return [(w.rule, w.line, w.message) for w in run_checks(parse_dockerfile(text), options)]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "FROM alpine AS Build\n",
            [("StageNameCasing", 1, "Stage name 'Build' should be lowercase")],
        ),
        (
            "FROM alpine as build\n",
            [("FromAsCasing", 1, "'as' and 'FROM' keywords' casing do not match")],
        ),
        (
            "from alpine AS build\n",
            [("FromAsCasing", 1, "'AS' and 'from' keywords' casing do not match")],
        ),
        (
            "FROM alpine AS build\nfrom build as final\n",
            [
                (
                    "ConsistentInstructionCasing",
                    2,
                    "Command 'from' should match the case of the command majority (uppercase)",
                )
            ],
        ),
        (
            "FROM alpine AS scratch\n",
            [
                (
                    "ReservedStageName",
                    1,
                    'Stage name should not use the same name as reserved stage "scratch"',
                )
            ],
        ),
        (
            "FROM alpine\nCMD echo hi\nENTRYPOINT run\n",
            [
                (
                    "JSONArgsRecommended",
                    2,
                    "JSON arguments recommended for CMD to prevent unintended behavior "
                    "related to OS signals",
                ),
                (
                    "JSONArgsRecommended",
                    3,
                    "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior "
                    "related to OS signals",
                ),
            ],
        ),
        # an explicit SHELL means the shell form is deliberate
        ('FROM alpine\nSHELL ["/bin/bash", "-c"]\nCMD echo hi\n', []),
        (
            "FROM alpine\nCOPY $foo .\n",
            [("UndefinedVar", 2, "Usage of undefined variable '$foo'")],
        ),
        ("FROM alpine\nARG foo\nCOPY $foo .\n", []),
        ("FROM alpine\nRUN echo $undefined\n", []),  # the shell expands RUN
        (
            "FROM alpine\nENV PATH=$PAHT:/app/bin\n",
            [("UndefinedVar", 2, "Usage of undefined variable '$PAHT' (did you mean $PATH?)")],
        ),
        (
            "FROM alpine\nMAINTAINER me\n",
            [
                (
                    "MaintainerDeprecated",
                    2,
                    "Maintainer instruction is deprecated in favor of using label",
                )
            ],
        ),
        (
            "FROM alpine\nRUN true\nrun true\nRUN true\n",
            [
                (
                    "ConsistentInstructionCasing",
                    3,
                    "Command 'run' should match the case of the command majority (uppercase)",
                )
            ],
        ),
        (
            "FROM alpine\nENV A 1\nLABEL b c\n",
            [
                (
                    "LegacyKeyValueFormat",
                    2,
                    '"ENV key=value" should be used instead of legacy "ENV key value" format',
                ),
                (
                    "LegacyKeyValueFormat",
                    3,
                    '"LABEL key=value" should be used instead of legacy "LABEL key value" format',
                ),
            ],
        ),
        (
            "FROM node:22${VARIANT}\n",
            [("UndefinedArgInFrom", 1, "FROM argument 'VARIANT' is not declared")],
        ),
        (
            "FROM --platform=${BUILDPLATFROM:-linux/amd64} alpine\n",
            [
                (
                    "UndefinedArgInFrom",
                    1,
                    "FROM argument 'BUILDPLATFROM' is not declared (did you mean BUILDPLATFORM?)",
                )
            ],
        ),
        ('ARG VARIANT="-alpine3.20"\nFROM node:22${VARIANT}\n', []),
        (
            "FROM --platform=$TARGETPLATFORM alpine\n",
            [
                (
                    "RedundantTargetPlatform",
                    1,
                    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as "
                    "this is the default behavior",
                )
            ],
        ),
        (
            "FROM --platform=linux/arm64 alpine AS build\n",
            [
                (
                    "FromPlatformFlagConstDisallowed",
                    1,
                    'FROM --platform flag should not use constant value "linux/arm64"',
                )
            ],
        ),
        ("FROM --platform=linux/arm64 alpine AS build-arm64\n", []),
        ("FROM --platform=$BUILDPLATFORM alpine\n", []),
        (
            "ARG TAG\nFROM busybox:${TAG}\n",
            [
                (
                    "InvalidDefaultArgInFrom",
                    2,
                    "Default value for ARG busybox:${TAG} results in empty or invalid base "
                    "image name",
                )
            ],
        ),
        (
            "FROM alpine\nWORKDIR app\nWORKDIR sub\n",
            [
                (
                    "WorkdirRelativePath",
                    2,
                    'Relative workdir "app" can have unexpected results if the base image changes',
                )
            ],
        ),
        (
            'FROM alpine\nCMD ["a"]\nCMD ["b"]\n',
            [
                (
                    "MultipleInstructionsDisallowed",
                    2,
                    "Multiple CMD instructions should not be used in the same stage because "
                    "only the last one will be used",
                )
            ],
        ),
        (
            "FROM alpine\nARG API_KEY\nENV DB_PASSWORD=x\nENV PUBLIC_KEY=y GITHUB_TOKEN_FILE=z\n",
            [
                (
                    "SecretsUsedInArgOrEnv",
                    2,
                    'Do not use ARG or ENV instructions for sensitive data (ARG "API_KEY")',
                ),
                (
                    "SecretsUsedInArgOrEnv",
                    3,
                    'Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")',
                ),
            ],
        ),
    ],
)
def test_rule(text: str, want: list[tuple[str, int, str]]) -> None:
    assert check(text, build_args={"TAG": "1.36"}) == want


def test_dynamic_rules_only_for_needed_stages() -> None:
    text = 'FROM alpine AS unused\nCMD echo hi\nFROM alpine\nCMD ["x"]\n'
    assert check(text) == []


@pytest.mark.parametrize(
    ("directive", "skip", "skip_all", "error"),
    [
        ("skip=A,B", {"A", "B"}, False, False),
        ("skip = A , B ;error=true", {"A", "B"}, False, True),
        ("error=1", set(), False, True),
        ("skip=all", set(), True, False),
    ],
)
def test_directive(directive: str, skip: set[str], skip_all: bool, error: bool) -> None:
    config = parse_check_directive(parse_dockerfile(f"# check={directive}\nFROM alpine\n"))
    assert (set(config.skip), config.skip_all, config.error) == (skip, skip_all, error)


@pytest.mark.parametrize("directive", ["nonsense", "error=maybe", "color=red"])
def test_bad_directive(directive: str) -> None:
    df = parse_dockerfile(f"# check={directive}\nFROM alpine\n")
    with pytest.raises(DockerfileError, match="failed to parse check options"):
        plan_build(df, BuildOptions())


def test_skip_all_and_error() -> None:
    text = "FROM alpine as Build\nCMD x\n"
    assert check("# check=skip=all\n" + text) == []
    with pytest.raises(DockerfileError) as info:
        plan_build(parse_dockerfile("# check=error=true\n" + text), BuildOptions())
    message = str(info.value)
    assert (
        "lint violation found for rules: FromAsCasing, JSONArgsRecommended, StageNameCasing"
        in message
    )
    assert "StageNameCasing: Stage name 'Build' should be lowercase (line 2)" in message
    # skipped rules do not fail the build
    plan_build(parse_dockerfile("# check=error=true;skip=all\n" + text), BuildOptions())


def test_warnings_are_deduplicated_across_platforms() -> None:
    options = BuildOptions(
        target_platforms=(AMD64, parse_platform("linux/arm64")), build_platform=AMD64
    )
    warnings = run_checks(parse_dockerfile("FROM alpine\nCMD x\n"), options)
    assert [w.rule for w in warnings] == ["JSONArgsRecommended"]
    assert warnings[0].url == "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
