"""The embedded runner: a whole build on this machine, no server.

The CLI turns its flags into a `LocalBuild`; `run_build` opens the context,
plans, builds every platform, then publishes: tags in the store (type=image),
an OCI archive (type=oci) or a directory (type=local). Every destination is
checked before any step runs; then files and cache exports are written, then
pushes, and tags move last: a failed output leaves every tag where it was. Base images no repository of the store
holds are pulled (and remembered under `bases/`; `--pull` asks the registry
again); tags naming another registry are pushed there with `--push`
(`type=registry`, `type=image,push=true`), and only warned about without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

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
from buildkit.reference import normalize, parse_reference
from buildkit.registry.config import RegistryConfig
from buildkit.registry.names import names_other_registry
from buildkit.secrets import SecretSource, SshSource
from buildkit.solver import SolveOptions
from buildkit.store import open_store as open_store_url
from buildkit.store.base import Store
from workers.settings import Settings

if TYPE_CHECKING:
    from buildkit.registry.client import RegistryClient


class OutputError(UserError):
    """An --output that Farm cannot write."""


@dataclass(frozen=True)
class Output:
    type: str  # image | oci | local
    dest: str = ""
    name: str = ""
    compression: str = "gzip"
    push: bool = False  # type=image: push names of other registries there


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
    if kind == "docker":
        raise OutputError("--output type=docker is not supported: there is no Docker daemon")
    if kind not in ("image", "oci", "local", "tar", "registry"):
        raise OutputError(f"invalid --output {text!r}: type must be image, registry, oci or local")
    push = fields.pop("push", "false").lower() in ("true", "1") or kind == "registry"
    out = Output(
        type={"tar": "local", "registry": "image"}.get(kind, kind),
        dest=fields.pop("dest", ""),
        name=fields.pop("name", ""),
        compression=fields.pop("compression", "gzip"),
        push=push,
    )
    if out.compression not in ("gzip", "zstd", "uncompressed"):
        raise OutputError(
            f"invalid --output compression {out.compression!r}: gzip, zstd or uncompressed"
        )
    if out.type in ("oci", "local") and not out.dest:
        raise OutputError(f"--output type={out.type} needs dest=PATH")
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
    pull: bool = False  # ask registries again for bases pulled before
    push: bool = False  # --push: as --output type=registry
    registry: RegistryConfig = field(default_factory=RegistryConfig)


@dataclass(frozen=True)
class LocalResult:
    result: BuildResult
    plans: BuildPlans
    tags: tuple[str, ...]


def open_store(settings: Settings) -> Store:
    return open_store_url(
        settings.storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_path_style=settings.s3_path_style,
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
    client = _LazyClient(request.registry)
    try:
        return _run_build(request, settings, emit, stdin, warn, cast("RegistryClient", client))
    finally:
        client.close()


class _LazyClient:
    """The build's registry client, made on first use: most builds pull and
    push nothing, and httpx takes a tenth of a second to import."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self._client: RegistryClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            from buildkit.registry.client import RegistryClient

            self._client = RegistryClient(self.config).__enter__()
        return getattr(self._client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)


def _registry_outputs(request: LocalBuild, warn) -> tuple[Output, ...]:  # type: ignore[no-untyped-def]
    """The outputs, with --push folded in; tags checked before anything runs,
    and a warning for each tag of another registry that will not be pushed."""
    outputs = request.outputs or ((Output("image"),) if request.tags else ())
    if request.push:
        if any(o.type == "image" for o in outputs):
            outputs = tuple(
                Output(o.type, o.dest, o.name, o.compression, o.push or o.type == "image")
                for o in outputs
            )
        else:
            outputs = (*outputs, Output("image", push=True))
    pushing = any(o.type == "image" and o.push for o in outputs)
    for tag in request.tags:
        if not names_other_registry(tag):
            split_tag(tag)  # bad names fail before anything runs
        elif not pushing:
            warn(f"WARNING: {tag} names another registry ({parse_reference(tag).domain}): "
                 "without --push the result will only remain in the build cache. "
                 "Use --push to push it there.")  # fmt: skip
    if pushing and not any(names_other_registry(n) for n in _names(request.tags, outputs)):
        warn("WARNING: --push: no tag names another registry (e.g. -t ghcr.io/o/app:1); "
             "the image is only stored in Farm's store")  # fmt: skip
    return outputs


