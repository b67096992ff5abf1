"""The node being parsed and what every instruction parser shares.

`Context` (the file, the frontend version, the escape character), `_Request`
(one node, whose errors carry the file, line and keyword) and the small
helpers the parsers beside this module use: reading flag values (`_str`,
`_list`) and the command of RUN/CMD/ENTRYPOINT (`_command`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buildkit.dockerfile.flags import FlagSpec, FlagValue, Frontend, parse_flags
from buildkit.dockerfile.syntax import Node
from buildkit.errors import DockerfileError


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


def _command(req: _Request) -> tuple[tuple[str, ...], bool]:
    """(words, shell form?) of RUN/CMD/ENTRYPOINT."""
    node = req.node
    if node.json is not None:
        return node.json, False
    if not node.args:
        raise req.at_least_one()
    return (node.args,), True
