"""The build engine's front door: build plans in, OCI images in the store out.

    plans = plan_build(dockerfile, options_with(builder.resolver()))
    result = builder.build(plans, context)
    result.descriptor   # the index (several platforms) or the one manifest

Per platform, the stages the target needs run in dependency order; each step
goes to the Executor. The result's blobs (layers, configs, manifests, index)
are in the store; nothing is tagged here — `tag_image` does that last.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from buildkit import binfmt
from buildkit.context import BuildContext
from buildkit.dockerfile.buildplan import (
    BuildPlan,
    BuildPlans,
    ConfigState,
    ImageResolver,
    StagePlan,
    Step,
)
from buildkit.dockerfile.buildplan import (
    ImageConfig as PlannerImageConfig,
)
from buildkit.dockerfile.describe import summarize
from buildkit.dockerfile.durations import parse_go_duration
from buildkit.dockerfile.instructions import Add, Copy, Run
from buildkit.errors import ManifestUnknown, ReferenceFormatError
from buildkit.events import Emit, Event, discard
from buildkit.executor import EngineConfig, Executor, ImageState, LayerRef, StepContext
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Healthcheck,
    ImageConfig,
    Index,
    Manifest,
    RuntimeConfig,
)
from buildkit.images import load_image, local_repository, write_json_blob
from buildkit.overlay import merged
from buildkit.platforms import Platform
from buildkit.reference import parse_reference
from buildkit.sandbox import NamespaceSandbox, Sandbox
from buildkit.store.base import Store


@dataclass(frozen=True)
class PlatformResult:
    platform: Platform
    manifest: Descriptor  # carries its platform, as an index entry does
    config: ImageConfig
    state: ImageState


@dataclass(frozen=True)
class BuildResult:
    platforms: tuple[PlatformResult, ...]
    index: Descriptor | None  # None for a one-platform build

    @property
    def descriptor(self) -> Descriptor:
        return self.index or self.platforms[0].manifest

    @property
    def children(self) -> tuple[Descriptor, ...]:
        return tuple(p.manifest for p in self.platforms)


class Builder:
    def __init__(
        self,
        store: Store,
        config: EngineConfig,
        *,
        sandbox: Sandbox | None = None,
        emit: Emit = discard,
        emulation: binfmt.Status | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.emit = emit
        self.emulation = emulation
        self.executor = Executor(
            store, sandbox or NamespaceSandbox(scratch_root=config.home / "sandbox"), config
        )

    # ------------------------------------------------------------ planning support

    def resolver(self) -> ImageResolver:
        """What the planner asks about base images: their config, from the store."""

        def resolve(ref: str, platform: Platform) -> PlannerImageConfig | None:
            try:
                image = self._load(ref, platform)
            except (ManifestUnknown, ReferenceFormatError):
                return None
            rc = image.config.config
            return PlannerImageConfig(
                env=rc.env,
                working_dir=rc.working_dir,
                user=rc.user,
                shell=rc.shell,
                on_build=rc.on_build,
                digest=image.manifest_descriptor.digest,
            )

        return resolve

    def _load(self, ref: str, platform: Platform):  # type: ignore[no-untyped-def]
        parsed = parse_reference(ref)
        repo = local_repository(parsed)
        return load_image(self.store, repo, parsed.digest or parsed.tag or "latest", platform)

    # ------------------------------------------------------------ building

    def build(self, plans: BuildPlans, context: BuildContext) -> BuildResult:
        status = self.emulation or binfmt.status()
        needed = tuple(dict.fromkeys(st.platform for plan in plans for st in plan.stages))
        binfmt.require(needed, status)  # before any step runs
        # Scratch directories of builds killed on this FARM_HOME (SIGKILL) go now.
        self.executor.snapshots.collect_stale()
        with self._context_files(context) as context_root:
            results = tuple(
                self._build_platform(plan, plans.path, context_root, status) for plan in plans
            )
        index = None
        if len(results) > 1:
            doc = Index(manifests=tuple(r.manifest for r in results))
            index = write_json_blob(self.store, doc, OCI_INDEX)
        return BuildResult(results, index)

    def _build_platform(
        self, plan: BuildPlan, path: str, context_root: Path, status: binfmt.Status
    ) -> PlatformResult:
        states: dict[int, ImageState] = {}
        for stage in plan.stages:
            states[stage.index] = self._build_stage(stage, plan, states, path, context_root, status)
        target = plan.target_stage
        final = states[target.index]
        image = ImageConfig(
            architecture=plan.platform.architecture,
            os=plan.platform.os,
            variant=plan.platform.variant,
            created=self.config.created,
            author=target.config.author,
            config=runtime_config(final.base_config, target.config),
            diff_ids=tuple(layer.diff_id for layer in final.layers),
            history=final.history,
        )
        config_desc = write_json_blob(self.store, image, OCI_CONFIG)
        manifest = Manifest(
            config=Descriptor(OCI_CONFIG, config_desc.digest, config_desc.size),
            layers=tuple(Descriptor(lr.media_type, lr.digest, lr.size) for lr in final.layers),
        )
        desc = write_json_blob(self.store, manifest, OCI_MANIFEST)
        desc = Descriptor(OCI_MANIFEST, desc.digest, desc.size, platform=plan.platform)
        return PlatformResult(plan.platform, desc, image, final)

    def _build_stage(
        self,
        stage: StagePlan,
        plan: BuildPlan,
        states: dict[int, ImageState],
        path: str,
        context_root: Path,
        status: binfmt.Status,
    ) -> ImageState:
        if stage.base.kind == "scratch":
            state = ImageState(platform=stage.platform)
        elif stage.base.kind == "stage":
            state = states[stage.base.stage]
        else:
            state = self._image_state(stage.base.ref, stage.platform)
        emulated = stage.platform not in status.native
        total = len(stage.steps)
        label = dict(platform=str(stage.platform), stage=stage.display_name, total=total)
        for n, step in enumerate(stage.steps, 1):
            name = summarize(step.instruction)
            # Only RUN executes the image's binaries; only RUN is emulated.
            on_qemu = emulated and isinstance(step.instruction, Run)
            common = dict(label, step=n, name=name, line=step.line, emulated=on_qemu)
            self.emit(Event("step.start", **common))  # type: ignore[arg-type]
            started = time.monotonic()

            def log(text: str, common: dict = common) -> None:  # type: ignore[type-arg]
                self.emit(Event("step.log", text=text, **common))

            ctx = StepContext(
                platform=stage.platform,
                emulated=emulated,
                path=path,
                context_root=context_root,
                stage_roots=functools.partial(
                    self._sources, stage=stage, plan=plan, states=states, context_root=context_root
                ),
                log=log,
            )
            try:
                state = self.executor.execute(state, step, ctx)
            except Exception as exc:
                self.emit(Event("step.error", text=str(exc), **common))  # type: ignore[arg-type]
                raise
            took = time.monotonic() - started
            self.emit(Event("step.done", duration=took, **common))  # type: ignore[arg-type]
        return state

    def _image_state(self, ref: str, platform: Platform) -> ImageState:
        try:
            image = self._load(ref, platform)
        except ManifestUnknown as exc:
            raise ManifestUnknown(
                f"base image {ref}: {exc} (build it first with -t; pulls from registries "
                "come with the registry client)"
            ) from None
        pairs = [
            (desc.digest, diff_id)
            for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True)
        ]
        layers = tuple(
            LayerRef(desc.digest, diff_id, desc.size, desc.media_type)
            for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True)
        )
        snapshots = (self.executor.snapshots.flattened(self.store, pairs),) if pairs else ()
        return ImageState(
            platform=platform,
            layers=layers,
            snapshots=snapshots,
            history=image.config.history,
            base_config=image.config.config,
        )

    # ------------------------------------------------------------ sources of COPY

    @contextlib.contextmanager
    def _sources(
        self,
        step: Step,
        stage: StagePlan,
        plan: BuildPlan,
        states: dict[int, ImageState],
        context_root: Path,
    ) -> Iterator[tuple[Path, str]]:
        """The tree a COPY/ADD reads: the context, another stage, or an image."""
        inst = step.instruction
        from_ = inst.from_ if isinstance(inst, Copy) else ""
        if not from_:
            yield context_root, "build context"
            return
        assert isinstance(inst, Copy | Add)
        dep = next(
            (d for d in stage.dependencies if d.line == step.line and "from" in d.via.lower()),
            None,
        )
        if dep is not None and dep.kind == "stage":
            source = states[dep.stage]
            name = f"stage {plan.stage(dep.stage).display_name}"
        else:
            ref = dep.ref if dep is not None else from_
            source = self._image_state(ref, stage.platform)
            name = f"image {ref}"
        with merged(self.config.home, source.lowers) as root:
            yield root, name

    @contextlib.contextmanager
    def _context_files(self, context: BuildContext) -> Iterator[Path]:
        """The context as COPY sees it: .dockerignore applied, linked or copied
        into a private tree so the user's files cannot change under a build."""
        with self.executor.snapshots.new_dir("context-") as root:
            for entry in context.iter_files():
                dest = root / entry.path
                if entry.kind == "dir":
                    dest.mkdir(mode=0o755, exist_ok=True)
                    os.chmod(dest, entry.mode & 0o7777)
                elif entry.kind == "symlink":
                    os.symlink(entry.link_target, dest)
                else:
                    try:
                        os.link(entry.source, dest)
                    except OSError:
                        shutil.copy2(entry.source, dest)
            yield root


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
