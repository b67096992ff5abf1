"""Instruction flags (`--from=build`, `--link`) and the syntax frontend that gates them.

Flags follow BuildKit's BFlags: a bool flag is `--link`, `--link=true` or
`--link=false`; a string flag needs `=value`; a strings flag (`--mount`,
`--exclude`) may repeat; any other flag repeated is an error. Names are
case-sensitive.

A flag also has the Dockerfile frontend versions that know it: `labs_since`
(first `-labs` release) and `stable_since` (first stable release, None while
it is labs-only). `# syntax=docker/dockerfile:1.7` pins the 1.7 frontend, so a
flag stable only since 1.19 needs `-labs` there; `:1`, `:1-labs` or no syntax
directive mean the latest release.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from buildkit.dockerfile.syntax import Directives, Node
from buildkit.errors import DockerfileError

Version = tuple[int, ...]
FlagValue = bool | str | list[str]


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: Literal["bool", "string", "strings"]
    labs_since: Version | None = None
    stable_since: Version | None = (1, 0)


@dataclass(frozen=True)
class Frontend:
    """The docker/dockerfile frontend a `# syntax=` directive asks for."""

    version: Version | None = None  # None: the latest 1.x release
    labs: bool = False

    def supports(self, spec: FlagSpec) -> bool:
        labs = spec.labs_since
        if self.labs and labs is not None and (self.version is None or self.version >= labs):
            return True
        if spec.stable_since is None:
            return False
        return self.version is None or self.version >= spec.stable_since

    def describe(self) -> str:
        tag = ".".join(map(str, self.version)) if self.version else "1"
        return f"docker/dockerfile:{tag}{'-labs' if self.labs else ''}"


_SYNTAX = re.compile(
    r"(?:(?:docker\.io|index\.docker\.io)/)?docker/dockerfile(?:-upstream)?"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:[0-9a-f]{64})?"
)
_TAG = re.compile(
    r"(?P<version>1(?:\.\d{1,6}){0,2})(?:-rc\d{1,4})?(?:-(?P<channel>labs|experimental))?"
)


def parse_frontend(directives: Directives, path: str = "Dockerfile") -> Frontend:
    """The Frontend of `# syntax=`; DockerfileError for a frontend Farm lacks."""
    value = directives.syntax
    if value == "":
        return Frontend()
    match = _SYNTAX.fullmatch(value)
    tag = match.group("tag") if match else None
    if match is not None and tag in (None, "latest", "labs", "experimental"):
        return Frontend(labs=tag in ("labs", "experimental"))
    version = _TAG.fullmatch(tag) if match is not None and tag else None
    if version is None:
        raise DockerfileError(
            f"unsupported syntax frontend {value!r}: Farm implements the "
            "docker/dockerfile:1 frontend (docker/dockerfile:1, :1.x, :1.x.y, their "
            "-labs variants, optionally prefixed with docker.io/ or pinned with "
            "@sha256:...)",
            path=path,
            line=directives.syntax_line,
        )
    numbers = tuple(int(part) for part in version.group("version").split("."))
    return Frontend(
        version=None if numbers == (1,) else numbers,
        labs=version.group("channel") is not None,
    )


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool; None when `value` is not a boolean."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def parse_flags(
    node: Node,
    specs: Sequence[FlagSpec],
    frontend: Frontend,
    path: str = "Dockerfile",
) -> dict[str, FlagValue]:
    """Validate `node.flags` against `specs`; the values of the flags used."""
    keyword = node.keyword.upper()
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, FlagValue] = {}

    def fail(message: str) -> DockerfileError:
        return DockerfileError(message, path=path, line=node.start_line, instruction=keyword)

    for word in node.flags:
        if word == "--":
            break
        name, has_value, value = word[2:].partition("=")
        spec = by_name.get(name)
        if spec is None:
            if by_name:
                accepted = ", ".join(f"--{s}" for s in sorted(by_name))
                raise fail(f"unknown flag: --{name} ({keyword} accepts {accepted})")
            raise fail(f"unknown flag: --{name} ({keyword} takes no flags)")
        if not frontend.supports(spec):
            raise fail(_unsupported(spec, frontend))
        if name in values and spec.kind != "strings":
            raise fail(f"duplicate flag specified: --{name}")
        if spec.kind == "bool":
            if has_value and value == "":
                raise fail(f"missing a value on flag: --{name}")
            parsed = True if not has_value else _bool_word(value)
            if parsed is None:
                raise fail(f"expecting boolean value for flag --{name}, not: {value}")
            values[name] = parsed
        elif not has_value:
            raise fail(f"missing a value on flag: --{name} (expected --{name}=<value>)")
        elif spec.kind == "string":
            values[name] = value
        else:
            listed = values.setdefault(name, [])
            assert isinstance(listed, list)
            listed.append(value)
    return values


def _bool_word(value: str) -> bool | None:
    lowered = value.lower()
    return True if lowered == "true" else False if lowered == "false" else None


def _unsupported(spec: FlagSpec, frontend: Frontend) -> str:
    where = f"the --{spec.name} flag is not available in {frontend.describe()}"
    if spec.stable_since is None:
        return f"{where}: it needs # syntax=docker/dockerfile:1-labs"
    stable = "docker/dockerfile:" + ".".join(map(str, spec.stable_since))
    if spec.labs_since is None:
        return f"{where}: it needs # syntax={stable} or later (or docker/dockerfile:1)"
    return f"{where}: it needs # syntax=docker/dockerfile:1-labs, or {stable} or later"