def _names(tags: tuple[str, ...], outputs: tuple[Output, ...]) -> tuple[str, ...]:
    return tags or tuple(o.name for o in outputs if o.type == "image" and o.name)


def _puller(client: RegistryClient, store: Store, refresh: bool):  # type: ignore[no-untyped-def]
    """Pull each (reference, platform) once per build (`refresh`: ask the registry again)."""
    done: set[tuple[str, Platform]] = set()
    lock = threading.Lock()

    def pull(ref: str, platform: Platform) -> None:
        with lock:
            if (ref, platform) in done:
                return
            from buildkit.registry.pull import pull_image  # httpx only when used

            pull_image(client, ref, platform, store, refresh=refresh)
            done.add((ref, platform))

    return pull


def _run_build(
    request: LocalBuild,
    settings: Settings,
    emit: Emit,
    stdin: BinaryIO | None,
    warn,  # type: ignore[no-untyped-def]
    client: RegistryClient,
) -> LocalResult:
    store = open_store(settings)
    outputs = _registry_outputs(request, warn)
    check_destinations(request, outputs)
    if not outputs:
        warn("WARNING: No output specified: the build result will only remain in the build cache. "
             "Use -t NAME to keep it in the local store, or --output.")  # fmt: skip
    compression = next((o.compression for o in outputs if o.type != "local"), "gzip")
    for source in request.cache_from:
        _import_cache(store, source, warn, client)
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
        builder = Builder(
            store, config, emit=emit, solve=solve,
            puller=_puller(client, store, request.pull),
        )  # fmt: skip
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
    # Files first, then the cache, then pushes; tags move last, so a failed
    # output leaves every tag where it was.
    for out in outputs:
        if out.type in ("oci", "local"):
            _write_output(store, out, result, request.tags, config.source_date_epoch, client)
    for target in request.cache_to:
        try:
            keys = result.cache_keys_for(target.mode)
            if target.type == "registry":
                from buildkit.cache.registry import export_cache_to_registry  # httpx only when used

                export_cache_to_registry(store, keys, client, target.ref)
            else:
                try:
                    export_cache(store, keys, Path(target.dest))
                except OSError as exc:
                    raise OutputError(
                        f"--cache-to type=local,dest={target.dest}: cannot write the cache: "
                        f"{_reason(exc)}"
                    ) from exc
        except FarmError as exc:
            if not target.ignore_error:
                raise
            warn(f"WARNING: --cache-to {target.where}: {exc}")
    for out in outputs:
        if out.type == "image":
            _push_image(store, out, result, request.tags, client)
    for out in outputs:
        if out.type == "image":
            _tag_image(store, out, result, request.tags)
    return LocalResult(result, plans, request.tags)


