"""The final image config: the base image's runtime config with the stages' changes."""

from __future__ import annotations

from buildkit.dockerfile.buildplan import ConfigState
from buildkit.dockerfile.durations import parse_go_duration
from buildkit.image import Healthcheck, RuntimeConfig


def runtime_config(base: RuntimeConfig, stage: ConfigState) -> RuntimeConfig:
    """The final image config: the base image's, with the stages' changes.

    The planner tracks Env, User, WorkingDir and Shell from the base image on;
    the rest of the base image's config is merged here. As in Docker, an
    ENTRYPOINT set in the build drops a CMD inherited from the base image.
    """
    cmd = stage.cmd
    if cmd is None and stage.entrypoint is None:
        cmd = base.cmd
    return RuntimeConfig(
        user=stage.user,
        exposed_ports=tuple(sorted({*base.exposed_ports, *stage.exposed_ports})),
        env=tuple(f"{k}={v}" for k, v in stage.env),
        entrypoint=stage.entrypoint if stage.entrypoint is not None else base.entrypoint,
        cmd=cmd,
        volumes=tuple(sorted({*base.volumes, *stage.volumes})),
        working_dir=stage.working_dir,
        labels={**base.labels, **dict(stage.labels)},
        stop_signal=stage.stop_signal or base.stop_signal,
        healthcheck=_healthcheck(stage) or base.healthcheck,
        on_build=stage.on_build,
        shell=stage.shell if stage.shell != ("/bin/sh", "-c") else base.shell,
    )


def _healthcheck(stage: ConfigState) -> Healthcheck | None:
    hc = stage.healthcheck
    if hc is None:
        return None

    def ns(text: str) -> int:
        return parse_go_duration(text) if text else 0

    return Healthcheck(
        test=hc.test,
        interval=ns(hc.interval),
        timeout=ns(hc.timeout),
        start_period=ns(hc.start_period),
        start_interval=ns(hc.start_interval),
        retries=int(hc.retries or 0),
    )
