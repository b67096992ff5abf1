"""Planning one target platform: the stage graph, then each needed stage's
steps. `plan.plan_build` runs this once per platform; `checks.run_checks`
uses the findings it collects on the way."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from buildkit.dockerfile.args import (
    GlobalScope,
    evaluate_global_args,
    is_predefined,
    platform_args,
    quote,
)
from buildkit.dockerfile.buildplan import (
    ArgInfo,
    Base,
    BuildOptions,
    BuildPlan,
    ImageConfig,
    MountUse,
    StagePlan,
    Step,
)
from buildkit.dockerfile.instructions import Dockerfile, Instruction, Onbuild, Run
from buildkit.dockerfile.stages import (
    StageNode,
    add_dependencies,
    check_cycles,
    check_order,
    check_references,
    find_target,
    levels,
    reachable,
    resolve_stages,
)
from buildkit.dockerfile.state import StageState
from buildkit.dockerfile.steps import Finding, StageWalker
from buildkit.errors import DockerfileError, FarmError
from buildkit.platforms import Platform


@dataclass
class PlatformResult:
    plan: BuildPlan
    findings: list[Finding] = field(default_factory=list)
    declared_args: set[str] = field(default_factory=set)


def doc_comment(comment: str, name: str) -> str:
    """BuildKit's description of an ARG or a stage: the text after `<name> ` on
    a comment line above it that starts with the name; "" otherwise."""
    if not name:
        return ""
    for line in comment.splitlines():
        if line.startswith(name + " "):
            return line[len(name) + 1 :].strip()
    return ""


class _Resolver:
    """Caches the image resolver's answers for one platform plan."""

    def __init__(self, options: BuildOptions) -> None:
        self.options = options
        self.cache: dict[tuple[str, Platform], ImageConfig | None] = {}

    def __call__(self, ref: str, platform: Platform) -> ImageConfig | None:
        key = (ref, platform)
        if key not in self.cache:
            fn = self.options.resolve_image
            self.cache[key] = fn(ref, platform) if fn is not None else None
        return self.cache[key]


def _parse_triggers(
    df: Dockerfile, node: StageNode, triggers: list[str]
) -> tuple[Instruction, ...]:
    """ONBUILD triggers as instructions, placed at the FROM line that runs them."""
    from buildkit.dockerfile import parse_dockerfile  # the parser lands beside us

    out: list[Instruction] = []
    line = node.stage.from_.line
    for text in triggers:
        try:
            parsed = parse_dockerfile(f"FROM scratch\n{text}\n", df.path)
        except FarmError as exc:
            raise DockerfileError(
                f"invalid ONBUILD trigger {quote(text)}: {exc}",
                path=df.path,
                line=line,
                instruction="FROM",
            ) from exc
        insts = parsed.stages[0].instructions if parsed.stages else ()
        if len(insts) != 1:
            raise DockerfileError(
                "onbuild trigger should be a single expression",
                path=df.path,
                line=line,
                instruction="FROM",
            )
        out.append(replace(insts[0], line=line, end_line=line))
    return tuple(out)


def _triggers(
    df: Dockerfile, nodes: list[StageNode], node: StageNode, resolve: _Resolver
) -> list[str]:
    if node.base.kind == "stage":
        base = nodes[node.base.stage].stage
        return [i.expression for i in base.instructions if isinstance(i, Onbuild)]
    if node.base.kind == "image":
        config = resolve(node.base.ref, node.platform)
        return list(config.on_build) if config else []
    return []


def plan_platform(df: Dockerfile, options: BuildOptions, platform: Platform) -> PlatformResult:
    if not df.stages:
        raise DockerfileError("dockerfile contains no stages to build", path=df.path)
    target_name = options.target or df.stages[-1].name
    predefined = platform_args(platform, options.build_platform, target_name, options.build_args)
    scope = evaluate_global_args(df, predefined, options.build_args)
    nodes = resolve_stages(df, scope.values, platform, options.build_platform)
    target = find_target(df, nodes, options.target)
    for node in nodes:
        add_dependencies(df, nodes, node, node.stage.instructions, platform)
    check_cycles(df, nodes)
    check_references(df, nodes)
    resolve = _Resolver(options)
    needed = reachable(nodes, target)
    done: set[int] = set()
    while True:  # ONBUILD triggers may add dependencies
        fresh = [n for n in needed if n.stage.index not in done]
        if not fresh:
            break
        for node in fresh:
            done.add(node.stage.index)
            texts = _triggers(df, nodes, node, resolve)
            if texts:
                node.onbuild = _parse_triggers(df, node, texts)
                add_dependencies(df, nodes, node, node.onbuild, platform, onbuild=True)
        check_cycles(df, nodes)
        needed = reachable(nodes, target)
    check_order(df, needed)
    return _walk(df, options, platform, scope, nodes, needed, target, resolve)


