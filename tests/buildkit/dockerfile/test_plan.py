"""The planner with hand-built instructions: ARG scoping, expansion, the
stage graph, image config, outline data. The golden tests cover the same
ground through the real parser."""

from __future__ import annotations

from typing import Any

import pytest

from buildkit.dockerfile.calls import list_targets, outline
from buildkit.dockerfile.checks import run_checks
from buildkit.dockerfile.instructions import (
    Arg,
    ArgDecl,
    Cmd,
    Copy,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    From,
    Instruction,
    KeyValue,
    Label,
    Mount,
    Onbuild,
    Run,
    Shell,
    Stage,
    User,
    Workdir,
)
from buildkit.dockerfile.plan import BuildOptions, ImageConfig, StepState, plan_build
from buildkit.dockerfile.syntax import Directives
from buildkit.errors import DockerfileError
from buildkit.platforms import Platform, parse_platform

# ---------------------------------------------------------------- builders


def make(cls: type[Instruction], line: int, original: str = "", **fields: Any) -> Any:
    return cls(line=line, end_line=line, original=original or cls.__name__.upper(), **fields)


def arg(line: int, *decls: str, comment: str = "") -> Arg:
    out = []
    for d in decls:
        name, eq, default = d.partition("=")
        out.append(ArgDecl(name=name, default=default if eq else None))
    return make(Arg, line, "ARG " + " ".join(decls), args=tuple(out), comment=comment)


def env(line: int, *pairs: str) -> Env:
    kvs = tuple(KeyValue(key=p.split("=", 1)[0], value=p.split("=", 1)[1]) for p in pairs)
    return make(Env, line, "ENV " + " ".join(pairs), pairs=kvs)


def run(line: int, text: str, *mounts: str) -> Run:
    parsed = []
    for m in mounts:
        opts = [tuple(o.split("=", 1)) for o in m.split(",")]
        kind = dict(opts)["type"]
        parsed.append(
            Mount(
                type=kind, options=tuple(KeyValue(key=k, value=v) for k, v in opts if k != "type")
            )
        )
    return make(Run, line, "RUN " + text, command=(text,), shell=True, mounts=tuple(parsed))


def frm(line: int, image: str, name: str = "", platform: str = "", comment: str = "") -> From:
    original = "FROM " + (f"--platform={platform} " if platform else "") + image
    if name:
        original += f" AS {name}"
    return make(From, line, original, image=image, name=name, platform=platform, comment=comment)


def dockerfile(
    *stages: tuple[From, list[Instruction]],
    global_args: tuple[Arg, ...] = (),
    check: str = "",
) -> Dockerfile:
    return Dockerfile(
        path="Dockerfile",
        directives=Directives(check=check, check_line=1 if check else 0),
        global_args=global_args,
        stages=tuple(
            Stage(index=i, from_=f, instructions=tuple(insts))
            for i, (f, insts) in enumerate(stages)
        ),
    )


AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
ARMV7 = parse_platform("linux/arm/v7")


def opts(**kw: object) -> BuildOptions:
    kw.setdefault("target_platforms", (AMD64,))
    kw.setdefault("build_platform", AMD64)
    return BuildOptions(**kw)  # type: ignore[arg-type]


def last_state(df, options=None) -> StepState:  # type: ignore[no-untyped-def]
    """The state after the last instruction: the state of a trailing RUN."""
    plans = plan_build(df, options or opts())
    return plans.plans[0].target_stage.steps[-1].state


def value(state: StepState, name: str) -> str | None:
    return dict(state.environ).get(name)


# ---------------------------------------------------------------- ARG scoping


@pytest.mark.parametrize(
    ("global_arg", "stage_arg", "build_args", "want"),
    [
        # a global ARG is not visible in a stage without redeclaration
        ("V=g", None, {}, None),
        # redeclared without a default: the global value
        ("V=g", "V", {}, "g"),
        # redeclared with a default: the stage default
        ("V=g", "V=s", {}, "s"),
        # --build-arg beats both defaults
        ("V=g", "V", {"V": "b"}, "b"),
        ("V=g", "V=s", {"V": "b"}, "b"),
        # global without default, not given: declared but unset
        ("V", "V", {}, None),
        ("V", "V", {"V": "b"}, "b"),
        # no global at all
        (None, "V=s", {}, "s"),
        (None, "V", {"V": "b"}, "b"),
        (None, "V", {}, None),
    ],
)
def test_arg_scoping(global_arg, stage_arg, build_args, want) -> None:  # type: ignore[no-untyped-def]
    globals_ = (arg(1, global_arg),) if global_arg else ()
    insts = [arg(3, stage_arg)] if stage_arg else []
    df = dockerfile((frm(2, "alpine"), [*insts, run(9, "true")]), global_args=globals_)
    assert value(last_state(df, opts(build_args=build_args)), "V") == want


