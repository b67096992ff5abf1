"""Content-addressed cache keys for build steps, computed as BuildKit computes them.

A key is `sha256:<hex>` over a canonical JSON document (sorted object keys,
no whitespace, ASCII escapes, a schema version `v`) of everything that can
change what a step writes. Nothing in it depends on dict order, `id()`,
`hash()` or the process: the same inputs give the same key on any machine.

Keys form a chain. A stage starts from `base_key(...)`; each step's key
covers its parent's key, so a step's key names the whole filesystem below it:

- scratch:  the platform (and the engine's `salt`);
- an image: its manifest digest and the platform;
- a stage (`FROM builder`): that stage's last key, unchanged.

`step_key(parent, step, platform, sources=..., mounts=...)`:

- RUN: the command as the planner expanded it (exec or shell form, heredoc
  names, bodies and flags), its environment (`step.state.environ`: the image
  Env and the ARG values in scope, in order: a RUN can see both, and the
  order is observable through `env`), user, workdir, the shell (shell form
  only: an exec-form RUN never runs it, and BuildKit's LLB for it has no
  shell), platform, network mode, security mode and every mount: type and
  all its options (sorted by name; ids, targets, sources, sharing,
  uid/gid/mode, readonly, size, required, env) plus, for a bind mount, the
  identity of what it mounts (`mounts`, one string per mount). A secret or
  ssh mount is keyed on its options only, never on the secret's content;
  a cache mount never on the cache's content, as in BuildKit.
- COPY/ADD: the destination resolved against WORKDIR, the sources as
  written, every flag (--chown, --chmod, --exclude, --parents, --link,
  --checksum, --unpack, --keep-git-dir, --from as written), heredoc names and
  contents, and `sources`, the identity of what is copied: `hash_sources()`
  of the build context (see `buildkit.cache.contents`), the final key of the
  `--from` stage, or the `--from` image's manifest digest.
- WORKDIR (it creates its directory, owned by USER): the resolved path and
  the user.
- Every other instruction (ENV, ARG, LABEL, USER, SHELL, CMD, EXPOSE, ...)
  writes no file: `step_key` returns `parent` unchanged. As in BuildKit they
  make no cache record (the image config is computed, not cached); what they
  change that a later step can observe (env, ARGs, user, workdir, shell) is
  in that later step's own key, through `step.state`.

Instruction fields are serialised generically (every dataclass field except
the source location and comments), so a flag added to an instruction later is
keyed without anyone remembering to add it here. Moving an instruction to
another line keeps its key.

Equivalent spellings (`sharing=shared` vs no sharing, `ro` vs `readonly`
handled by the parser, `/app/` vs `/app`) may give different keys: a
spurious miss costs a rebuild, a false hit a wrong image, so the key errs on
the side of covering too much.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Sequence
from typing import Any, Literal

from buildkit.cache.canonical import canonical_digest
from buildkit.cache.contents import FileDigests, hash_sources, hash_tree
from buildkit.copy import dest_path
from buildkit.dockerfile.buildplan import Step
from buildkit.dockerfile.instructions import Add, Copy, CopyBase, Mount, Run, Workdir
from buildkit.platforms import Platform

__all__ = [
    "KEY_VERSION",
    "FileDigests",
    "base_key",
    "canonical_digest",
    "hash_sources",
    "hash_tree",
    "is_filesystem_step",
    "step_key",
]

# Bump when what a key covers changes: old records then simply never match.
KEY_VERSION = 1

# Where an instruction is, not what it does: never part of a key.
_LOCATION_FIELDS = frozenset({"line", "end_line", "original", "comment"})
# Mounts whose content must never reach a key.
_UNKEYED_CONTENT = frozenset({"secret", "ssh"})


def _check_key(name: str, value: str) -> None:
    algorithm, sep, hexpart = value.partition(":")
    if not sep or algorithm != "sha256" or len(hexpart) != 64:
        raise ValueError(f"{name} must be a sha256:<hex> key, got {value!r}")


def base_key(
    kind: Literal["scratch", "image", "stage"],
    *,
    platform: Platform,
    manifest_digest: str = "",
    stage_key: str = "",
    salt: str = "",
) -> str:
    """The key a stage starts from.

    `salt` separates caches whose layers differ for reasons outside the
    Dockerfile: engine options that change the layer bytes (compression,
    SOURCE_DATE_EPOCH). Every key of a build derives from its base keys, so
    salting the base salts the chain. A stage base returns `stage_key` as it
    is: its salt is already in it.
    """
    if kind == "stage":
        _check_key("stage_key", stage_key)
        return stage_key
    if kind == "image":
        if not manifest_digest:
            raise ValueError("an image base needs its manifest digest")
        return canonical_digest(
            {
                "v": KEY_VERSION,
                "base": "image",
                "manifest": manifest_digest,
                "platform": str(platform),
                "salt": salt,
            }
        )
    if kind == "scratch":
        return canonical_digest(
            {"v": KEY_VERSION, "base": "scratch", "platform": str(platform), "salt": salt}
        )
    raise ValueError(f"unknown base kind {kind!r}: scratch, image or stage")


def is_filesystem_step(step: Step) -> bool:
    """Whether the step can write files (and so has its own key and cache record)."""
    return isinstance(step.instruction, Run | Copy | Add | Workdir)


def step_key(
    parent: str,
    step: Step,
    platform: Platform,
    *,
    sources: str = "",
    mounts: Sequence[str] = (),
) -> str:
    """The key of `step` run on the filesystem named by `parent`.

    `sources` (COPY/ADD): the identity of the source tree, as described in
    the module docstring; required for COPY/ADD with local sources.
    `mounts` (RUN): one string per `--mount`, in order: for a bind mount the
    identity of its source (`hash_tree` of the context path, a stage's final
    key, an image's digest), "" for the other types (a cache mount may
    give the identity of its `from=` seed). Required when the RUN has a bind
    mount: a bind mount keyed without its content could hit on stale files.
    Refused for secret and ssh mounts, whose content is never keyed.
    """
    _check_key("parent", parent)
    inst = step.instruction
    if isinstance(inst, Run):
        document = _run_document(step, inst, mounts)
    elif isinstance(inst, Copy | Add):
        document = _copy_document(step, inst, sources)
    elif isinstance(inst, Workdir):
        document = _workdir_document(step, inst)
    else:
        return parent
    document.update(v=KEY_VERSION, parent=parent, platform=str(platform))
    return canonical_digest(document)


# ------------------------------------------------------------ documents


def _plain(value: Any) -> Any:
    """Instruction values → JSON values; dataclasses become objects of their fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _LOCATION_FIELDS
        }
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot key a {type(value).__name__}: {value!r}")


