"""Parsers of the instructions that change the filesystem: RUN, COPY and ADD.

Their flags (with the Dockerfile frontend versions that brought them), RUN's
mounts, network and security modes, and the sources, destination and heredoc
files of COPY and ADD.
"""

from __future__ import annotations

from typing import Any

from buildkit.dockerfile.commands.request import _command, _list, _Request, _str
from buildkit.dockerfile.flags import FlagSpec, FlagValue
from buildkit.dockerfile.heredoc import parse_heredoc_word
from buildkit.dockerfile.instructions import Add, Copy, KeyValue, Mount, Run
from buildkit.dockerfile.mounts import MountSpecError, parse_mount
from buildkit.dockerfile.syntax import Heredoc
from buildkit.dockerfile.words import split_whitespace

RUN_FLAGS = (
    FlagSpec("mount", "strings", labs_since=(1, 0), stable_since=(1, 2)),
    FlagSpec("network", "string", labs_since=(1, 0), stable_since=(1, 3)),
    FlagSpec("security", "string", labs_since=(1, 0), stable_since=(1, 20)),
)
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