def _import_cache(store: Store, source: CacheOption, warn, client: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    """--cache-from: a missing cache (directory, or manifest in the registry)
    is only a warning, as in buildx. A registry cache is read with the build's
    client: the same credentials and insecure hosts as pulls and pushes."""
    if source.type == "local" and not Path(source.src).exists():
        warn(f"WARNING: --cache-from {source.src}: no cache there yet")
        return
    try:
        if source.type == "registry":
            from buildkit.cache.registry import import_cache_from_registry  # httpx only when used

            got = import_cache_from_registry(store, client, source.ref, now=time.time())
            if got.warning:
                warn(f"WARNING: --cache-from {source.ref}: {got.warning}")
        else:
            import_cache(store, Path(source.src), now=time.time())
    except FarmError as exc:
        if not source.ignore_error:
            raise
        warn(f"WARNING: --cache-from {source.where}: {exc}")


def _image_names(out: Output, tags: tuple[str, ...]) -> tuple[str, ...]:
    return tags or ((out.name,) if out.name else ())


def _push_image(
    store: Store,
    out: Output,
    result: BuildResult,
    tags: tuple[str, ...],
    client: RegistryClient | None,
) -> None:
    """type=image,push=true: the names of other registries, pushed there."""
    if not out.push or client is None:
        return
    for name in _image_names(out, tags):
        if names_other_registry(name):
            from buildkit.registry.push import push_image  # httpx only when used

            push_image(client, store, result.descriptor, result.children, name)


def _tag_image(store: Store, out: Output, result: BuildResult, tags: tuple[str, ...]) -> None:
    """type=image: the names of Farm's store, moved to the result."""
    for name in _image_names(out, tags):
        if not names_other_registry(name):
            repo, tag = split_tag(name)
            tag_image(store, repo, tag, result.descriptor, result.children)


def _write_output(
    store: Store,
    out: Output,
    result: BuildResult,
    tags: tuple[str, ...],
    epoch: int | None,
    client: RegistryClient | None = None,
) -> None:
    """One output; for type=image, pushes first and tags after them."""
    if out.type == "image":
        _push_image(store, out, result, tags, client)
        _tag_image(store, out, result, tags)
        return
    try:
        _write_file_output(store, out, result, tags, epoch)
    except OSError as exc:
        raise OutputError(
            f"--output type={out.type},dest={out.dest}: cannot write the output: {_reason(exc)}"
        ) from exc


def _reason(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return exc.strerror or str(exc)


def _write_file_output(
    store: Store, out: Output, result: BuildResult, tags: tuple[str, ...], epoch: int | None
) -> None:
    names = _image_names(out, tags)
    if out.type == "oci":
        # index.json names the image in full (docker.io/library/app:1), as BuildKit does.
        name = normalize(names[0]) if names else None
        if out.dest == "-":
            write_oci_archive(
                store, result.descriptor, sys.stdout.buffer, name=name, source_date_epoch=epoch or 0
            )
            return
        dest = Path(out.dest)
        part = dest.with_name(f".{dest.name}.part")
        try:
            with open(part, "wb") as f:
                write_oci_archive(
                    store, result.descriptor, f, name=name, source_date_epoch=epoch or 0
                )
            os.replace(part, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
    else:
        _write_local(store, result, Path(out.dest))


def check_destinations(request: LocalBuild, outputs: tuple[Output, ...]) -> None:
    """Every place the build will write (or read a cache from), checked before
    any step runs: a build that cannot publish its result does not start."""
    for out in outputs:
        if out.type == "oci" and out.dest != "-":
            dest = Path(out.dest)
            option = f"--output type=oci,dest={out.dest}"
            _check_parent(dest, option)
            if dest.is_dir():
                raise OutputError(f"{option}: {dest} is a directory; give the archive's file name")
        elif out.type == "local":
            _check_directory(Path(out.dest), f"--output type=local,dest={out.dest}")
    for target in request.cache_to:
        if target.type == "local":
            _check_directory(Path(target.dest), f"--cache-to type=local,dest={target.dest}")
    for source in request.cache_from:
        if source.type == "local":
            src = Path(source.src)
            if src.exists() and not src.is_dir():
                raise OutputError(
                    f"--cache-from type=local,src={source.src}: {src} is not a directory"
                )


def check_metadata_file(path: Path) -> None:
    """--metadata-file: its directory must exist, and it must not be one."""
    option = f"--metadata-file {path}"
    _check_parent(path, option)
    if path.is_dir():
        raise OutputError(f"{option}: {path} is a directory")


def _check_parent(path: Path, option: str) -> None:
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise OutputError(f"{option}: the directory {parent} {what}")


def _check_directory(path: Path, option: str) -> None:
    """A directory, or nothing yet (made on export) under a directory or nothing."""
    if path.is_dir():
        return
    if path.exists():
        raise OutputError(f"{option}: {path} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{option}: {parent} is not a directory")
            return


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
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.write_text(json.dumps(metadata(local), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(
            f"--metadata-file {path}: cannot write the metadata: {_reason(exc)}"
        ) from exc
