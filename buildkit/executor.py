"""Executing one step of a stage: RUN in the sandbox, COPY/ADD through an
overlay view, WORKDIR's directory, and the metadata-only rest.

A stage's filesystem is a stack of snapshots (bottom first). A step that
changes files gets a fresh upper directory over that stack; what it wrote
becomes a layer blob in the store and, unchanged, the next snapshot. A step
that changes nothing adds no layer, only history.

Entitlements: `RUN --network=host` needs `--allow network.host` and
`RUN --security=insecure` needs `--allow security.insecure`, as in BuildKit.
Farm never grants extra privileges, though: an allowed insecure step still
runs in the usual sandbox (no extra capabilities, devices or seccomp
relaxation), so only steps that work unprivileged succeed.
"""

from __future__ import annotations

import collections
import contextlib
import os
import posixpath
import shlex
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildkit.digest import Digest
from buildkit.dockerfile.buildplan import Step
from buildkit.dockerfile.describe import summarize
from buildkit.dockerfile.instructions import Add, Copy, Run, Workdir
from buildkit.errors import BuildStepError, DockerfileError
from buildkit.fsutil import mkdir_all
from buildkit.image import History, RuntimeConfig, format_created
from buildkit.layers import Layer, diff_upperdir, tar_directory
from buildkit.overlay import merged
from buildkit.platforms import Platform
from buildkit.runmounts import MountSources, prepare_mounts
from buildkit.sandbox import Limits, NetworkMode, Sandbox, StepSpec, default_resolv_conf
from buildkit.secrets import SecretMasker, SecretSource, SshSource
from buildkit.snapshots import Snapshots
from buildkit.store.base import Store
from buildkit.users import resolve_chown, resolve_user

if TYPE_CHECKING:
    from buildkit.add import Downloads

LOG_TAIL = 20
#: The kernel copies mount options into one page.
MAX_LOWERS = 128
COMPACT_STEP = 8


@dataclass(frozen=True)
class LayerRef:
    digest: Digest
    diff_id: Digest
    size: int
    media_type: str


# What a filesystem step made: its layer and the snapshot of it, or None.
Made = tuple[LayerRef, Path] | None


@dataclass(frozen=True)
class ImageState:
    """A stage's image so far: its layers, the snapshots to mount, its history."""

    platform: Platform
    layers: tuple[LayerRef, ...] = ()
    snapshots: tuple[Path, ...] = ()  # bottom first
    history: tuple[History, ...] = ()
    base_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    key: str = ""  # the step cache key of this filesystem (buildkit.cache.keys)

    @property
    def lowers(self) -> list[Path]:
        """Snapshots top first, as overlayfs wants them."""
        return list(reversed(self.snapshots))


@dataclass(frozen=True)
class EngineConfig:
    home: Path
    source_date_epoch: int | None = 0  # None keeps real times
    compression: str = "gzip"
    allow: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    host_resolv_conf: str = ""
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    ssh: Mapping[str, SshSource] = field(default_factory=dict)

    @property
    def salt(self) -> str:
        """What, besides the Dockerfile, changes a layer's bytes: part of every cache key."""
        return f"compression={self.compression};epoch={self.source_date_epoch}"

    @property
    def created(self) -> str:
        import time

        when = time.time() if self.source_date_epoch is None else self.source_date_epoch
        return format_created(int(when))


@dataclass(frozen=True)
class StepContext:
    """Where a step runs: its platform, its label in errors, and its sources."""

    platform: Platform
    emulated: bool
    path: str  # the Dockerfile's name, for errors
    context_root: Path
    stage_roots: Callable[[Step], contextlib.AbstractContextManager[tuple[Path, str]]]
    log: Callable[[str], None]
    # The read-only root of a stage (name or index) or an image, for RUN --mount from=.
    mount_root: Callable[[str], contextlib.AbstractContextManager[Path]] | None = None
    # What a step's cache key needs besides the step: the identity of COPY
    # sources (`sources=`) or of RUN bind mounts (`mounts=`).
    key_inputs: Callable[[Step], dict[str, Any]] = field(default=lambda step: {})
    # Where ADD gets URLs and git refs: the build's own downloads (`add.Downloads`).
    downloads: Downloads | None = None


