"""Scheduling a build: stages in parallel, steps through the step cache.

Every stage of every platform's plan is a task that starts once the stages it
needs are done; independent stages and the platforms themselves run side by
side. Filesystem steps are bounded by `jobs` (two cores are not drowned).

A filesystem step (RUN, COPY, ADD, WORKDIR) has a content-addressed key
(`buildkit.cache.keys`). Before running it the solver asks, in order:

1. did this build already make it? (an identical step of another platform,
   or a `FROM --platform=$BUILDPLATFORM` stage shared by several targets:
   one runs, the others wait for it and take its result);
2. does the step cache in the store have it? (unless --no-cache, or the
   stage is in --no-cache-filter) — a hit records its use before the layer
   is used, and unpacks the layer if this machine lacks its snapshot;
3. otherwise it runs, and its result is recorded.

Metadata steps (ENV, LABEL, ...) only add history; their effect on later
steps is in those steps' keys.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from buildkit.cache import index
from buildkit.cache.keys import is_filesystem_step, step_key
from buildkit.dockerfile.buildplan import BuildPlan, StagePlan, Step
from buildkit.dockerfile.describe import summarize
from buildkit.dockerfile.instructions import Run
from buildkit.errors import DockerfileError, InternalError, UserError
from buildkit.events import Emit, Event
from buildkit.executor import Executor, ImageState, LayerRef, Made, StepContext
from buildkit.platforms import Platform


class BuildCancelled(InternalError):
    """Another stage failed, or the build was interrupted."""

    retryable = False


@dataclass(frozen=True)
class SolveOptions:
    no_cache: bool = False
    no_cache_filter: frozenset[str] = frozenset()  # stage names, lower-case
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)


class _Once:
    """One result per key within a build, computed by whoever asks first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, Made] = {}

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[dict[str, Made]]:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield self._done


StageFn = Callable[[StagePlan, BuildPlan, dict[int, ImageState]], ImageState]