@pytest.mark.parametrize(
    ("platform", "name", "want"),
    [
        (AMD64, "TARGETPLATFORM", "linux/amd64"),
        (ARM64, "TARGETPLATFORM", "linux/arm64"),
        (ARMV7, "TARGETPLATFORM", "linux/arm/v7"),
        (ARMV7, "TARGETOS", "linux"),
        (ARMV7, "TARGETARCH", "arm"),
        (ARMV7, "TARGETVARIANT", "v7"),
        (ARM64, "TARGETVARIANT", ""),
        (ARM64, "BUILDPLATFORM", "linux/amd64"),
        (ARM64, "BUILDARCH", "amd64"),
        (ARM64, "BUILDOS", "linux"),
        (ARM64, "BUILDVARIANT", ""),
    ],
)
def test_predefined_platform_args(platform: Platform, name: str, want: str) -> None:
    df = dockerfile((frm(1, "alpine"), [arg(2, name), run(3, "true")]))
    state = last_state(df, opts(target_platforms=(platform,)))
    assert value(state, name) == want


def test_predefined_args_need_redeclaring() -> None:
    df = dockerfile((frm(1, "alpine"), [run(2, "true")]))
    assert value(last_state(df), "TARGETARCH") is None


def test_global_default_uses_earlier_global_and_predefined() -> None:
    df = dockerfile(
        (frm(3, "img-${IMAGE}"), [arg(4, "IMAGE"), run(5, "true")]),
        global_args=(arg(1, "A=x"), arg(2, "IMAGE=${A}-$TARGETARCH")),
    )
    plans = plan_build(df, opts(target_platforms=(ARM64,)))
    stage = plans.plans[0].target_stage
    assert stage.base.ref == "docker.io/library/img-x-arm64:latest"
    assert value(stage.steps[-1].state, "IMAGE") == "x-arm64"


def test_env_and_arg_of_same_name_later_wins() -> None:
    df = dockerfile((frm(1, "alpine"), [arg(2, "V=arg"), env(3, "V=env"), run(4, "true")]))
    state = last_state(df)
    assert value(state, "V") == "env"
    assert dict(state.env)["V"] == "env"
    assert dict(state.args)["V"] == "arg"


def test_env_uses_old_values_within_one_instruction() -> None:
    df = dockerfile((frm(1, "alpine"), [env(2, "A=old"), env(3, "A=new", "B=$A"), run(4, "true")]))
    state = last_state(df)
    assert (value(state, "A"), value(state, "B")) == ("new", "old")


def test_args_and_env_are_inherited_by_a_child_stage() -> None:
    df = dockerfile(
        (frm(1, "alpine", "parent"), [arg(2, "FOO=123"), env(3, "E=1")]),
        (frm(4, "parent"), [run(5, "true")]),
        (frm(6, "alpine", "other"), [run(7, "true")]),
    )
    other = plan_build(df, opts()).plans[0]
    assert other.target == 2
    assert value(other.target_stage.steps[-1].state, "FOO") is None
    child = plan_build(df, opts(target="")).plans[0]
    df2 = dockerfile(*[(s.from_, list(s.instructions)) for s in df.stages[:2]])
    state = last_state(df2)
    assert (value(state, "FOO"), value(state, "E")) == ("123", "1")
    assert child.stages[0].index == 2  # "other" does not need "parent"


# ---------------------------------------------------------------- base image config


def test_image_config_seeds_the_stage() -> None:
    config = ImageConfig(
        env=("PATH=/opt/bin", "LANG=C.UTF-8"),
        working_dir="/srv",
        user="app",
        shell=("/bin/bash", "-c"),
        digest="sha256:" + "b" * 64,
    )
    seen: list[tuple[str, Platform]] = []

    def resolve(ref: str, platform: Platform) -> ImageConfig:
        seen.append((ref, platform))
        return config

    df = dockerfile((frm(1, "python:3.12"), [make(Workdir, 2, path="app"), run(3, "true")]))
    plan = plan_build(df, opts(target_platforms=(ARM64,), resolve_image=resolve)).plans[0]
    stage = plan.target_stage
    state = stage.steps[-1].state
    assert seen == [("docker.io/library/python:3.12", ARM64)]
    assert stage.base.digest == config.digest
    assert dict(state.env) == {"PATH": "/opt/bin", "LANG": "C.UTF-8"}
    assert (state.workdir, state.user, state.shell) == ("/srv/app", "app", ("/bin/bash", "-c"))


