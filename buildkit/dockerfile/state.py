"""The mutable state while walking one stage, as BuildKit's dispatchState
holds it: environment, ARGs in scope, workdir, user, shell and the image
config so far. Frozen snapshots of it go into the plan."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from buildkit.dockerfile.buildplan import (
    DEFAULT_PATH,
    DEFAULT_SHELL,
    ConfigState,
    Healthcheck,
    ImageConfig,
    StepState,
)
from buildkit.platforms import Platform


@dataclass
class StageState:
    """The mutable state while walking one stage (BuildKit's dispatchState)."""

    environ: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)  # ARG names in scope
    workdir: str = ""
    workdir_set: bool = False
    user: str = ""
    shell: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, None] = field(default_factory=dict)
    volumes: dict[str, None] = field(default_factory=dict)
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    healthcheck: Healthcheck | None = None
    stop_signal: str = ""
    on_build: list[str] = field(default_factory=list)
    author: str = ""
    used: dict[str, int] = field(default_factory=dict)  # CMD/ENTRYPOINT/HEALTHCHECK → line

    @classmethod
    def from_image(cls, config: ImageConfig | None, platform: Platform) -> StageState:
        st = cls()
        config = config or ImageConfig()
        for entry in config.env:
            key, _, value = entry.partition("=")
            st.env[key] = value
        if "PATH" not in st.env and platform.os != "windows":
            st.env["PATH"] = DEFAULT_PATH
        st.environ = dict(st.env)
        st.workdir = config.working_dir
        st.user = config.user
        st.shell = config.shell
        return st

    def inherit(self) -> StageState:
        """A stage built FROM this one: everything but ONBUILD triggers and the
        once-per-stage trackers carries over (ARGs included, as in BuildKit)."""
        return replace(
            self,
            environ=dict(self.environ),
            env=dict(self.env),
            args=dict(self.args),
            declared=set(self.declared),
            labels=dict(self.labels),
            ports=dict(self.ports),
            volumes=dict(self.volumes),
            on_build=[],
            used={},
        )

    def snapshot(self) -> StepState:
        return StepState(
            env=tuple(self.env.items()),
            args=tuple(self.args.items()),
            environ=tuple(self.environ.items()),
            workdir=self.workdir or "/",
            user=self.user,
            shell=self.shell or DEFAULT_SHELL,
        )

    def config(self) -> ConfigState:
        return ConfigState(
            env=tuple(self.env.items()),
            user=self.user,
            working_dir=self.workdir,
            shell=self.shell,
            labels=tuple(self.labels.items()),
            exposed_ports=tuple(self.ports),
            volumes=tuple(self.volumes),
            cmd=self.cmd,
            entrypoint=self.entrypoint,
            healthcheck=self.healthcheck,
            stop_signal=self.stop_signal,
            on_build=tuple(self.on_build),
            author=self.author,
        )
