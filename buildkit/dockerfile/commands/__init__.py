"""One parser per instruction: Node → typed Instruction, as BuildKit's
instructions package parses them (arguments, flags, and their messages).

Words stay unexpanded and keep their quotes: `ENV A="a b"` holds the value
`"a b"`, which the expander turns into `a b`, exactly as BuildKit keeps raw
words in its AST and lets its shell lexer drop the quotes during expansion.

The parsers live by kind: `metadata` (FROM and the instructions that set
configuration), `healthcheck`, and `filesystem` (RUN, COPY, ADD), on top of
`request` (the node being parsed). This module holds the dispatch table,
`parse_node`, and re-exports everything public.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from buildkit.dockerfile.commands.filesystem import (
    ADD_FLAGS,
    COPY_FLAGS,
    RUN_FLAGS,
    parse_add,
    parse_copy,
    parse_run,
)
from buildkit.dockerfile.commands.healthcheck import HEALTHCHECK_FLAGS, parse_healthcheck
from buildkit.dockerfile.commands.metadata import (
    FROM_FLAGS,
    parse_arg,
    parse_cmd,
    parse_entrypoint,
    parse_env,
    parse_expose,
    parse_from,
    parse_label,
    parse_maintainer,
    parse_onbuild,
    parse_shell,
    parse_stopsignal,
    parse_user,
    parse_volume,
    parse_workdir,
)
from buildkit.dockerfile.commands.request import Context, _Request
from buildkit.dockerfile.instructions import Instruction
from buildkit.dockerfile.syntax import Node

__all__ = [
    "ADD_FLAGS",
    "COPY_FLAGS",
    "FROM_FLAGS",
    "HEALTHCHECK_FLAGS",
    "PARSERS",
    "RUN_FLAGS",
    "Context",
    "parse_add",
    "parse_arg",
    "parse_cmd",
    "parse_copy",
    "parse_entrypoint",
    "parse_env",
    "parse_expose",
    "parse_from",
    "parse_healthcheck",
    "parse_label",
    "parse_maintainer",
    "parse_node",
    "parse_onbuild",
    "parse_run",
    "parse_shell",
    "parse_stopsignal",
    "parse_user",
    "parse_volume",
    "parse_workdir",
]

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
