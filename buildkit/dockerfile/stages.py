"""The stage graph: each stage's base and platform, its dependencies, the
target, the stages it needs, and their parallel levels.

BuildKit's rules, in the order it applies them:

1. every FROM is expanded with the global args: the base name (blank is an
   error), and `--platform` (empty or unparsable is an error); a base naming
   an *earlier* stage (case-insensitive) is that stage, `scratch` is nothing,
   anything else is an image reference; a stage built FROM a stage builds for
   that stage's platform;
2. the target is found (`--target`, case-insensitive; else the last stage);
3. `COPY --from=` (a stage name, any stage, or an index) and `RUN --mount=...,
   from=` add dependencies; a name that is no stage is an image, pulled for
   the target platform; an index out of range is an error, and so is a
   variable in `--from`; a cycle is an error, in any stage, reached or not;
4. image references are validated for every stage; then, among the stages the
   target needs, a dependency on a later stage is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from buildkit.dockerfile.args import expand, quote
from buildkit.dockerfile.buildplan import Base, Dependency
from buildkit.dockerfile.commands.metadata import FROM_ARITY
from buildkit.dockerfile.expand import ExpansionError, expand_word
from buildkit.dockerfile.instructions import Copy, Dockerfile, From, Instruction, Run, Stage
from buildkit.dockerfile.words import split_whitespace
from buildkit.errors import DockerfileError, PlatformError, ReferenceFormatError
from buildkit.platforms import Platform, parse_platform
from buildkit.reference import normalize


@dataclass
class StageNode:
    stage: Stage
    name: str  # lower-cased, "" when unnamed
    base_name: str  # the expanded FROM word
    platform: Platform
    base: Base
    used_global_args: set[str] = field(default_factory=set)
    deps: list[Dependency] = field(default_factory=list)
    onbuild: tuple[Instruction, ...] = ()

    @property
    def display_name(self) -> str:
        return self.name or f"stage-{self.stage.index}"


def _error(df: Dockerfile, message: str, inst: Instruction) -> DockerfileError:
    return DockerfileError(message, path=df.path, line=inst.line, instruction=inst.keyword)


def resolve_stages(
    df: Dockerfile,
    global_values: Mapping[str, str],
    target_platform: Platform,
    build_platform: Platform,
) -> list[StageNode]:
    """Step 1: bases and platforms of every stage."""
    nodes: list[StageNode] = []
    by_name: dict[str, StageNode] = {}
    escape = df.directives.escape
    for stage in df.stages:
        frm: From = stage.from_
        exp = expand(
            frm.image, global_values, escape=escape, path=df.path, line=frm.line, keyword="FROM"
        )
        if "${" in frm.image and split_whitespace(frm.image) != [frm.image]:
            # Blanks inside `${...}` kept one word only for an expansion
            # error to win; BuildKit splits FROM on blanks before expanding.
            raise _error(df, FROM_ARITY, frm)
        if not exp.value:
            raise _error(df, f"base name ({frm.image}) should not be blank", frm)
        used = set(exp.matched)
        platform = target_platform
        if frm.platform:
            pexp = expand(
                frm.platform,
                global_values,
                escape=escape,
                path=df.path,
                line=frm.line,
                keyword="FROM",
            )
            used |= pexp.matched
            if not pexp.value:
                raise _error(df, f"empty platform value from expression {frm.platform}", frm)
            try:
                platform = parse_platform(pexp.value, local=build_platform)
            except PlatformError as exc:
                raise _error(df, f"failed to parse platform {frm.platform}: {exc}", frm) from exc
        base_stage = by_name.get(exp.value.lower())
        if base_stage is not None:
            base = Base("stage", stage=base_stage.stage.index)
            platform = base_stage.platform
        elif exp.value == "scratch":
            base = Base("scratch")
        else:
            base = Base("image", ref=exp.value)  # validated in check_references
        node = StageNode(stage, frm.name.lower(), exp.value, platform, base, used)
        if base_stage is not None:
            node.deps.append(Dependency("stage", frm.line, "FROM", stage=base_stage.stage.index))
        nodes.append(node)
        if node.name:
            by_name[node.name] = node
    return nodes


def find_target(df: Dockerfile, nodes: list[StageNode], target: str) -> StageNode:
    """Step 2."""
    if not target:
        return nodes[-1]
    for node in reversed(nodes):
        if node.name and node.name == target.lower():
            return node
    names = [n.name for n in nodes if n.name]
    available = ", ".join(names) if names else "none (no stage is named)"
    raise DockerfileError(
        f'target stage "{target}" could not be found (available stages: {available})',
        path=df.path,
    )


def _stage_by_name(nodes: list[StageNode], name: str) -> StageNode | None:
    found = None
    for node in nodes:  # a later duplicate name wins, as in BuildKit
        if node.name and node.name == name.lower():
            found = node
    return found


def add_dependencies(
    df: Dockerfile,
    nodes: list[StageNode],
    node: StageNode,
    instructions: tuple[Instruction, ...],
    target_platform: Platform,
    *,
    onbuild: bool = False,
) -> None:
    """Step 3, for one stage's instructions (or its ONBUILD triggers)."""
    prefix = "ONBUILD " if onbuild else ""
    for inst in instructions:
        if isinstance(inst, Copy) and inst.from_:
            node.deps.append(_copy_source(df, nodes, inst, target_platform, prefix + "COPY --from"))
        elif isinstance(inst, Run):
            for mount in inst.mounts:
                src = mount.get("from")
                if not src:
                    continue
                dep_node = _stage_by_name(nodes, src)
                via = prefix + "RUN --mount"
                if dep_node is not None:
                    node.deps.append(
                        Dependency("stage", inst.line, via, stage=dep_node.stage.index)
                    )
                else:
                    node.deps.append(_image_dep(df, inst, src, target_platform, via))