def test_unknown_image_gets_default_path_and_shell() -> None:
    state = last_state(dockerfile((frm(1, "alpine"), [run(2, "true")])))
    assert dict(state.env) == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    }
    assert (state.workdir, state.user, state.shell) == ("/", "", ("/bin/sh", "-c"))


def test_final_config() -> None:
    df = dockerfile(
        (
            frm(1, "alpine"),
            [
                make(Label, 2, pairs=()),
                make(Expose, 3, ports=("80", "53/UDP")),
                make(User, 4, user="nobody"),
                make(Workdir, 5, path="/a"),
                make(Workdir, 6, path="b/../c"),
                make(Cmd, 7, command=("serve",), shell=True),
                make(Shell, 8, shell=("/bin/bash", "-ec")),
                make(Entrypoint, 9, command=("run",), shell=True),
                make(Onbuild, 10, expression="RUN echo child"),
            ],
        )
    )
    config = plan_build(df, opts()).plans[0].target_stage.config
    assert config.exposed_ports == ("80/tcp", "53/udp")
    assert (config.user, config.working_dir) == ("nobody", "/a/c")
    assert config.cmd == ("/bin/sh", "-c", "serve")  # CMD set in this stage: kept
    assert config.entrypoint == ("/bin/bash", "-ec", "run")
    assert config.on_build == ("RUN echo child",)


def test_entrypoint_resets_inherited_cmd() -> None:
    df = dockerfile(
        (frm(1, "alpine", "base"), [make(Cmd, 2, command=("x",), shell=False)]),
        (frm(3, "base"), [make(Entrypoint, 4, command=("y",), shell=False)]),
    )
    config = plan_build(df, opts()).plans[0].target_stage.config
    assert (config.cmd, config.entrypoint) == (None, ("y",))


# ---------------------------------------------------------------- stage graph


def test_levels_and_needed_stages() -> None:
    df = dockerfile(
        (frm(1, "alpine", "a"), []),
        (frm(2, "alpine", "b"), []),
        (frm(3, "alpine", "unused"), []),
        (frm(4, "a", "c"), [make(Copy, 5, sources=("/x",), dest="/", from_="b")]),
        (frm(6, "scratch"), [make(Copy, 7, sources=("/x",), dest="/", from_="C")]),
    )
    plan = plan_build(df, opts()).plans[0]
    assert [s.index for s in plan.stages] == [0, 1, 3, 4]
    assert plan.levels == ((0, 1), (3,), (4,))
    assert plan.stage(3).stage_dependencies == (0, 1)
    assert plan.stage(4).base.kind == "scratch"


def test_copy_from_image_is_pulled_for_the_target_platform() -> None:
    df = dockerfile(
        (
            frm(1, "golang", platform="$BUILDPLATFORM"),
            [make(Copy, 2, sources=("/x",), dest="/", from_="nginx:1.25")],
        )
    )
    plan = plan_build(df, opts(target_platforms=(ARM64,))).plans[0]
    assert plan.target_stage.platform == AMD64
    assert plan.pulls == (
        ("docker.io/library/golang:latest", AMD64),
        ("docker.io/library/nginx:1.25", ARM64),
    )


def test_stage_from_stage_keeps_base_platform() -> None:
    df = dockerfile(
        (frm(1, "alpine", "tool", platform="$BUILDPLATFORM"), []),
        (frm(2, "tool"), []),
    )
    plan = plan_build(df, opts(target_platforms=(ARM64,))).plans[0]
    assert plan.target_stage.platform == AMD64


