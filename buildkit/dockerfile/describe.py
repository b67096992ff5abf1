"""A human-readable summary of build plans (`farm build --call plan`).

    platform linux/arm64, target stage 1 (app)
      levels: [0] [1]
      stage 0 (build): linux/amd64 from image docker.io/library/golang:1.22, level 0
        3: ARG TARGETARCH=arm64
        4: RUN GOARCH=$TARGETARCH go build -o /out/app
      stage 1 (app): linux/arm64 from image docker.io/library/alpine:latest, level 1
        needs: stage 0
        6: COPY --from=build /out/app /app
    warnings:
      JSONArgsRecommended: JSON arguments recommended for CMD ... (line 7)

Words are shown expanded; a RUN's shell text is shown as written (the shell
expands it). The golden tests compare this text, written by hand.
"""

from __future__ import annotations

import json

from buildkit.dockerfile.buildplan import BuildPlan, BuildPlans, StagePlan, Step
from buildkit.dockerfile.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    CopyBase,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)


def describe(plans: BuildPlans) -> str:
    lines: list[str] = []
    for plan in plans.plans:
        lines += _plan(plan)
    if plans.messages:
        lines.append("warnings:")
        lines += [f"  {m}" for m in plans.messages]
    return "\n".join(lines) + "\n"


def _stage_label(plan: BuildPlan, index: int) -> str:
    st = plan.stage(index)
    return f"stage {index} ({st.name})" if st.name else f"stage {index}"


def _plan(plan: BuildPlan) -> list[str]:
    out = [f"platform {plan.platform}, target {_stage_label(plan, plan.target)}"]
    out.append("  levels: " + " ".join("[" + ", ".join(map(str, lv)) + "]" for lv in plan.levels))
    for st in plan.stages:
        out += _stage(plan, st)
    return out


def _stage(plan: BuildPlan, st: StagePlan) -> list[str]:
    base = str(st.base)
    if st.base.kind == "stage":
        base = _stage_label(plan, st.base.stage)
    head = f"  {_stage_label(plan, st.index)}: {st.platform} from {base}, level {st.level}"
    out = [head]
    needs: dict[str, None] = {}
    for dep in st.dependencies:
        if dep.via == "FROM":
            continue
        if dep.kind == "stage":
            needs[f"stage {dep.stage}"] = None
        else:
            needs[f"image {dep.ref} ({dep.platform})"] = None
    if needs:
        out.append("    needs: " + ", ".join(needs))
    out += [f"    {_step(step)}" for step in st.steps]
    return out


def _step(step: Step) -> str:
    prefix = "(onbuild) " if step.onbuild else ""
    return f"{step.line}: {prefix}{summarize(step.instruction)}"


def _cmdline(command: tuple[str, ...], shell: bool) -> str:
    return command[0] if shell and command else json.dumps(list(command))


def summarize(inst: Instruction) -> str:
    """One line for one (expanded) instruction."""
    kw = inst.keyword
    words: list[str] = []
    if isinstance(inst, Arg):
        words = [d.name if d.default is None else f"{d.name}={d.default}" for d in inst.args]
    elif isinstance(inst, Env | Label):
        words = [f"{kv.key}={kv.value}" for kv in inst.pairs]
    elif isinstance(inst, Run):
        words = [f"--mount={_mount(m)}" for m in inst.mounts]
        if inst.network:
            words.append(f"--network={inst.network}")
        words.append(_cmdline(inst.command, inst.shell))
    elif isinstance(inst, CopyBase):
        words = _copy_words(inst)
    elif isinstance(inst, Cmd | Entrypoint):
        words = [_cmdline(inst.command, inst.shell)]
    elif isinstance(inst, Shell):
        words = [json.dumps(list(inst.shell))]
    elif isinstance(inst, Healthcheck):
        words = list(inst.test)
    elif isinstance(inst, Expose):
        words = list(inst.ports)
    elif isinstance(inst, Volume):
        words = list(inst.paths)
    elif isinstance(inst, User):
        words = [inst.user]
    elif isinstance(inst, Workdir):
        words = [inst.path]
    elif isinstance(inst, StopSignal):
        words = [inst.signal]
    elif isinstance(inst, Onbuild):
        words = [inst.expression]
    elif isinstance(inst, Maintainer):
        words = [inst.name]
    return " ".join([kw, *words])


def _mount(mount: object) -> str:
    m = mount  # Mount: type plus options
    parts = [f"type={m.type}"]  # type: ignore[attr-defined]
    parts += [f"{kv.key}={kv.value}" for kv in m.options]  # type: ignore[attr-defined]
    return ",".join(parts)


def _copy_words(inst: CopyBase) -> list[str]:
    words: list[str] = []
    if isinstance(inst, Copy) and inst.from_:
        words.append(f"--from={inst.from_}")
    if inst.chown:
        words.append(f"--chown={inst.chown}")
    if inst.chmod:
        words.append(f"--chmod={inst.chmod}")
    if isinstance(inst, Add) and inst.checksum:
        words.append(f"--checksum={inst.checksum}")
    if inst.link:
        words.append("--link")
    words += list(inst.sources)
    words += [f"<<{h.name}={json.dumps(h.content)}" for h in inst.heredocs]
    words.append(inst.dest)
    return words
