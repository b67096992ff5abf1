"""The frontend's third step: typed instructions → one build plan per platform.

    plans = plan_build(parse_dockerfile(text, "Dockerfile"), BuildOptions(
        target_platforms=(parse_platform("linux/amd64"), parse_platform("linux/arm64")),
        build_platform=host_platform(),
        target="",                      # the last stage
        build_args={"VERSION": "1.2"},
    ))
    print(describe(plans))

Each plan holds only the stages its target needs (FROM <stage>, COPY --from,
RUN --mount from=), in dependency order, with their parallel levels, and the
steps with their words expanded as BuildKit expands them for that platform.
The rules live beside this module: `args.py` (ARG scoping), `stages.py` (the
stage graph), `steps.py` (expansion and image config), `checks.py` (lint).
"""

from __future__ import annotations

from buildkit.dockerfile import checks
from buildkit.dockerfile.buildplan import (
    ArgInfo,
    Base,
    BuildOptions,
    BuildPlan,
    BuildPlans,
    CheckWarning,
    ConfigState,
    Dependency,
    ImageConfig,
    ImageResolver,
    MountUse,
    StagePlan,
    Step,
    StepState,
)
from buildkit.dockerfile.describe import describe
from buildkit.dockerfile.instructions import Dockerfile
from buildkit.dockerfile.planner import plan_platform, unused_build_args

__all__ = [
    "ArgInfo",
    "Base",
    "BuildOptions",
    "BuildPlan",
    "BuildPlans",
    "CheckWarning",
    "ConfigState",
    "Dependency",
    "ImageConfig",
    "ImageResolver",
    "MountUse",
    "StagePlan",
    "Step",
    "StepState",
    "describe",
    "plan_build",
]


def plan_build(dockerfile: Dockerfile, options: BuildOptions) -> BuildPlans:
    """Plan every target platform; raise DockerfileError on what BuildKit rejects.

    Build check warnings are in `.checks` (and fail the build under
    `# check=error=true`); build args nothing declares are in
    `.unused_build_args`.
    """
    checks.parse_check_directive(dockerfile)  # a bad directive fails first
    results = [plan_platform(dockerfile, options, p) for p in options.platforms]
    findings = [f for r in results for f in r.findings]
    warnings = checks.select(dockerfile, options, findings)
    checks.enforce(dockerfile, warnings)
    declared = set().union(*(r.declared_args for r in results))
    return BuildPlans(
        path=dockerfile.path,
        plans=tuple(r.plan for r in results),
        checks=tuple(warnings),
        unused_build_args=unused_build_args(options, declared),
    )