@pytest.mark.parametrize(
    ("stages", "target", "line", "fragment"),
    [
        ([(frm(1, "alpine", "a"), [])], "b", 0, 'target stage "b" could not be found'),
        (
            [(frm(1, "alpine", "a"), [make(Copy, 2, sources=("/",), dest="/", from_="a")])],
            "",
            2,
            "circular dependency detected on stage: a",
        ),
        (
            [(frm(1, "alpine"), [make(Copy, 2, sources=("/",), dest="/", from_="0")])],
            "",
            2,
            "circular dependency detected on stage: stage-0",
        ),
        (
            [(frm(1, "alpine"), [make(Copy, 2, sources=("/",), dest="/", from_="-1")])],
            "",
            2,
            "invalid stage index -1",
        ),
        ([(frm(1, "alpine", platform="windows/z80"), [])], "", 1, "failed to parse platform"),
        ([(frm(1, "alpine", platform="$NOPE"), [])], "", 1, "empty platform value"),
        ([(frm(1, "${NOPE}"), [])], "", 1, "should not be blank"),
        ([(frm(1, "bad image"), [])], "", 1, "failed to parse stage name"),
        (
            [(frm(1, "alpine"), [run(2, "x", "type=bind,from=Bad Name,target=/x")])],
            "",
            2,
            "failed to parse stage name",
        ),
        (
            [(frm(1, "alpine"), [env(2, "X=${Y:?is required}")])],
            "",
            2,
            "is required",
        ),
    ],
)
def test_errors(stages, target, line, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DockerfileError) as info:
        plan_build(dockerfile(*stages), opts(target=target))
    assert fragment in str(info.value)
    assert info.value.line == line
    assert info.value.path == "Dockerfile"


def test_expansion_error_names_the_instruction() -> None:
    df = dockerfile((frm(1, "alpine"), [env(2, "X=${Y:?is required}")]))
    with pytest.raises(DockerfileError) as info:
        plan_build(df, opts())
    assert info.value.instruction == "ENV"
    assert str(info.value).startswith("Dockerfile:2: ENV: failed to process")


def test_unknown_target_lists_stages() -> None:
    df = dockerfile((frm(1, "alpine", "build"), []), (frm(2, "alpine", "app"), []))
    with pytest.raises(DockerfileError, match="available stages: build, app"):
        plan_build(df, opts(target="nope"))


def test_no_stages() -> None:
    with pytest.raises(DockerfileError, match="no stages"):
        plan_build(dockerfile(), opts())


# ---------------------------------------------------------------- build args and outline


def test_unused_build_args() -> None:
    df = dockerfile((frm(2, "alpine"), [arg(3, "USED")]), global_args=(arg(1, "G"),))
    plans = plan_build(
        df,
        opts(
            build_args={"USED": "1", "G": "1", "EXTRA": "1", "HTTP_PROXY": "x", "TARGETARCH": "y"}
        ),
    )
    assert plans.unused_build_args == ("EXTRA",)
    assert plans.messages[-1] == "[Warning] One or more build-args [EXTRA] were not consumed"


def test_outline_args_secrets_ssh() -> None:
    df = dockerfile(
        (
            frm(4, "alpine:${TAG}"),
            [
                arg(5, "MODE=dev", comment="MODE build mode: dev or prod"),
                arg(6, "NO_DEFAULT"),
                run(7, "x", "type=secret,id=npmrc,required=true"),
                run(8, "x", "type=secret,target=/run/secrets/token"),
                run(9, "x", "type=ssh"),
            ],
        ),
        global_args=(
            arg(1, "REG=docker.io", comment="REG the registry"),
            arg(2, "TAG=${REG}-1"),
            arg(3, "OTHER=1"),
        ),
    )
    out = outline(df, opts(build_args={"MODE": "prod"}))
    args = {a.name: a for a in out.args}
    # OTHER is not used; NO_DEFAULT is declared in the stage, so listed, without a value
    assert list(args) == ["REG", "TAG", "MODE", "NO_DEFAULT"]
    assert args["NO_DEFAULT"].value is None
    assert args["REG"].description == "the registry"
    assert args["TAG"].value == "docker.io-1"
    assert (args["MODE"].value, args["MODE"].default) == ("prod", "dev")
    assert args["MODE"].description == "build mode: dev or prod"
    assert [(s.id, s.required) for s in out.secrets] == [("npmrc", True), ("token", False)]
    assert [s.id for s in out.ssh] == ["default"]


def test_list_targets() -> None:
    df = dockerfile(
        (frm(1, "golang", "build", comment="build compiles the app"), []),
        (frm(2, "alpine", comment="not a doc comment"), []),
    )
    targets = list_targets(df)
    assert [(t.name, t.line, t.default) for t in targets] == [("build", 1, False), ("", 2, True)]
    assert targets[0].description == "compiles the app"
    assert targets[1].description == ""


def test_duplicate_stage_name() -> None:
    # hand-built: the parser rejects duplicates, BuildKit only warns
    df = dockerfile((frm(1, "alpine", "a"), []), (frm(2, "alpine", "A"), []))
    warnings = run_checks(df, opts())
    assert ("DuplicateStageName", 2, 'Duplicate stage name "a", stage names should be unique') in [
        (w.rule, w.line, w.message) for w in warnings
    ]