def _instruction(inst: Any) -> dict[str, Any]:
    document = _plain(inst)
    document["keyword"] = inst.keyword
    return document  # type: ignore[no-any-return]


def _mount(mount: Mount, identity: str) -> dict[str, Any]:
    options = sorted(([kv.key, kv.value] for kv in mount.options), key=lambda kv: kv[0])
    return {"type": mount.type, "options": options, "source": identity}


def _run_document(step: Step, inst: Run, mounts: Sequence[str]) -> dict[str, Any]:
    identities = tuple(mounts) or ("",) * len(inst.mounts)
    if len(identities) != len(inst.mounts):
        raise ValueError(
            f"RUN has {len(inst.mounts)} mounts but {len(identities)} mount identities were given"
        )
    for mount, identity in zip(inst.mounts, identities, strict=True):
        if mount.type.lower() == "bind" and not identity:
            raise ValueError(
                f"RUN --mount=type=bind,target={mount.get('target')}: the key needs the "
                "identity of the mounted source"
            )
        if mount.type.lower() in _UNKEYED_CONTENT and identity:
            raise ValueError(
                f"RUN --mount=type={mount.type}: its content is never part of a key "
                "(a key is not a secret; it would let anyone test guesses of one)"
            )
    document = _instruction(inst)
    document["mounts"] = [_mount(m, i) for m, i in zip(inst.mounts, identities, strict=True)]
    document["network"] = inst.network or "default"
    document["security"] = inst.security or "sandbox"
    state = step.state
    document["env"] = [[k, v] for k, v in state.environ]
    document["user"] = state.user
    document["workdir"] = state.workdir or "/"
    document["shell"] = list(state.shell) if inst.shell else None
    return document


def _copy_document(step: Step, inst: CopyBase, sources: str) -> dict[str, Any]:
    if inst.sources and not sources:
        raise ValueError(
            f"{inst.keyword} {' '.join(inst.sources)}: the key needs the identity of the sources"
        )
    dest, dest_is_dir = dest_path(inst.dest, step.state.workdir or "/")
    document = _instruction(inst)
    document["dest"] = [dest, dest_is_dir]
    document["source_identity"] = sources
    return document


def _workdir_document(step: Step, inst: Workdir) -> dict[str, Any]:
    path = posixpath.normpath(posixpath.join(step.state.workdir or "/", inst.path))
    return {
        "keyword": "WORKDIR",
        "path": "/" + path.lstrip("/"),
        "user": step.state.user,
    }