class Executor:
    def __init__(self, store: Store, sandbox: Sandbox, config: EngineConfig) -> None:
        self.store = store
        self.sandbox = sandbox
        self.config = config
        self.snapshots = Snapshots(config.home)

    # ------------------------------------------------------------ dispatch

    def execute(self, state: ImageState, step: Step, ctx: StepContext) -> Made:
        """Run a filesystem step (RUN, COPY, ADD, WORKDIR); what it made, if anything."""
        inst = step.instruction
        if isinstance(inst, Run):
            return self._run(state, step, ctx)
        if isinstance(inst, Copy | Add):
            return self._copy(state, step, ctx)
        if isinstance(inst, Workdir):
            return self._workdir(state, step)
        return None

    def append(self, state: ImageState, step: Step, made: Made, key: str = "") -> ImageState:
        """The state after `step`: its layer (if it made one), its history, its cache key."""
        history = History(
            created=self.config.created,
            created_by=created_by(step),
            comment="buildkit.dockerfile.v0",
            empty_layer=made is None,
        )
        key = key or state.key
        if made is None:
            return replace(state, history=(*state.history, history), key=key)
        layer, snapshot = made
        return replace(
            state,
            key=key,
            layers=(*state.layers, layer),
            snapshots=(*state.snapshots, snapshot),
            history=(*state.history, history),
        )

    # ------------------------------------------------------------ layers

    def commit(self, directory: Path, *, overlay: bool) -> Made:
        """Turn a step's output directory into a stored layer and a snapshot;
        None when the step changed nothing."""
        if not any(os.scandir(directory)):
            return None
        write = diff_upperdir if overlay else tar_directory
        self.snapshots.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.snapshots.scratch) as blob:
            layer: Layer = write(
                directory,
                blob,
                compression=self.config.compression,  # type: ignore[arg-type]
                source_date_epoch=self.config.source_date_epoch,
            )
            blob.seek(0)
            self.store.put_blob(blob, layer.digest, media_type=layer.media_type)
        snapshot = self.snapshots.commit(layer.diff_id, directory)
        return LayerRef(layer.digest, layer.diff_id, layer.size, layer.media_type), snapshot

    @contextlib.contextmanager
    def _upper(self) -> Iterator[tuple[Path, Path]]:
        with self.snapshots.new_dir() as tmp:
            upper, work = tmp / "upper", tmp / "work"
            upper.mkdir()
            work.mkdir()
            yield upper, work

    # ------------------------------------------------------------ RUN

    def _run(self, state: ImageState, step: Step, ctx: StepContext) -> Made:
        inst = step.instruction
        assert isinstance(inst, Run)
        network = NetworkMode(inst.network or "default")
        if network is NetworkMode.HOST and "network.host" not in self.config.allow:
            raise DockerfileError(
                "network host is not allowed: pass --allow network.host to farm build",
                path=ctx.path,
                line=inst.line,
                instruction="RUN",
            )
        if inst.security == "insecure" and "security.insecure" not in self.config.allow:
            raise DockerfileError(
                "security.insecure is not allowed: pass --allow security.insecure to farm build",
                path=ctx.path,
                line=inst.line,
                instruction="RUN",
            )
        uid, gid = 0, 0
        groups: tuple[int, ...] = ()
        if step.state.user:
            with merged(self.config.home, state.lowers) as root:
                uid, gid, groups = resolve_user(root, step.state.user)
        lowers = [str(p) for p in self._compact(state).lowers] or [str(self._empty())]
        argv = run_argv(inst, step.state.shell)
        tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)

        def keep(line: str) -> None:
            tail.append(line)
            ctx.log(line)

        lines = _LineSplitter(keep)
        sources = MountSources(
            context_root=ctx.context_root,
            stage_root=ctx.mount_root or _no_stage_roots,
            secrets=self.config.secrets,
            ssh=self.config.ssh,
            cache_root=self.config.home / "cache-mounts",
            scratch=self.snapshots.scratch,
        )
        workdir = step.state.workdir or "/"
        with (
            self._upper() as (upper, work),
            prepare_mounts(inst, sources, uid=uid, gid=gid, path=ctx.path, workdir=workdir) as prep,
        ):
            masked = SecretMasker(lines.feed, prep.secrets)
            spec = StepSpec(
                lower_dirs=tuple(lowers),
                upper_dir=str(upper),
                work_dir=str(work),
                argv=argv,
                env=tuple(f"{k}={v}" for k, v in (*step.state.environ, *prep.env)),
                cwd=workdir,
                uid=uid,
                gid=gid,
                extra_gids=tuple(groups),
                hostname="buildkitsandbox",
                network=network,
                mounts=prep.mounts,
                limits=self.config.limits,
                resolv_conf=default_resolv_conf(network, self.config.host_resolv_conf),
            )
            result = self.sandbox.run(spec, masked)
            masked.flush()
            lines.flush()
            if not result.ok:
                command = shlex.join(argv)
                why = "timed out" if result.timed_out else f"exit code: {result.exit_code}"
                raise BuildStepError(
                    f'process "{command}" did not complete successfully: {why}',
                    platform=str(ctx.platform),
                    path=ctx.path,
                    line=inst.line,
                    command=command,
                    exit_code=result.exit_code,
                    log_tail=tuple(tail),
                )
            return self.commit(upper, overlay=True)

    def _compact(self, state: ImageState) -> ImageState:
        """The state with at most MAX_LOWERS snapshots: what one overlay mount
        stacks comfortably (the kernel's limit is 500; a host-side view names
        each by a 20-byte link, within one page of mount options).

        Over it, the bottom snapshots are unpacked from their layer blobs into
        one (`Snapshots.flattened`, by chain ID); how many is a multiple of
        COMPACT_STEP when that fits, so that the next steps find it unpacked."""
        snaps = state.snapshots
        if len(snaps) <= MAX_LOWERS:
            return state
        aligned = range(COMPACT_STEP, len(snaps), COMPACT_STEP)
        m = next(m for m in (*aligned, len(snaps) - MAX_LOWERS + 1) if len(snaps) - m < MAX_LOWERS)
        # The snapshots above the bottom one are one layer each; the bottom one
        # may be a whole base image.
        bottom = state.layers[: len(state.layers) - (len(snaps) - m)]
        flat = self.snapshots.flattened(self.store, [(lr.digest, lr.diff_id) for lr in bottom])
        return replace(state, snapshots=(flat, *snaps[m:]))

    def _empty(self) -> Path:
        empty = self.snapshots.root / "empty"
        empty.mkdir(parents=True, exist_ok=True)
        return empty

    # ------------------------------------------------------------ COPY / ADD

    def _copy(self, state: ImageState, step: Step, ctx: StepContext) -> Made:
        from buildkit.add import add_sources
        from buildkit.copy import copy_sources

        inst = step.instruction
        assert isinstance(inst, Copy | Add)
        workdir = step.state.workdir or "/"
        with ctx.stage_roots(step) as (src_root, source_name), contextlib.ExitStack() as scratch:
            if inst.link:
                # --link: the layer is the copied files alone, independent of the parents.
                upper = scratch.enter_context(self.snapshots.new_dir("link-"))
                mount: contextlib.AbstractContextManager[Path] = contextlib.nullcontext(upper)
            else:
                upper, _ = scratch.enter_context(self._upper())
                mount = merged(self.config.home, self._compact(state).lowers, upper)
            with mount as dest_root:
                if isinstance(inst, Add):
                    add_sources(
                        inst, src_root=src_root, dest_root=dest_root, workdir=workdir,
                        source_name=source_name, downloads=ctx.downloads,
                    )  # fmt: skip
                else:
                    copy_sources(
                        inst, src_root=src_root, dest_root=dest_root, workdir=workdir,
                        source_name=source_name,
                    )  # fmt: skip
            return self.commit(upper, overlay=not inst.link)

    # ------------------------------------------------------------ WORKDIR

    def _workdir(self, state: ImageState, step: Step) -> Made:
        """WORKDIR creates its directory when the image lacks it, as BuildKit does."""
        inst = step.instruction
        assert isinstance(inst, Workdir)
        # step.state is the state before this step: join the new path onto it.
        path = "/" + posixpath.normpath(
            posixpath.join(step.state.workdir or "/", inst.path)
        ).lstrip("/")
        with self._upper() as (upper, _):
            with merged(self.config.home, state.lowers, upper) as root:
                # BuildKit's dispatchWorkdir: llb.Mkdir(wd, 0755, WithParents,
                # WithUser(USER)); the file op resolves the user as --chown does.
                user = step.state.user
                uid, gid = resolve_chown(root, user) if user else (0, 0)
                mkdir_all(root, path, uid=uid, gid=gid)
            return self.commit(upper, overlay=True)


