"""Parsers of the instructions that start a stage or set its metadata.

FROM, and the ones that change the image configuration or the build's
variables without touching the filesystem: ENV, LABEL, MAINTAINER, ARG,
EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, SHELL, CMD, ENTRYPOINT and ONBUILD.
HEALTHCHECK has its own module.
"""

from __future__ import annotations

import re

from buildkit.dockerfile.commands.request import _command, _Request, _str
from buildkit.dockerfile.flags import FlagSpec
from buildkit.dockerfile.instructions import (
    Arg,
    ArgDecl,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    From,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from buildkit.dockerfile.words import parse_words, split_whitespace, split_whitespace_braced

_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
FROM_FLAGS = (FlagSpec("platform", "string"),)
FROM_ARITY = (
    "FROM requires either one or three arguments: FROM [--platform=<platform>] <image> [AS <name>]"
)


# ---------------------------------------------------------------- stages


def parse_from(req: _Request) -> From:
    args = split_whitespace(req.node.args)
    if not _from_shape(args) and "${" in req.node.args:
        # `FROM ${IMAGE:?msg with blanks}`: keep the braces whole so the
        # expansion error (or, once it expands, the arity error) is reported
        # when stages.py expands the base name.
        braced = split_whitespace_braced(req.node.args, req.ctx.escape)
        if len(braced) == 1 or (len(braced) == 3 and braced[1].lower() == "as"):
            args = braced
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
        raise req.error(FROM_ARITY)
    return From(**req.base(), image=args[0], name=name, platform=_str(flags, "platform"))


def _from_shape(args: list[str]) -> bool:
    return len(args) == 1 or (len(args) == 3 and args[1].lower() == "as")


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


def parse_cmd(req: _Request) -> Cmd:
    req.flags()
    command, shell = _command(req)
    return Cmd(**req.base(), command=command, shell=shell)


def parse_entrypoint(req: _Request) -> Entrypoint:
    req.flags()
    command, shell = _command(req)
    return Entrypoint(**req.base(), command=command, shell=shell)


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
