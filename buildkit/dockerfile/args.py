"""ARG scoping, as BuildKit does it.

- The predefined platform ARGs (TARGETPLATFORM, TARGETOS, TARGETARCH,
  TARGETVARIANT, BUILDPLATFORM, BUILDOS, BUILDARCH, BUILDVARIANT, plus
  TARGETSTAGE) are global args: FROM lines see them; a stage sees one only
  after `ARG NAME` redeclares it. A --build-arg of the same name overrides.
- Global ARGs (before the first FROM) are visible only in FROM lines; a
  default may use earlier global ARGs; --build-arg overrides the default.
- Inside a stage, `ARG NAME` without a default takes the --build-arg, else the
  global value; `ARG NAME=default` takes the --build-arg, else the default
  expanded with the stage's environment.
- The proxy args (HTTP_PROXY, ...) are predefined: usable as --build-arg
  without being declared, and never reported as unconsumed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from buildkit.dockerfile.expand import Expansion, ExpansionError, expand_word
from buildkit.dockerfile.instructions import Dockerfile
from buildkit.errors import DockerfileError
from buildkit.platforms import Platform

PROXY_ARGS = frozenset(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
)
PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
)
# Args BuildKit reads itself: never "not consumed" when given without an ARG.
_BUILTIN_ARGS = frozenset({"SOURCE_DATE_EPOCH"})
# Args that BuildKit keeps out of a step's environment.
NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})


def is_predefined(name: str) -> bool:
    return (
        name in PROXY_ARGS
        or name in PLATFORM_ARGS
        or name in _BUILTIN_ARGS
        or name.startswith("BUILDKIT_")
    )


def platform_args(
    target: Platform, build: Platform, target_stage: str, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The predefined args for one target platform (--build-arg overrides them)."""
    values = {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "TARGETSTAGE": target_stage,
    }
    return {k: overrides.get(k, v) for k, v in values.items()}


def quote(text: str) -> str:
    """Go's %q, which BuildKit's messages use."""
    return json.dumps(text, ensure_ascii=False)


def expand(
    word: str,
    env: Mapping[str, str],
    *,
    escape: str,
    path: str,
    line: int,
    keyword: str,
) -> Expansion:
    """expand_word, with an ExpansionError reported at its Dockerfile line."""
    try:
        return expand_word(word, env, escape=escape)
    except ExpansionError as exc:
        message = f"failed to process {quote(exc.word or word)}: {exc.message}"
        raise DockerfileError(message, path=path, line=line, instruction=keyword) from exc


@dataclass(frozen=True)
class GlobalArg:
    name: str
    default: str | None  # as written
    value: str | None  # after --build-arg and expansion
    line: int
    description: str
    uses: frozenset[str]  # global args its default expanded


@dataclass(frozen=True)
class GlobalScope:
    """The args FROM lines expand with, and what each global ARG resolved to."""

    values: Mapping[str, str]
    args: tuple[GlobalArg, ...]

    def info(self, name: str) -> GlobalArg | None:
        found = None
        for arg in self.args:
            if arg.name == name:
                found = arg
        return found


def evaluate_global_args(
    dockerfile: Dockerfile, predefined: Mapping[str, str], build_args: Mapping[str, str]
) -> GlobalScope:
    values = dict(predefined)
    infos: list[GlobalArg] = []
    escape = dockerfile.directives.escape
    for inst in dockerfile.global_args:
        for decl in inst.args:
            uses: frozenset[str] = frozenset()
            value: str | None
            if decl.name in build_args:
                value = build_args[decl.name]
            elif decl.default is not None:
                exp = expand(
                    decl.default,
                    values,
                    escape=escape,
                    path=dockerfile.path,
                    line=inst.line,
                    keyword="ARG",
                )
                value, uses = exp.value, exp.matched - {decl.name}
            else:
                value = None
            if value is not None:
                values[decl.name] = value
            infos.append(GlobalArg(decl.name, decl.default, value, inst.line, inst.comment, uses))
    return GlobalScope(values, tuple(infos))
