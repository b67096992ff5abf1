"""Typed instructions: nodes → one frozen dataclass per instruction.

The second of the frontend's three steps. Every instruction keeps its source
location (`line`, `end_line`) and holds its words *unexpanded*: the planner
expands them per stage, with the ARG and ENV values in scope there, because the
same instruction expands differently for each platform.

Flags are validated here (unknown flag, missing value, a flag the instruction
does not take, a `-labs` flag without a `-labs` syntax); values are kept as
written, for the planner to expand.

`parse_instructions(parsed)` turns a ParsedDockerfile into a Dockerfile:
global ARGs (before the first FROM) and the stages; `parse_dockerfile(text)`
does both steps. Either raises DockerfileError, and nothing else, for any
input. The per-instruction parsers live in `commands.py`, flags in `flags.py`,
`--mount` specs in `mounts.py`.

Notes for the planner:
- `From.name` is the AS name as written; BuildKit compares stage names
  case-insensitively (it lower-cases them), so compare with `.lower()`.
- `Instruction.comment` is every comment line above the instruction joined
  with "\n"; BuildKit's `--call outline/targets` only shows a comment line
  that starts with the ARG's or stage's name (`# build compiles the app`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildkit.dockerfile.syntax import Directives, Heredoc, ParsedDockerfile, parse
from buildkit.errors import DockerfileError


@dataclass(frozen=True, kw_only=True)
class Instruction:
    line: int
    end_line: int
    original: str
    # The comment lines directly above the instruction, "#" stripped: the
    # description `--call outline` shows for an ARG and `--call targets` for
    # a stage.
    comment: str = ""

    @property
    def keyword(self) -> str:
        """The instruction as Docker names it: `RUN`, `COPY`, ..."""
        return type(self).__name__.upper()


@dataclass(frozen=True, kw_only=True)
class KeyValue:
    key: str
    value: str


@dataclass(frozen=True, kw_only=True)
class ArgDecl:
    """One name of an ARG instruction; `default` is None for `ARG NAME`."""

    name: str
    default: str | None = None


# ---------------------------------------------------------------- stages


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    image: str  # unexpanded: "golang:${GO}", "scratch", "build"
    name: str = ""  # the AS name as written ("" when unnamed)
    platform: str = ""  # unexpanded --platform value, "" when absent


# ---------------------------------------------------------------- metadata


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    """Keys and values are raw words: quotes and escapes are still in them
    (`ENV A="a b"` has value `"a b"`), for the expander to remove, as
    BuildKit's shell lexer does. `legacy` marks the `ENV KEY value` form."""

    pairs: tuple[KeyValue, ...]
    legacy: bool = False


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    """Raw words like Env; `legacy` marks the `LABEL key value` form."""

    pairs: tuple[KeyValue, ...]
    legacy: bool = False


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    name: str


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    args: tuple[ArgDecl, ...]


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    ports: tuple[str, ...]  # unexpanded words: "80", "53/udp", "${PORT}"


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    user: str


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    signal: str


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    shell: tuple[str, ...]  # JSON form only


@dataclass(frozen=True, kw_only=True)
class Cmd(Instruction):
    command: tuple[str, ...]  # exec form, or (text,) with shell=True
    shell: bool  # shell form: run as SHELL + [text]


@dataclass(frozen=True, kw_only=True)
class Entrypoint(Instruction):
    command: tuple[str, ...]
    shell: bool


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """HEALTHCHECK NONE has `test == ("NONE",)`; otherwise test is
    `("CMD", ...)` or `("CMD-SHELL", text)`, as in the image config.
    Durations are kept as written ("30s"); "" means unset."""

    test: tuple[str, ...]
    interval: str = ""
    timeout: str = ""
    start_period: str = ""
    start_interval: str = ""
    retries: str = ""


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    expression: str  # the trigger as written: "RUN echo hi"


# ---------------------------------------------------------------- filesystem


@dataclass(frozen=True, kw_only=True)
class Mount:
    """One `RUN --mount=...`: `type` plus the other options as written.

    `options` keeps every key=value except type, unexpanded, in order, with
    keys lower-cased and their aliases resolved (`dst`/`destination` →
    `target`, `src` → `source`, `ro`/`readonly` → `readonly=true`,
    `rw`/`readwrite` → `readwrite=true`).
    """

    type: str  # bind | cache | tmpfs | secret | ssh
    options: tuple[KeyValue, ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        for kv in self.options:
            if kv.key == key:
                return kv.value
        return default


@dataclass(frozen=True, kw_only=True)
class Run(Instruction):
    command: tuple[str, ...]  # exec form words, or (text,) with shell=True
    shell: bool
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: str = ""  # "", default | none | host
    security: str = ""  # "", sandbox | insecure


@dataclass(frozen=True, kw_only=True)
class CopyBase(Instruction):
    sources: tuple[str, ...]  # unexpanded; heredoc names excluded
    dest: str
    heredocs: tuple[Heredoc, ...] = ()  # inline files, named by Heredoc.name
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Copy(CopyBase):
    from_: str = ""  # --from, unexpanded: a stage name, an index or an image
    parents: bool = False


@dataclass(frozen=True, kw_only=True)
class Add(CopyBase):
    checksum: str = ""
    keep_git_dir: bool = False
    unpack: bool | None = None  # --unpack; None when absent


# ---------------------------------------------------------------- the file


@dataclass(frozen=True, kw_only=True)
class Stage:
    """Everything from one FROM up to the next."""

    index: int
    from_: From
    instructions: tuple[Instruction, ...] = ()

    @property
    def name(self) -> str:
        return self.from_.name


@dataclass(frozen=True, kw_only=True)
class Dockerfile:
    path: str
    directives: Directives
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    warnings: tuple[tuple[int, str], ...] = field(default=())


# ---------------------------------------------------------------- parsing


def parse_instructions(parsed: ParsedDockerfile) -> Dockerfile:
    """Type every node and group them into global ARGs and stages.

    Raises DockerfileError for an unsupported `# syntax=` frontend, any bad
    instruction, an instruction other than ARG before the first FROM, and a
    file without FROM. A repeated stage name is left to the checks
    (BuildKit's DuplicateStageName rule), as BuildKit does.
    """
    from buildkit.dockerfile.commands import Context, parse_node
    from buildkit.dockerfile.flags import parse_frontend

    path = parsed.path
    ctx = Context(
        path=path,
        frontend=parse_frontend(parsed.directives, path),
        escape=parsed.directives.escape,
    )
    global_args: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for node in parsed.nodes:
        instruction = parse_node(node, ctx)
        if isinstance(instruction, From):
            stages.append((instruction, []))
        elif stages:
            stages[-1][1].append(instruction)
        elif isinstance(instruction, Arg):
            global_args.append(instruction)
        else:
            raise DockerfileError(
                "no build stage in current context: only ARG may come before the first FROM",
                path=path,
                line=instruction.line,
                instruction=instruction.keyword,
            )
    if not stages:
        what = "has no instructions" if not parsed.nodes else "has no FROM instruction"
        raise DockerfileError(
            f"the Dockerfile {what}: a build needs at least one FROM <image>", path=path
        )
    return Dockerfile(
        path=path,
        directives=parsed.directives,
        global_args=tuple(global_args),
        stages=tuple(
            Stage(index=i, from_=from_, instructions=tuple(body))
            for i, (from_, body) in enumerate(stages)
        ),
        warnings=parsed.warnings,
    )


def parse_dockerfile(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Both steps: text → ParsedDockerfile → Dockerfile."""
    return parse_instructions(parse(text, path))