def _copy_source(
    df: Dockerfile, nodes: list[StageNode], inst: Copy, platform: Platform, via: str
) -> Dependency:
    src = inst.from_
    try:
        literal = expand_word(src, {}, escape=df.directives.escape).value == src
    except ExpansionError:
        literal = False
    if not literal:
        raise _error(
            df,
            "variable expansion is not supported for --from, define a new stage with FROM "
            "using ARG from global scope as a workaround",
            inst,
        )
    if _is_int(src):
        index = int(src)
        if not 0 <= index < len(nodes):
            raise _error(df, f"invalid stage index {index}", inst)
        return Dependency("stage", inst.line, via, stage=index)
    node = _stage_by_name(nodes, src)
    if node is not None:
        return Dependency("stage", inst.line, via, stage=node.stage.index)
    return _image_dep(df, inst, src, platform, via)


def _is_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def _image_dep(
    df: Dockerfile, inst: Instruction, ref: str, platform: Platform, via: str
) -> Dependency:
    try:
        normal = normalize(ref)
    except ReferenceFormatError as exc:
        raise _error(df, f"failed to parse stage name {quote(ref)}: {exc}", inst) from exc
    return Dependency("image", inst.line, via, ref=normal, platform=platform)


def check_cycles(df: Dockerfile, nodes: list[StageNode]) -> None:
    """A stage that needs itself, directly or through others (FROM excluded:
    a FROM can only name an earlier stage)."""
    visited: set[int] = set()

    def visit(i: int, path: list[int], chain: list[Dependency]) -> list[Dependency] | None:
        if i in visited:
            return None
        visited.add(i)
        path.append(i)
        for dep in nodes[i].deps:
            if dep.kind != "stage" or dep.via == "FROM":
                continue
            if dep.stage in path:
                return [*chain, dep]
            found = visit(dep.stage, path, [*chain, dep])
            if found:
                return found
        path.pop()
        return None

    for node in nodes:
        chain = visit(node.stage.index, [], [])
        if chain:
            raise DockerfileError(
                f"circular dependency detected on stage: {node.display_name}",
                path=df.path,
                line=chain[0].line,
                instruction=_inst_at(nodes[node.stage.index], chain[0].line).keyword,
            )


def check_references(df: Dockerfile, nodes: list[StageNode]) -> None:
    """Step 4a: every image base must be a valid reference (reached or not)."""
    for node in nodes:
        if node.base.kind != "image":
            continue
        try:
            node.base = Base("image", ref=normalize(node.base_name))
        except ReferenceFormatError as exc:
            raise _error(
                df, f"failed to parse stage name {quote(node.base_name)}: {exc}", node.stage.from_
            ) from exc


def reachable(nodes: list[StageNode], target: StageNode) -> list[StageNode]:
    """The stages the target needs, in index (= dependency) order."""
    seen: set[int] = set()
    todo = [target.stage.index]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        todo.extend(d.stage for d in nodes[i].deps if d.kind == "stage")
    return [n for n in nodes if n.stage.index in seen]


def check_order(df: Dockerfile, needed: list[StageNode]) -> None:
    """Step 4b: a stage can only copy from (or mount) a stage defined before it."""
    for node in needed:
        for dep in node.deps:
            if dep.kind != "stage" or dep.stage < node.stage.index:
                continue
            inst = _inst_at(node, dep.line)
            if "COPY" in dep.via:
                src = inst.from_ if isinstance(inst, Copy) else str(dep.stage)
                msg = (
                    f'cannot copy from stage "{src}", it needs to be defined before '
                    f'current stage "{node.display_name}"'
                )
            else:
                msg = (
                    f'cannot mount from stage "{dep.stage}", it needs to be defined before '
                    f'current stage "{node.display_name}"'
                )
            raise DockerfileError(msg, path=df.path, line=dep.line, instruction=inst.keyword)


def _inst_at(node: StageNode, line: int) -> Instruction:
    for inst in (*node.onbuild, *node.stage.instructions):
        if inst.line == line:
            return inst
    return node.stage.from_


def levels(needed: list[StageNode]) -> dict[int, int]:
    """Level 0: no stage dependency; else one more than the deepest dependency."""
    out: dict[int, int] = {}
    for node in needed:  # index order: dependencies come first
        deps = [out[d.stage] for d in node.deps if d.kind == "stage" and d.stage in out]
        out[node.stage.index] = 1 + max(deps) if deps else 0
    return out