@contextlib.contextmanager
def _no_stage_roots(name: str) -> Iterator[Path]:
    raise KeyError(name)
    yield Path("/")  # pragma: no cover


def run_argv(inst: Run, shell: tuple[str, ...]) -> tuple[str, ...]:
    """The argv of a RUN, as BuildKit builds it.

    Exec form runs as written. Shell form runs SHELL + [text]; with heredocs,
    a command that is only `<<EOF` runs the heredoc body as the script, and
    otherwise the bodies follow the command line so the shell reads them.
    """
    if not inst.shell:
        return inst.command
    text = inst.command[0]
    if inst.heredocs:
        only = (
            len(inst.heredocs) == 1
            and text.strip().lstrip("<-").strip("'\"") == inst.heredocs[0].name
        )
        if only and inst.heredocs[0].content.startswith("#!"):
            # A script with its own interpreter: write it out, run it, remove it.
            body = inst.heredocs[0].content.rstrip("\n")
            eof = _heredoc_delimiter(body)
            text = (
                f"f=$(mktemp) && cat > \"$f\" <<'{eof}'\n"
                f"{body}\n{eof}\n"
                'chmod +x "$f" && "$f"; rc=$?; rm -f "$f"; exit $rc'
            )
        elif only:
            text = inst.heredocs[0].content
        else:
            parts = [text]
            for doc in inst.heredocs:
                parts.append(doc.content.rstrip("\n"))
                parts.append(doc.name)
            text = "\n".join(parts)
    return (*shell, text)


def _heredoc_delimiter(body: str) -> str:
    """A heredoc delimiter that is no line of `body`, so the body cannot end it early.

    `FARM_HEREDOC_EOF` when the body allows it (the RUN's argv, so its history
    and cache key, stays what it always was), else `FARM_HEREDOC_EOF_<n>`.
    """
    lines = set(body.split("\n"))
    eof, n = "FARM_HEREDOC_EOF", 0
    while eof in lines:
        n += 1
        eof = f"FARM_HEREDOC_EOF_{n}"
    return eof


def created_by(step: Step) -> str:
    """The history's created_by, worded as BuildKit words it."""
    inst = step.instruction
    if isinstance(inst, Run):
        # BuildKit joins the argv with spaces, unquoted: `RUN /bin/sh -c echo x > /x`.
        return f"RUN {' '.join(run_argv(inst, step.state.shell))} # buildkit"
    text = summarize(inst)
    return f"{text} # buildkit" if isinstance(inst, Copy | Add) else text


class _LineSplitter:
    """Bytes from a step's output → complete text lines."""

    def __init__(self, sink: Callable[[str], object]) -> None:
        self.sink = sink
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.sink(line.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        if self.buffer:
            self.sink(self.buffer.decode(errors="replace"))
            self.buffer = b""
