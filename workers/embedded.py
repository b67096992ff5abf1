"""The embedded runner: a whole build on this machine, no server.

The CLI turns its flags into a `LocalBuild`; `run_build` opens the context,
plans, builds every platform, then publishes: tags in the store (type=image),
an OCI archive (type=oci) or a directory (type=local). Tags move last, after
every blob and manifest is stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from buildkit.builder import Builder, BuildResult
from buildkit.cache.local import CacheOption, export_cache, import_cache
from buildkit.context import open_context
from buildkit.dockerfile import parse_dockerfile
from buildkit.dockerfile.buildplan import BuildOptions, BuildPlans
from buildkit.dockerfile.plan import plan_build
from buildkit.errors import FarmError, UserError
from buildkit.events import Emit
from buildkit.executor import EngineConfig
from buildkit.images import split_tag, tag_image
from buildkit.layers import apply_layer
from buildkit.oci_layout import write_oci_archive
from buildkit.platforms import Platform, host_platform
from buildkit.reference import normalize
from buildkit.secrets import SecretSource, SshSource
from buildkit.solver import SolveOptions
from buildkit.store.base import Store
from buildkit.store.filesystem import FilesystemStore
from workers.settings import Settings


class OutputError(UserError):
    """An --output that Farm cannot write."""


@dataclass(frozen=True)
class Output:
    type: str  # image | oci | local
    dest: str = ""
    name: str = ""
    compression: str = "gzip"


def parse_output(text: str) -> Output:
    """`type=oci,dest=out.tar,compression=zstd`, as buildx reads `--output`.
    A bare path means type=local,dest=PATH."""
    if "=" not in text:
        return Output("local", dest=text)
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise OutputError(f"invalid --output {text!r}: {part!r} is not key=value")
        fields[key.strip().lower()] = value.strip()
    kind = fields.pop("type", "")
    if kind in ("docker", "registry"):
        raise OutputError(
            f"--output type={kind} is not supported yet (it comes with the registry client)"
        )
    if kind not in ("image", "oci", "local", "tar"):
        raise OutputError(f"invalid --output {text!r}: type must be image, oci or local")
    out = Output(
        type="local" if kind == "tar" else kind,
        dest=fields.pop("dest", ""),
        name=fields.pop("name", ""),
        compression=fields.pop("compression", "gzip"),
    )
    if out.compression not in ("gzip", "zstd", "uncompressed"):
        raise OutputError(
            f"invalid --output compression {out.compression!r}: gzip, zstd or uncompressed"
        )
    if out.type in ("oci", "local") and not out.dest:
        raise OutputError(f"--output type={out.type} needs dest=PATH")
    fields.pop("push", None)
    if fields:
        raise OutputError(f"unknown --output options: {', '.join(sorted(fields))}")
    return out


@dataclass(frozen=True)
class LocalBuild:
    context: str
    dockerfile: str | None = None
    platforms: tuple[Platform, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    tags: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()
    allow: frozenset[str] = frozenset()
    source_date_epoch: str = ""  # "", a number, or "now"
    cwd: Path = field(default_factory=Path.cwd)
    no_cache: bool = False
    no_cache_filter: frozenset[str] = frozenset()
    jobs: int = 0  # 0: the number of cores
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    ssh: Mapping[str, SshSource] = field(default_factory=dict)
    cache_from: tuple[CacheOption, ...] = ()
    cache_to: tuple[CacheOption, ...] = ()


@dataclass(frozen=True)
class LocalResult:
    result: BuildResult
    plans: BuildPlans
    tags: tuple[str, ...]


def open_store(settings: Settings) -> Store:
    url = settings.storage_url
    if url.startswith("file://"):
        return FilesystemStore(Path(url.removeprefix("file://")))
    raise UserError(
        f"FARM_STORAGE={url!r}: only file:// stores are supported yet (S3 comes with the registry issue)"
    )


def _epoch(request: LocalBuild, git_time: int | None) -> int | None:
    text = request.source_date_epoch or request.build_args.get("SOURCE_DATE_EPOCH", "")
    if text == "now":
        return None
    if text:
        try:
            return int(text)
        except ValueError:
            raise UserError(
                f"invalid SOURCE_DATE_EPOCH {text!r}: expected seconds since 1970 or 'now'"
            ) from None
    return git_time if git_time is not None else 0


def run_build(
    request: LocalBuild,
    settings: Settings,
    emit: Emit,
    stdin: BinaryIO | None = None,
    warn=lambda text: print(text, file=sys.stderr),  # type: ignore[no-untyped-def]
) -> LocalResult:
    store = open_store(settings)
    outputs = request.outputs or ((Output("image"),) if request.tags else ())
    if not outputs:
        warn("WARNING: No output specified: the build result will only remain in the build cache. "
             "Use -t NAME to keep it in the local store, or --output.")  # fmt: skip
    for tag in request.tags:
        split_tag(tag)  # bad names fail before anything runs
    compression = next((o.compression for o in outputs if o.type != "local"), "gzip")
    for source in request.cache_from:
        _import_cache(store, source, warn)
    with open_context(
        request.context, dockerfile=request.dockerfile, stdin=stdin, cwd=request.cwd
    ) as ctx:
        config = EngineConfig(
            home=settings.home,
            source_date_epoch=_epoch(request, ctx.git_commit_time),
            compression="none" if compression == "uncompressed" else compression,
            allow=request.allow,
            secrets=request.secrets,
            ssh=request.ssh,
        )
        solve = SolveOptions(
            no_cache=request.no_cache,
            no_cache_filter=frozenset(s.lower() for s in request.no_cache_filter),
            jobs=request.jobs or os.cpu_count() or 1,
        )
        builder = Builder(store, config, emit=emit, solve=solve)
        df = parse_dockerfile(ctx.dockerfile_text, path=ctx.dockerfile_name)
        options = BuildOptions(
            target_platforms=request.platforms,
            build_platform=host_platform(),
            target=request.target,
            build_args=dict(request.build_args),
            resolve_image=builder.resolver(),
        )
        plans = plan_build(df, options)
        for message in plans.messages:
            warn(message)
        result = builder.build(plans, ctx)
    for out in outputs:
        _write_output(store, out, result, request.tags, config.source_date_epoch)
    for target in request.cache_to:
        try:
            export_cache(store, result.cache_keys_for(target.mode), Path(target.dest))
        except FarmError as exc:
            if not target.ignore_error:
                raise
            warn(f"WARNING: --cache-to {target.dest}: {exc}")
    return LocalResult(result, plans, request.tags)


def _import_cache(store: Store, source: CacheOption, warn) -> None:  # type: ignore[no-untyped-def]
    """--cache-from: a missing cache directory is only a warning, as in buildx."""
    if not Path(source.src).exists():
        warn(f"WARNING: --cache-from {source.src}: no cache there yet")
        return
    try:
        import_cache(store, Path(source.src), now=time.time())
    except FarmError as exc:
        if not source.ignore_error:
            raise
        warn(f"WARNING: --cache-from {source.src}: {exc}")


def _write_output(
    store: Store, out: Output, result: BuildResult, tags: tuple[str, ...], epoch: int | None
) -> None:
    names = tags or ((out.name,) if out.name else ())
    if out.type == "image":
        for name in names:
            repo, tag = split_tag(name)
            tag_image(store, repo, tag, result.descriptor, result.children)
    elif out.type == "oci":
        # index.json names the image in full (docker.io/library/app:1), as BuildKit does.
        name = normalize(names[0]) if names else None
        if out.dest == "-":
            write_oci_archive(
                store, result.descriptor, sys.stdout.buffer, name=name, source_date_epoch=epoch or 0
            )
            return
        dest = Path(out.dest)
        part = dest.with_name(f".{dest.name}.part")
        with open(part, "wb") as f:
            write_oci_archive(store, result.descriptor, f, name=name, source_date_epoch=epoch or 0)
        os.replace(part, dest)
    else:
        _write_local(store, result, Path(out.dest))


def _write_local(store: Store, result: BuildResult, dest: Path) -> None:
    """The flattened filesystem; one subdirectory per platform when there are several."""
    several = len(result.platforms) > 1
    for p in result.platforms:
        target = dest / str(p.platform).replace("/", "_") if several else dest
        target.mkdir(parents=True, exist_ok=True)
        for layer in p.state.layers:
            with store.open_blob(layer.digest) as blob:
                apply_layer(blob, target)


def metadata(local: LocalResult) -> dict[str, object]:
    """`--metadata-file`, with buildx's keys plus each platform's manifest."""
    desc = local.result.descriptor
    return {
        "containerimage.digest": desc.digest,
        "containerimage.descriptor": desc.to_dict(),
        "image.name": ",".join(local.tags),
        "farm.platforms": {str(p.platform): p.manifest.digest for p in local.result.platforms},
    }


def write_metadata(path: Path, local: LocalResult) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.write_text(json.dumps(metadata(local), indent=2) + "\n")