class Solver:
    def __init__(self, executor: Executor, emit: Emit, options: SolveOptions) -> None:
        self.executor = executor
        self.store = executor.store
        self.emit = emit
        self.options = options
        self.jobs = threading.BoundedSemaphore(max(1, options.jobs))
        self.once = _Once()
        self.cancelled = threading.Event()
        # Cache keys this build hit or recorded, with the layer digest each names
        # (for --cache-to: min exports those in the result, max all of them).
        self.used: dict[str, str | None] = {}

    # ------------------------------------------------------------ stages in parallel

    def run_plans(
        self,
        plans: tuple[BuildPlan, ...],
        start: Callable[[StagePlan, dict[int, ImageState]], ImageState],
        context: Callable[[Step, StagePlan, BuildPlan, dict[int, ImageState], bool], StepContext],
        emulated: Callable[[Platform], bool],
    ) -> list[dict[int, ImageState]]:
        """Run every stage of every plan; the final states, per plan."""
        results: list[dict[int, ImageState]] = [{} for _ in plans]
        workers = sum(len(p.stages) for p in plans)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures: list[dict[int, concurrent.futures.Future[ImageState]]] = []
            for n, plan in enumerate(plans):
                mine: dict[int, concurrent.futures.Future[ImageState]] = {}
                futures.append(mine)
                for stage in plan.stages:  # dependency order: every wait is on an earlier task
                    waits = [mine[d] for d in stage.stage_dependencies if d in mine]
                    mine[stage.index] = pool.submit(
                        self._stage_task, stage, plan, results[n], waits, start, context,
                        emulated(stage.platform),
                    )  # fmt: skip
            everything = [fut for mine in futures for fut in mine.values()]
            try:
                # Wake on the first failure, not when an earlier, slower stage ends.
                concurrent.futures.wait(everything, return_when=concurrent.futures.FIRST_EXCEPTION)
                for fut in everything:
                    if fut.done() and not fut.cancelled() and fut.exception() is not None:
                        fut.result()
                for fut in everything:
                    fut.result()
            except BaseException:
                # The first failure, or Ctrl-C in this thread: stop everything else
                # (the pool's shutdown would otherwise wait for running steps).
                self.cancelled.set()
                pool.shutdown(wait=False, cancel_futures=True)
                self.executor.sandbox.cancel_all()
                raise
        return results

    def _stage_task(
        self,
        stage: StagePlan,
        plan: BuildPlan,
        states: dict[int, ImageState],
        waits: list[concurrent.futures.Future[ImageState]],
        start: Callable[[StagePlan, dict[int, ImageState]], ImageState],
        context: Callable[[Step, StagePlan, BuildPlan, dict[int, ImageState], bool], StepContext],
        emulated: bool,
    ) -> ImageState:
        for fut in waits:
            fut.result()
        state = start(stage, states)
        use_cache = not self.options.no_cache and stage.name not in self.options.no_cache_filter
        total = len(stage.steps)
        for n, step in enumerate(stage.steps, 1):
            if self.cancelled.is_set():
                raise BuildCancelled("the build was cancelled")
            ctx = context(step, stage, plan, states, emulated)
            with _step_errors(ctx.path, step):
                state = self._step(state, step, ctx, n, total, stage, use_cache)
        states[stage.index] = state
        return state

    # ------------------------------------------------------------ one step

    def _step(
        self,
        state: ImageState,
        step: Step,
        ctx: StepContext,
        n: int,
        total: int,
        stage: StagePlan,
        use_cache: bool,
    ) -> ImageState:
        on_qemu = ctx.emulated and isinstance(step.instruction, Run)
        common = dict(
            platform=str(stage.platform), stage=stage.display_name, step=n, total=total,
            name=summarize(step.instruction), line=step.line, emulated=on_qemu,
        )  # fmt: skip

        def log(text: str) -> None:
            self.emit(Event("step.log", text=text, **common))  # type: ignore[arg-type]

        ctx = dataclasses.replace(ctx, log=log)
        if not is_filesystem_step(step):
            self.emit(Event("step.start", **common))  # type: ignore[arg-type]
            self.emit(Event("step.done", **common))  # type: ignore[arg-type]
            return self.executor.append(state, step, None)
        # A step starts when it begins its work: a hit once the index has it, a
        # step that runs once it holds a job slot; a step that runs ends (done or
        # error) before it gives the slot back. With --jobs 1 no two filesystem
        # steps are ever shown running at once.
        started = 0.0
        began = ended = False

        def begin() -> None:
            nonlocal started, began
            if not began:
                began, started = True, time.monotonic()
                self.emit(Event("step.start", **common))  # type: ignore[arg-type]

        def end(kind: str, text: str = "") -> None:
            nonlocal ended
            begin()
            ended = True
            self.emit(Event(kind, text=text, duration=time.monotonic() - started, **common))  # type: ignore[arg-type]

        try:
            key = step_key(state.key, step, stage.platform, **ctx.key_inputs(step))
            with self.once.claim(key) as done:
                if key in done:
                    made = done[key]
                    end("step.cached")
                else:
                    hit = self._lookup(key, begin) if use_cache else None
                    if hit is not None:
                        made, _ = hit
                        end("step.cached")
                    else:
                        with self.jobs:
                            if self.cancelled.is_set():
                                raise BuildCancelled("the build was cancelled")
                            begin()
                            try:
                                made = self.executor.execute(state, step, ctx)
                                self._record(key, made, common["name"])  # type: ignore[arg-type]
                            except Exception as exc:
                                end("step.error", str(exc))
                                raise
                            end("step.done")
                    done[key] = made
        except BuildCancelled:
            raise
        except Exception as exc:
            if not ended:
                end("step.error", str(exc))
            raise
        return self.executor.append(state, step, made, key)

    def _lookup(self, key: str, begin: Callable[[], None]) -> tuple[Made, bool] | None:
        """A hit (what the step made, its layer unpacked here; True), or None.
        `begin` is called once it is known to be a hit, before any unpacking."""
        hit = index.lookup(self.store, key, now=time.time())
        if hit is None:
            return None
        begin()
        self.used[key] = hit.layer.digest if hit.layer is not None else None
        if hit.layer is None:
            return None, True
        layer = LayerRef(hit.layer.digest, hit.layer.diff_id, hit.layer.size, hit.layer.media_type)
        snapshot = self.executor.snapshots.layer(self.store, layer.digest, layer.diff_id)
        return (layer, snapshot), True

    def _record(self, key: str, made: Made, description: str) -> None:
        layer = made[0] if made is not None else None
        index.record(self.store, key, layer, now=time.time(), description=description)
        self.used[key] = layer.digest if layer is not None else None


@contextlib.contextmanager
def _step_errors(path: str, step: Step) -> Iterator[None]:
    """A user's mistake a step finds is reported at its Dockerfile line; a
    retryable failure gets the step's place in its message."""
    try:
        yield
    except BuildCancelled:
        raise
    except UserError as exc:
        if isinstance(exc, DockerfileError):
            raise
        raise DockerfileError(
            str(exc), path=path, line=step.line, instruction=step.keyword
        ) from exc
    except InternalError as exc:
        _locate(exc, path, step)
        raise


def _locate(exc: InternalError, path: str, step: Step) -> None:
    """Prefix a retryable error's message with the step's place, when its message
    is its only argument (errors that format themselves are left as they are)."""
    if not exc.retryable or type(exc).__str__ is not Exception.__str__:
        return
    if len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return
    where = f"{path}:{step.line}: {step.keyword}: " if step.line else f"{path}: {step.keyword}: "
    if not exc.args[0].startswith(where):
        exc.args = (where + exc.args[0],)
