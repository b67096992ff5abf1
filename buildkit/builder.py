"""The build engine's front door: build plans in, OCI images in the store out.

    builder = Builder(store, EngineConfig(home=...))
    plans = plan_build(dockerfile, BuildOptions(..., resolve_image=builder.resolver()))
    result = builder.build(plans, context)
    result.descriptor   # the index (several platforms) or the one manifest

The Solver runs the stages (in parallel where they are independent, through
the step cache); the Builder gives it what stages start from and read from
(scratch, another stage, an image in the store, the build context), then
writes each platform's config and manifest and, for several platforms, the
index. Nothing is tagged here: `images.tag_image` does that, last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildkit import binfmt
from buildkit.cache.contents import FileDigests, hash_sources, hash_tree
from buildkit.cache.keys import base_key
from buildkit.context import BuildContext
from buildkit.dockerfile.buildplan import BuildPlan, BuildPlans, ImageResolver, StagePlan, Step
from buildkit.dockerfile.buildplan import ImageConfig as PlannerImageConfig
from buildkit.dockerfile.instructions import Add, Copy, Run
from buildkit.errors import DockerfileError, ManifestUnknown, ReferenceFormatError, StorageError
from buildkit.events import Emit, discard
from buildkit.executor import EngineConfig, Executor, ImageState, LayerRef, StepContext
from buildkit.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)
from buildkit.images import find_local_image, load_base_image, write_json_blob
from buildkit.layers import diff_upperdir
from buildkit.overlay import merged
from buildkit.platforms import Platform
from buildkit.reference import parse_reference
from buildkit.runtimeconfig import runtime_config
from buildkit.sandbox import NamespaceSandbox, Sandbox
from buildkit.solver import SolveOptions, Solver
from buildkit.store.base import Store

if TYPE_CHECKING:
    from buildkit.add import Downloads


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
    # Step cache keys the build hit or recorded → the layer digest each names.
    cache_keys: Mapping[str, str | None] = field(default_factory=dict)

    def cache_keys_for(self, mode: str) -> list[str]:
        """`--cache-to ...,mode=max`: every step's key; `min`: those of the result's layers."""
        if mode == "max":
            return sorted(self.cache_keys)
        layers = {lr.digest for p in self.platforms for lr in p.state.layers}
        return sorted(k for k, digest in self.cache_keys.items() if digest in layers)

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
        solve: SolveOptions | None = None,
        puller: Callable[[str, Platform], object] | None = None,
    ) -> None:
        self.store = store
        # Called for an image reference no repository of the store holds,
        # before it is read from the pulled bases (`images.load_base_image`).
        self.puller = puller
        self.config = config
        self.emit = emit
        self.emulation = emulation
        self.solve = solve or SolveOptions()
        self.executor = Executor(
            store, sandbox or NamespaceSandbox(scratch_root=config.home / "sandbox"), config
        )
        self.file_digests = FileDigests()

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
        image = find_local_image(self.store, parsed, platform)
        if image is not None:
            return image
        if self.puller is not None:
            self.puller(ref, platform)
        return load_base_image(self.store, parsed, platform)

    # ------------------------------------------------------------ building

    def build(self, plans: BuildPlans, context: BuildContext) -> BuildResult:
        status = self.emulation or binfmt.status()
        needed = tuple(dict.fromkeys(st.platform for plan in plans for st in plan.stages))
        binfmt.require(needed, status)  # before any step runs
        # Scratch directories of builds killed on this FARM_HOME (SIGKILL) go now.
        self.executor.snapshots.collect_stale()
        solver = Solver(self.executor, self.emit, self.solve)
        with (
            self._context_files(context) as context_root,
            self.executor.snapshots.new_dir("downloads-") as downloads_dir,
        ):
            from buildkit.add import Downloads  # here: most builds fetch nothing

            downloads = Downloads(downloads_dir)

            def make_context(
                step: Step,
                stage: StagePlan,
                plan: BuildPlan,
                states: dict[int, ImageState],
                emulated: bool,
            ) -> StepContext:
                return self._step_context(
                    step, stage, plan, states, emulated, context_root, plans.path, downloads
                )

            finals = solver.run_plans(
                tuple(plans),
                self._start,
                make_context,
                lambda platform: platform not in status.native,
            )
        results = tuple(
            self._write_image(plan, states) for plan, states in zip(plans, finals, strict=True)
        )
        index = None
        if len(results) > 1:
            doc = Index(manifests=tuple(r.manifest for r in results))
            index = write_json_blob(self.store, doc, OCI_INDEX)
        return BuildResult(results, index, dict(solver.used))

    def _write_image(self, plan: BuildPlan, states: dict[int, ImageState]) -> PlatformResult:
        target = plan.target_stage
        final = states[target.index]
        self._ensure_blobs(final)
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

    def _ensure_blobs(self, state: ImageState) -> None:
        """Just before a manifest is written: every layer blob is still in the
        store (a prune in a shared store may have run meanwhile); a vanished one
        is written again from this machine's snapshot of it."""
        for layer in state.layers:
            if self.store.has_blob(layer.digest):
                continue
            snapshot = self.executor.snapshots.get(layer.diff_id)
            if snapshot is None:
                raise StorageError(
                    f"layer {layer.digest} vanished from the store and is not unpacked here"
                )
            self._rewrite_blob(layer, snapshot)

    def _rewrite_blob(self, layer: LayerRef, snapshot: Path) -> None:
        with tempfile.TemporaryFile(dir=self.executor.snapshots.scratch) as blob:
            made = diff_upperdir(
                snapshot,
                blob,
                compression=self.config.compression,  # type: ignore[arg-type]
                source_date_epoch=self.config.source_date_epoch,
            )
            if made.digest != layer.digest:
                raise StorageError(
                    f"layer {layer.digest} vanished and re-creating it gave {made.digest}"
                )
            blob.seek(0)
            self.store.put_blob(blob, layer.digest, media_type=layer.media_type)

    # ------------------------------------------------------------ what stages start from

    def _start(self, stage: StagePlan, states: dict[int, ImageState]) -> ImageState:
        salt = self.config.salt
        if stage.base.kind == "scratch":
            key = base_key("scratch", platform=stage.platform, salt=salt)
            return ImageState(platform=stage.platform, key=key)
        if stage.base.kind == "stage":
            return states[stage.base.stage]
        return self._image_state(stage.base.ref, stage.platform)

    def _image_state(self, ref: str, platform: Platform) -> ImageState:
        try:
            image = self._load(ref, platform)
        except ManifestUnknown as exc:
            raise ManifestUnknown(
                f"base image {ref}: {exc} (build it first with -t, or pull it)"
            ) from None
        layers = tuple(
            LayerRef(desc.digest, diff_id, desc.size, desc.media_type)
            for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True)
        )
        pairs = [(lr.digest, lr.diff_id) for lr in layers]
        snapshots = (self.executor.snapshots.flattened(self.store, pairs),) if pairs else ()
        key = base_key(
            "image",
            platform=platform,
            manifest_digest=image.manifest_descriptor.digest,
            salt=self.config.salt,
        )
        return ImageState(
            platform=platform,
            layers=layers,
            snapshots=snapshots,
            history=image.config.history,
            base_config=image.config.config,
            key=key,
        )

    # ------------------------------------------------------------ what steps read

    def _step_context(
        self,
        step: Step,
        stage: StagePlan,
        plan: BuildPlan,
        states: dict[int, ImageState],
        emulated: bool,
        context_root: Path,
        path: str,
        downloads: Downloads,
    ) -> StepContext:
        def resolve(from_: str) -> tuple[ImageState, str]:
            return self._resolve_from(from_, step, stage, plan, states, path)

        @contextlib.contextmanager
        def stage_roots(s: Step) -> Iterator[tuple[Path, str]]:
            inst = s.instruction
            from_ = inst.from_ if isinstance(inst, Copy) else ""
            if not from_:
                yield context_root, "build context"
                return
            source, name = resolve(from_)
            with merged(self.config.home, source.lowers) as root:
                yield root, name

        @contextlib.contextmanager
        def mount_root(from_: str) -> Iterator[Path]:
            source, _ = resolve(from_)
            with merged(self.config.home, source.lowers) as root:
                yield root

        def key_inputs(s: Step) -> dict[str, Any]:
            inst = s.instruction
            if isinstance(inst, Copy | Add):
                from_ = inst.from_ if isinstance(inst, Copy) else ""
                if from_:
                    return {"sources": resolve(from_)[0].key}
                if not inst.sources:
                    return {}
                remote = downloads.identities(inst) if isinstance(inst, Add) else None
                return {
                    "sources": hash_sources(
                        inst, context_root, cache=self.file_digests, remote=remote
                    )
                }
            if isinstance(inst, Run) and inst.mounts:
                return {
                    "mounts": tuple(
                        self._mount_identity(m, resolve, context_root) for m in inst.mounts
                    )
                }
            return {}

        return StepContext(
            platform=stage.platform,
            emulated=emulated,
            path=path,
            context_root=context_root,
            stage_roots=stage_roots,
            log=_no_log,
            mount_root=mount_root,
            key_inputs=key_inputs,
            downloads=downloads,
        )

    def _mount_identity(self, mount, resolve, context_root: Path) -> str:  # type: ignore[no-untyped-def]
        kind = mount.type.lower()
        from_ = mount.get("from") or ""
        if kind == "bind":
            if from_:
                return resolve(from_)[0].key
            return hash_tree(context_root, mount.get("source") or "/", cache=self.file_digests)
        if kind == "cache" and from_:
            return resolve(from_)[0].key
        return ""

    def _resolve_from(
        self,
        from_: str,
        step: Step,
        stage: StagePlan,
        plan: BuildPlan,
        states: dict[int, ImageState],
        path: str,
    ) -> tuple[ImageState, str]:
        """A `--from` (COPY) or `from=` (RUN --mount): a stage of this plan, or an image."""
        wanted = from_.lower()
        for st in plan.stages:
            if (wanted.isdigit() and int(wanted) == st.index) or (st.name and st.name == wanted):
                if st.index not in states:
                    raise DockerfileError(
                        f"stage {from_!r} is not built before this step",
                        path=path,
                        line=step.line,
                        instruction=step.keyword,
                    )
                return states[st.index], f"stage {st.display_name}"
        dep = next(
            (d for d in stage.dependencies if d.line == step.line and d.kind == "image"),
            None,
        )
        ref = dep.ref if dep is not None else from_
        return self._image_state(ref, stage.platform), f"image {ref}"

    @contextlib.contextmanager
    def _context_files(self, context: BuildContext) -> Iterator[Path]:
        """The context as COPY sees it: .dockerignore applied, linked or copied
        into a private tree so the user's files cannot change under a build."""
        home = self.config.home.resolve()
        # Listed before anything is written: FARM_HOME may lie inside the context
        # (it is then left out, as the build's own state is no source of it).
        entries = [e for e in context.iter_files() if not e.source.resolve().is_relative_to(home)]
        with self.executor.snapshots.new_dir("context-") as root:
            for entry in entries:
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


def _no_log(text: str) -> None:
    """Until the solver gives a step its own log (with the step's labels)."""
