"""The data behind `--call targets` and `--call outline`, as BuildKit's
subrequests return it; the CLI formats it.

A description is BuildKit's doc comment: on a comment line directly above the
FROM (or ARG), the text after the stage (or arg) name:

    # build compiles the binary        ← description of stage "build"
    FROM golang:1.22 AS build
"""

from __future__ import annotations

from dataclasses import dataclass

from buildkit.dockerfile.buildplan import ArgInfo, BuildOptions, MountUse
from buildkit.dockerfile.instructions import Dockerfile
from buildkit.dockerfile.planner import doc_comment, plan_platform


@dataclass(frozen=True)
class Target:
    name: str  # as written after AS; "" for an unnamed stage
    index: int
    line: int
    description: str
    default: bool  # the last stage, built when no --target is given
    base: str  # the FROM word as written
    platform: str  # the --platform flag as written, "" when absent


@dataclass(frozen=True)
class Outline:
    target: str  # the target stage's name ("" when unnamed)
    args: tuple[ArgInfo, ...]
    secrets: tuple[MountUse, ...]
    ssh: tuple[MountUse, ...]


def list_targets(dockerfile: Dockerfile) -> list[Target]:
    last = len(dockerfile.stages) - 1
    return [
        Target(
            name=st.from_.name,
            index=st.index,
            line=st.from_.line,
            description=doc_comment(st.from_.comment, st.from_.name),
            default=st.index == last,
            base=st.from_.image,
            platform=st.from_.platform,
        )
        for st in dockerfile.stages
    ]


def outline(dockerfile: Dockerfile, options: BuildOptions) -> Outline:
    """The build args, secrets and ssh ids the target uses (first platform)."""
    plan = plan_platform(dockerfile, options, options.platforms[0]).plan
    return Outline(
        target=plan.target_stage.name,
        args=plan.args,
        secrets=plan.secrets,
        ssh=plan.ssh,
    )
