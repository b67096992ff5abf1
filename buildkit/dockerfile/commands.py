"""One parser per instruction: Node → typed Instruction, as BuildKit's
instructions package parses them (arguments, flags, and their messages).

Words stay unexpanded and keep their quotes: `ENV A="a b"` holds the value
`"a b"`, which the expander turns into `a b`, exactly as BuildKit keeps raw
words in its AST and lets its shell lexer drop the quotes during expansion.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from buildkit.dockerfile.durations import parse_go_duration
from buildkit.dockerfile.flags import FlagSpec, FlagValue, Frontend, parse_flags
from buildkit.dockerfile.heredoc import parse_heredoc_word
from buildkit.dockerfile.instructions import (
    Add,
    Arg,
    ArgDecl,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Mount,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from buildkit.dockerfile.mounts import MountSpecError, parse_mount
from buildkit.dockerfile.syntax import Heredoc, Node, split_first_word
from buildkit.dockerfile.words import parse_words, split_whitespace
from buildkit.errors import DockerfileError

_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
_MIN_DURATION_NS = 1_000_000  # Docker's container.MinimumDuration, 1ms

RUN_FLAGS = (
    FlagSpec("mount", "strings", labs_since=(1, 0), stable_since=(1, 2)),
    FlagSpec("network", "string", labs_since=(1, 0), stable_since=(1, 3)),
    FlagSpec("security", "string", labs_since=(1, 0), stable_since=(1, 20)),
)
FROM_FLAGS = (FlagSpec("platform", "string"),)
_COMMON_COPY_FLAGS = (
    FlagSpec("chown", "string"),
    FlagSpec("chmod", "string", stable_since=(1, 2)),
    FlagSpec("link", "bool", labs_since=(1, 3), stable_since=(1, 4)),
    FlagSpec("exclude", "strings", labs_since=(1, 7), stable_since=(1, 19)),
)
COPY_FLAGS = (
    *_COMMON_COPY_FLAGS,
    FlagSpec("from", "string"),
    FlagSpec("parents", "bool", labs_since=(1, 7), stable_since=(1, 20)),
)
ADD_FLAGS = (
    *_COMMON_COPY_FLAGS,
    FlagSpec("checksum", "string", labs_since=(1, 5), stable_since=(1, 6)),
    FlagSpec("keep-git-dir", "bool", labs_since=(1, 5), stable_since=(1, 6)),
    FlagSpec("unpack", "bool", stable_since=(1, 17)),
)
HEALTHCHECK_FLAGS = (
    FlagSpec("interval", "string"),
    FlagSpec("timeout", "string"),
    FlagSpec("start-period", "string"),
    FlagSpec("start-interval", "string", stable_since=(1, 6)),
    FlagSpec("retries", "string"),
)


@dataclass(frozen=True)
class Context:
    """What every instruction parser needs besides its node."""

    path: str
    frontend: Frontend
    escape: str


class _Request:
    """One node being parsed: its errors carry the file, line and keyword."""

    def __init__(self, node: Node, ctx: Context) -> None:
        self.node = node
        self.ctx = ctx
        self.keyword = node.keyword.upper()

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(
            message, path=self.ctx.path, line=self.node.start_line, instruction=self.keyword
        )

    def flags(self, *specs: FlagSpec) -> dict[str, FlagValue]:
        return parse_flags(self.node, specs, self.ctx.frontend, self.ctx.path)

    def base(self) -> dict[str, Any]:
        return {
            "line": self.node.start_line,
            "end_line": self.node.end_line,
            "original": self.node.original,
            "comment": "\n".join(self.node.comments),
        }

    def at_least_one(self) -> DockerfileError:
        return self.error(f"{self.keyword} requires at least one argument")

    def exactly_one(self) -> DockerfileError:
        return self.error(f"{self.keyword} requires exactly one argument")


def _str(values: dict[str, FlagValue], name: str) -> str:
    value = values.get(name, "")
    return value if isinstance(value, str) else ""


def _list(values: dict[str, FlagValue], name: str) -> tuple[str, ...]:
    value = values.get(name, [])
    return tuple(value) if isinstance(value, list) else ()


# ---------------------------------------------------------------- stages


def parse_from(req: _Request) -> From:
    args = split_whitespace(req.node.args)
    flags = req.flags(*FROM_FLAGS)
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2]
        if not _STAGE_NAME.fullmatch(name.lower()):
            raise req.error(
                f"invalid name for build stage: {name!r}, "
                "name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise req.error(
            "FROM requires either one or three arguments: "
            "FROM [--platform=<platform>] <image> [AS <name>]"
        )
    return From(**req.base(), image=args[0], name=name, platform=_str(flags, "platform"))


# ---------------------------------------------------------------- metadata


def _name_values(req: _Request) -> tuple[tuple[KeyValue, ...], bool]:
    """ENV/LABEL pairs (BuildKit's parseNameVal) and whether the legacy
    `KEY value` form was used. Keys and values stay raw (quotes kept)."""
    req.flags()
    words = parse_words(req.node.args, req.ctx.escape)
    if not words:
        raise req.at_least_one()
    if "=" not in words[0]:
        parts = split_whitespace(req.node.args, maxsplit=1)
        if len(parts) < 2:
            raise req.error(
                f"{req.keyword} must have two arguments: {req.keyword} <key>=<value> ..."
            )
        return (KeyValue(key=parts[0], value=parts[1]),), True
    pairs = []
    for word in words:
        key, has_value, value = word.partition("=")
        if not has_value:
            raise req.error(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        if key == "":
            raise req.error(f"{req.keyword} names can not be blank")
        pairs.append(KeyValue(key=key, value=value))
    return tuple(pairs), False


def parse_env(req: _Request) -> Env:
    pairs, legacy = _name_values(req)
    return Env(**req.base(), pairs=pairs, legacy=legacy)


def parse_label(req: _Request) -> Label:
    pairs, legacy = _name_values(req)
    return Label(**req.base(), pairs=pairs, legacy=legacy)


def parse_maintainer(req: _Request) -> Maintainer:
    req.flags()
    if not req.node.args:
        raise req.exactly_one()
    return Maintainer(**req.base(), name=req.node.args)


def parse_arg(req: _Request) -> Arg:
    req.flags()
    words = parse_words(req.node.args, req.ctx.escape)
    if not words:
        raise req.at_least_one()
    decls = []
    for word in words:
        name, has_value, value = word.partition("=")
        if name == "":
            raise req.error(f"ARG names can not be blank: {word!r}")
        decls.append(ArgDecl(name=name, default=value if has_value else None))
    return Arg(**req.base(), args=tuple(decls))


def parse_expose(req: _Request) -> Expose:
    req.flags()
    ports = split_whitespace(req.node.args)
    if not ports:
        raise req.at_least_one()
    return Expose(**req.base(), ports=tuple(ports))


def parse_volume(req: _Request) -> Volume:
    req.flags()
    node = req.node
    paths = list(node.json) if node.json is not None else split_whitespace(node.args)
    if not paths:
        raise req.at_least_one()
    if any(path.strip() == "" for path in paths):
        raise req.error("VOLUME specified can not be an empty string")
    return Volume(**req.base(), paths=tuple(paths))


def parse_user(req: _Request) -> User:
    req.flags()
    if not req.node.args:
        raise req.exactly_one()
    return User(**req.base(), user=req.node.args)


def parse_workdir(req: _Request) -> Workdir:
    req.flags()
    if not req.node.args:
        raise req.exactly_one()
    return Workdir(**req.base(), path=req.node.args)


def parse_stopsignal(req: _Request) -> StopSignal:
    req.flags()
    if not req.node.args:
        raise req.exactly_one()
    return StopSignal(**req.base(), signal=req.node.args)


def parse_shell(req: _Request) -> Shell:
    req.flags()
    node = req.node
    if node.json is None:
        raise req.error(
            'SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]'
            f", not {node.args!r}"
        )
    if not node.json:
        raise req.at_least_one()
    return Shell(**req.base(), shell=node.json)


def _command(req: _Request) -> tuple[tuple[str, ...], bool]:
    """(words, shell form?) of RUN/CMD/ENTRYPOINT."""
    node = req.node
    if node.json is not None:
        return node.json, False
    if not node.args:
        raise req.at_least_one()
    return (node.args,), True


def parse_cmd(req: _Request) -> Cmd:
    req.flags()
    command, shell = _command(req)
    return Cmd(**req.base(), command=command, shell=shell)


def parse_entrypoint(req: _Request) -> Entrypoint:
    req.flags()
    command, shell = _command(req)
    return Entrypoint(**req.base(), command=command, shell=shell)


def parse_healthcheck(req: _Request) -> Healthcheck:
    kind, rest = split_first_word(req.node.args)
    kind = kind.upper()
    if kind == "":
        raise req.at_least_one()
    if kind == "NONE":
        # As BuildKit: flags are not looked at for NONE.
        if rest:
            raise req.error("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(**req.base(), test=("NONE",))
    flags = req.flags(*HEALTHCHECK_FLAGS)
    if kind != "CMD":
        raise req.error(f"Unknown type {kind!r} in HEALTHCHECK (try CMD or NONE)")
    if req.node.json is not None:
        test: tuple[str, ...] = ("CMD", *req.node.json)
    else:
        test = ("CMD-SHELL", rest)
    if len(test) == 1 or test == ("CMD-SHELL", ""):
        raise req.error("Missing command after HEALTHCHECK CMD")
    durations: dict[str, str] = {}
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = _str(flags, name)
        if value:
            _check_duration(req, name, value)
        durations[name.replace("-", "_")] = value
    retries = _str(flags, "retries")
    if retries:
        if not re.fullmatch(r"[+-]?[0-9]{1,10}", retries) or abs(int(retries)) > 2**31 - 1:
            raise req.error(f"--retries must be a whole number, not {retries!r}")
        if int(retries) < 0:
            raise req.error(f"--retries cannot be negative ({int(retries)})")
    return Healthcheck(
        **req.base(),
        test=test,
        interval=durations["interval"],
        timeout=durations["timeout"],
        start_period=durations["start_period"],
        start_interval=durations["start_interval"],
        retries=retries,
    )


def _check_duration(req: _Request, name: str, value: str) -> None:
    try:
        nanoseconds = parse_go_duration(value)
    except ValueError as exc:
        raise req.error(
            f"invalid --{name} {value!r}: expected a duration such as 30s, 1m30s or 500ms "
            f"(units ns, us, ms, s, m, h): {exc}"
        ) from None
    if nanoseconds != 0 and nanoseconds < _MIN_DURATION_NS:
        raise req.error(f"--{name} cannot be less than 1ms (got {value!r})")


def parse_onbuild(req: _Request) -> Onbuild:
    req.flags()
    node = req.node
    if not node.args:
        raise req.at_least_one()
    trigger = split_whitespace(node.args, maxsplit=1)[0].upper()
    if trigger == "ONBUILD":
        raise req.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("FROM", "MAINTAINER"):
        raise req.error(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    for heredoc in node.heredocs:
        expression += "\n" + heredoc.content + heredoc.name
    return Onbuild(**req.base(), expression=expression)


# ---------------------------------------------------------------- filesystem


def parse_run(req: _Request) -> Run:
    flags = req.flags(*RUN_FLAGS)
    command, shell = _command(req)
    if not command:
        raise req.at_least_one()  # RUN [] runs nothing
    mounts = []
    for spec in _list(flags, "mount"):
        try:
            mount_type, options = parse_mount(spec)
        except MountSpecError as exc:
            raise req.error(f"invalid --mount={spec}: {exc}") from None
        mounts.append(
            Mount(type=mount_type, options=tuple(KeyValue(key=k, value=v) for k, v in options))
        )
    network = _str(flags, "network")
    if network and "$" not in network and network not in ("default", "none", "host"):
        raise req.error(f"unsupported network mode {network!r} (expected default, none or host)")
    security = _str(flags, "security")
    if security and "$" not in security and security not in ("sandbox", "insecure"):
        raise req.error(f"unsupported security mode {security!r} (expected sandbox or insecure)")
    return Run(
        **req.base(),
        command=command,
        shell=shell,
        heredocs=req.node.heredocs,
        mounts=tuple(mounts),
        network=network,
        security=security,
    )


def _sources_and_dest(req: _Request) -> dict[str, Any]:
    node = req.node
    words = list(node.json) if node.json is not None else split_whitespace(node.args)
    if len(words) < 2:
        raise req.error(
            f"{req.keyword} requires at least two arguments, but only {len(words)} "
            "was provided. Destination could not be determined."
        )
    *sources, dest = words
    inline = node.json is None
    if inline and parse_heredoc_word(dest) is not None:
        raise req.error(f"{req.keyword} cannot accept a heredoc as a destination")
    pending = list(node.heredocs)
    paths: list[str] = []
    files: list[Heredoc] = []
    for source in sources:
        if inline and parse_heredoc_word(source) is not None:
            if not pending:
                raise req.error(f"no heredoc body found for source {source!r}")
            files.append(pending.pop(0))
        else:
            paths.append(source)
    return {"sources": tuple(paths), "dest": dest, "heredocs": tuple(files)}


def _copy_common(flags: dict[str, FlagValue]) -> dict[str, Any]:
    return {
        "chown": _str(flags, "chown"),
        "chmod": _str(flags, "chmod"),
        "link": flags.get("link") is True,
        "excludes": _list(flags, "exclude"),
    }


def parse_copy(req: _Request) -> Copy:
    parts = _sources_and_dest(req)
    flags = req.flags(*COPY_FLAGS)
    return Copy(
        **req.base(),
        **parts,
        **_copy_common(flags),
        from_=_str(flags, "from"),
        parents=flags.get("parents") is True,
    )


def parse_add(req: _Request) -> Add:
    parts = _sources_and_dest(req)
    flags = req.flags(*ADD_FLAGS)
    unpack = flags.get("unpack")
    return Add(
        **req.base(),
        **parts,
        **_copy_common(flags),
        checksum=_str(flags, "checksum"),
        keep_git_dir=flags.get("keep-git-dir") is True,
        unpack=unpack if isinstance(unpack, bool) else None,
    )


# ---------------------------------------------------------------- dispatch

PARSERS: dict[str, Callable[[_Request], Instruction]] = {
    "add": parse_add,
    "arg": parse_arg,
    "cmd": parse_cmd,
    "copy": parse_copy,
    "entrypoint": parse_entrypoint,
    "env": parse_env,
    "expose": parse_expose,
    "from": parse_from,
    "healthcheck": parse_healthcheck,
    "label": parse_label,
    "maintainer": parse_maintainer,
    "onbuild": parse_onbuild,
    "run": parse_run,
    "shell": parse_shell,
    "stopsignal": parse_stopsignal,
    "user": parse_user,
    "volume": parse_volume,
    "workdir": parse_workdir,
}


def parse_node(node: Node, ctx: Context) -> Instruction:
    """The typed instruction for `node`; DockerfileError if it is not one."""
    req = _Request(node, ctx)
    parser = PARSERS.get(node.keyword)
    if parser is None:
        message = f"unknown instruction: {req.keyword}"
        close = difflib.get_close_matches(node.keyword, PARSERS, n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0].upper()}?)"
        raise req.error(message)
    return parser(req)
