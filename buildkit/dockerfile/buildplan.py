"""The data of a build plan: what `plan_build` returns, frozen and plain.

One `BuildPlan` per target platform; in it the stages the target needs, in
dependency order, each with its base, its platform, its parallel level and its
steps. A step is an instruction with its words expanded for this stage, plus
the state it runs in (environment, ARGs in scope, workdir, user, shell).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from buildkit.dockerfile.instructions import Instruction
from buildkit.platforms import Platform

_AMD64 = Platform("linux", "amd64")
DEFAULT_SHELL: tuple[str, ...] = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ImageConfig:
    """What the planner needs from a base image's config."""

    env: tuple[str, ...] = ()  # "KEY=value" entries, as in the image config
    working_dir: str = ""
    user: str = ""
    shell: tuple[str, ...] = ()
    on_build: tuple[str, ...] = ()  # ONBUILD triggers, "RUN echo hi"
    digest: str = ""  # the manifest digest the reference resolved to, "" if unknown


ImageResolver = Callable[[str, Platform], "ImageConfig | None"]


def _frozen_mapping(data: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True)
class BuildOptions:
    """What the planner is asked: platforms, target stage, build args.

    `target_platforms` empty means "the build platform". `target` "" is the
    last stage. `resolve_image(ref, platform)` gives a base image's config, or
    None while unknown: the image is then planned as a pull with an empty env.
    """

    target_platforms: tuple[Platform, ...] = ()
    build_platform: Platform = _AMD64
    target: str = ""
    build_args: Mapping[str, str] = field(default_factory=_frozen_mapping)
    resolve_image: ImageResolver | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "build_args", _frozen_mapping(self.build_args))
        object.__setattr__(self, "target_platforms", tuple(self.target_platforms))

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return self.target_platforms or (self.build_platform,)


@dataclass(frozen=True)
class Base:
    """What a stage starts from: nothing, another stage, or an image to pull."""

    kind: Literal["scratch", "stage", "image"]
    stage: int = -1  # for kind "stage"
    ref: str = ""  # for kind "image": normalised, `docker.io/library/alpine:latest`
    digest: str = ""  # for kind "image", when the resolver knew it

    def __str__(self) -> str:
        if self.kind == "stage":
            return f"stage {self.stage}"
        if self.kind == "image":
            return f"image {self.ref}" + (f"@{self.digest}" if self.digest else "")
        return "scratch"


@dataclass(frozen=True)
class Dependency:
    """Something a stage needs before it can run: a stage, or an image to pull."""

    kind: Literal["stage", "image"]
    line: int  # the instruction that needs it
    via: str  # "FROM", "COPY --from", "RUN --mount", "ONBUILD COPY --from", ...
    stage: int = -1
    ref: str = ""
    platform: Platform | None = None  # for images: the platform to pull


@dataclass(frozen=True)
class StepState:
    """The state a step runs in, before the step's own effect.

    env:     the config environment so far (base image env, PATH, ENV).
    args:    the ARG values in scope (declared in this stage or its base stage).
    environ: what a RUN step sees and what words expand with: env and args
             merged, the later declaration winning, as BuildKit does.
    """

    env: Pairs
    args: Pairs
    environ: Pairs
    workdir: str
    user: str
    shell: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    instruction: Instruction  # words expanded for this stage
    state: StepState
    onbuild: bool = False  # a trigger inherited from the base (image or stage)

    @property
    def line(self) -> int:
        return self.instruction.line

    @property
    def keyword(self) -> str:
        return self.instruction.keyword


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    interval: str = ""
    timeout: str = ""
    start_period: str = ""
    start_interval: str = ""
    retries: str = ""


@dataclass(frozen=True)
class ConfigState:
    """The image config a stage ends with (what the engine writes for the target)."""

    env: Pairs = ()
    user: str = ""
    working_dir: str = ""
    shell: tuple[str, ...] = ()
    labels: Pairs = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    healthcheck: Healthcheck | None = None
    stop_signal: str = ""
    on_build: tuple[str, ...] = ()
    author: str = ""  # MAINTAINER sets the image's author field


@dataclass(frozen=True)
class StagePlan:
    index: int
    name: str  # lower-cased AS name, "" when unnamed
    line: int  # the FROM line
    platform: Platform
    base: Base
    dependencies: tuple[Dependency, ...]
    level: int
    steps: tuple[Step, ...]
    config: ConfigState

    @property
    def display_name(self) -> str:
        return self.name or f"stage-{self.index}"

    @property
    def stage_dependencies(self) -> tuple[int, ...]:
        return tuple(sorted({d.stage for d in self.dependencies if d.kind == "stage"}))

    @property
    def image_dependencies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.ref for d in self.dependencies if d.kind == "image"))


@dataclass(frozen=True)
class ArgInfo:
    """A build arg the plan uses, as `--call outline` lists it."""

    name: str
    value: str | None  # after --build-arg and expansion; None when declared without one
    default: str | None  # as written
    description: str
    line: int


@dataclass(frozen=True)
class MountUse:
    """A secret or ssh id a RUN mount asks for."""

    id: str
    required: bool
    line: int


@dataclass(frozen=True)
class BuildPlan:
    platform: Platform
    target: int  # index of the target stage
    stages: tuple[StagePlan, ...]
    levels: tuple[tuple[int, ...], ...]  # stage indices per parallel level
    args: tuple[ArgInfo, ...] = ()
    secrets: tuple[MountUse, ...] = ()
    ssh: tuple[MountUse, ...] = ()

    def stage(self, index: int) -> StagePlan:
        for st in self.stages:
            if st.index == index:
                return st
        raise KeyError(index)

    @property
    def target_stage(self) -> StagePlan:
        return self.stage(self.target)

    @property
    def pulls(self) -> tuple[tuple[str, Platform], ...]:
        """Every image to pull, with its platform, without repeats."""
        seen: dict[tuple[str, Platform], None] = {}
        for st in self.stages:
            if st.base.kind == "image":
                seen.setdefault((st.base.ref, st.platform), None)
            for dep in st.dependencies:
                if dep.kind == "image" and dep.platform is not None:
                    seen.setdefault((dep.ref, dep.platform), None)
        return tuple(seen)


@dataclass(frozen=True)
class CheckWarning:
    """One build check (lint) finding, worded as BuildKit words it."""

    rule: str
    line: int
    message: str
    url: str = ""

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.rule}: {self.message}{where}"


@dataclass(frozen=True)
class BuildPlans:
    path: str
    plans: tuple[BuildPlan, ...]
    checks: tuple[CheckWarning, ...] = ()
    unused_build_args: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[BuildPlan]:
        return iter(self.plans)

    def __len__(self) -> int:
        return len(self.plans)

    def for_platform(self, platform: Platform) -> BuildPlan:
        for plan in self.plans:
            if plan.platform == platform:
                return plan
        raise KeyError(str(platform))

    @property
    def messages(self) -> tuple[str, ...]:
        """Warnings to show the user, BuildKit's wording."""
        out = [str(w) for w in self.checks]
        if self.unused_build_args:
            names = " ".join(self.unused_build_args)
            out.append(f"[Warning] One or more build-args [{names}] were not consumed")
        return tuple(out)