def _walk(
    df: Dockerfile,
    options: BuildOptions,
    platform: Platform,
    scope: GlobalScope,
    nodes: list[StageNode],
    needed: list[StageNode],
    target: StageNode,
    resolve: _Resolver,
) -> PlatformResult:
    level_of = levels(needed)
    states: dict[int, StageState] = {}
    result = PlatformResult(plan=None)  # type: ignore[arg-type]
    stage_plans: list[StagePlan] = []
    walkers: dict[int, StageWalker] = {}
    for node in needed:
        base = node.base
        if base.kind == "stage":
            state = states[base.stage].inherit()
        else:
            config = resolve(base.ref, node.platform) if base.kind == "image" else None
            state = StageState.from_image(config, node.platform)
            if config is not None and config.digest:
                base = Base("image", ref=base.ref, digest=config.digest)
        walker = StageWalker(
            df,
            state,
            global_values=scope.values,
            build_args=options.build_args,
            platform=node.platform,
        )
        steps: list[Step] = [walker.step(i, onbuild=True) for i in node.onbuild]
        steps += [walker.step(i) for i in node.stage.instructions]
        states[node.stage.index] = walker.state
        walkers[node.stage.index] = walker
        result.findings.extend(walker.findings)
        result.declared_args |= set(walker.arg_lines)
        stage_plans.append(
            StagePlan(
                index=node.stage.index,
                name=node.name,
                line=node.stage.from_.line,
                platform=node.platform,
                base=base,
                dependencies=tuple(node.deps),
                level=level_of[node.stage.index],
                steps=tuple(steps),
                config=walker.state.config(),
            )
        )
    by_level: dict[int, list[int]] = {}
    for idx, lvl in level_of.items():
        by_level.setdefault(lvl, []).append(idx)
    result.declared_args |= {a.name for a in scope.args}
    result.plan = BuildPlan(
        platform=platform,
        target=target.stage.index,
        stages=tuple(stage_plans),
        levels=tuple(tuple(sorted(by_level[k])) for k in sorted(by_level)),
        args=_outline_args(scope, needed, walkers),
        secrets=_mount_uses(stage_plans, "secret"),
        ssh=_mount_uses(stage_plans, "ssh"),
    )
    return result


def _outline_args(
    scope: GlobalScope, needed: list[StageNode], walkers: dict[int, StageWalker]
) -> tuple[ArgInfo, ...]:
    used_global: set[str] = set()
    found: dict[str, ArgInfo] = {}
    for node in needed:
        used_global |= node.used_global_args
        walker = walkers[node.stage.index]
        used_global |= walker.inherited_global
        for name, (decl, inst, value) in walker.arg_lines.items():
            if name in walker.inherited_global or name in found:
                continue
            found[name] = ArgInfo(
                name=name,
                value=value,
                default=decl.default,
                description=doc_comment(inst.comment, name),
                line=inst.line,
            )
    todo = list(used_global)
    while todo:  # a global default using another global arg uses it too
        info = scope.info(todo.pop())
        if info is None or info.name in found:
            continue
        found[info.name] = ArgInfo(
            name=info.name,
            value=info.value,
            default=info.default,
            description=doc_comment(info.description, info.name),
            line=info.line,
        )
        todo.extend(info.uses)
    return tuple(sorted(found.values(), key=lambda a: (a.line, a.name)))


def _mount_uses(stages: list[StagePlan], kind: str) -> tuple[MountUse, ...]:
    found: dict[str, MountUse] = {}
    for stage in stages:
        for step in stage.steps:
            inst = step.instruction
            if not isinstance(inst, Run):
                continue
            for mount in inst.mounts:
                if mount.type != kind:
                    continue
                ident = mount.get("id") or ""
                if not ident:
                    target = mount.get("target") or ""
                    ident = posixpath.basename(target) if kind == "secret" else "default"
                flag = mount.get("required")
                required = flag is not None and flag.lower() in ("", "true", "1")
                found.setdefault(ident, MountUse(ident, required, inst.line))
    return tuple(sorted(found.values(), key=lambda m: (m.line, m.id)))


def unused_build_args(options: BuildOptions, declared: set[str]) -> tuple[str, ...]:
    return tuple(
        sorted(n for n in options.build_args if n not in declared and not is_predefined(n))
    )
