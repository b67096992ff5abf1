"""`farm build`: the buildx-like entry point."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from api.commands.registry import insecure_option, registry_config


@click.command()
@click.argument("context", default=".", required=False)
@click.option(
    "-f",
    "--file",
    "dockerfile",
    default=None,
    help="Name of the Dockerfile (default: PATH/Dockerfile).",
)
@click.option(
    "--platform", "platforms", multiple=True, help="Target platforms, e.g. linux/amd64,linux/arm64."
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a build-time variable.",
)
@click.option("--target", default="", help="Set the target build stage to build.")
@click.option(
    "--call",
    "call",
    default="build",
    type=click.Choice(["build", "check", "outline", "targets", "plan"]),
    help="Set method for evaluating build (check, outline, targets); 'plan' prints Farm's build plan.",
)
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag).")
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    help="type=image|oci|local,dest=PATH[,compression=zstd]",
)
@click.option("--no-cache", is_flag=True, help="Do not use the step cache.")
@click.option(
    "--cache-to",
    "cache_to",
    multiple=True,
    metavar="type=local,dest=DIR|type=registry,ref=REF[,mode=max]",
    help="Export the step cache (to a directory or a registry).",
)
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    metavar="type=local,src=DIR|type=registry,ref=REF",
    help="Import a step cache (from a directory or a registry).",
)
@click.option(
    "--no-cache-filter", multiple=True, metavar="STAGE", help="Do not use the cache for STAGE."
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=0), default=0, help="Steps at once (default: cores)."
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="id=ID,src=FILE|env=VAR",
    help="A secret for RUN --mount=type=secret.",
)
@click.option(
    "--ssh",
    "ssh",
    multiple=True,
    metavar="default|ID=SOCKET",
    help="An ssh agent for RUN --mount=type=ssh.",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    type=click.Choice(["network.host", "security.insecure"]),
    help="Allow extra privileges.",
)
@click.option("--progress", default="auto", type=click.Choice(["auto", "tty", "plain", "rawjson"]))
@click.option(
    "--metadata-file",
    type=click.Path(dir_okay=False),
    help="Write build results to this JSON file.",
)
@click.option(
    "--source-date-epoch", default="", help="Clamp times to this epoch; 'now' keeps real times."
)
@click.option("--pull", is_flag=True, help="Ask registries again for base images pulled before.")
@click.option(
    "--push", is_flag=True, help="Push tags naming another registry there (type=registry)."
)
@insecure_option
def build(
    context: str,
    dockerfile: str | None,
    platforms: tuple[str, ...],
    build_args: tuple[str, ...],
    target: str,
    call: str,
    tags: tuple[str, ...],
    outputs: tuple[str, ...],
    no_cache: bool,
    cache_to: tuple[str, ...],
    cache_from: tuple[str, ...],
    no_cache_filter: tuple[str, ...],
    jobs: int,
    secrets: tuple[str, ...],
    ssh: tuple[str, ...],
    allow: tuple[str, ...],
    progress: str,
    metadata_file: str | None,
    source_date_epoch: str,
    pull: bool,
    push: bool,
    insecure_registries: tuple[str, ...],
) -> None:
    """Build an image from a Dockerfile and a context (a directory, a tarball, a git URL or -)."""
    args = _parse_build_args(build_args)
    stdin = sys.stdin.buffer if context == "-" or dockerfile == "-" else None
    if call != "build":
        _call(call, context, dockerfile, platforms, args, target, stdin)
        return
    from api.progress import make_progress
    from buildkit.cache.local import parse_cache_option
    from buildkit.platforms import parse_platforms
    from workers.embedded import (
        LocalBuild,
        check_metadata_file,
        parse_output,
        run_build,
        write_metadata,
    )
    from workers.settings import get_settings

    if metadata_file:
        check_metadata_file(Path(metadata_file))  # before any step runs

    request = LocalBuild(
        context=context,
        dockerfile=dockerfile,
        platforms=parse_platforms(list(platforms)) if platforms else (),
        build_args=args,
        target=target,
        tags=tags,
        outputs=tuple(parse_output(o) for o in outputs),
        allow=frozenset(allow),
        source_date_epoch=source_date_epoch,
        cwd=Path.cwd(),
        no_cache=no_cache,
        no_cache_filter=frozenset(no_cache_filter),
        jobs=jobs,
        secrets=_parse_secrets(secrets),
        ssh=_parse_ssh(ssh),
        cache_from=tuple(parse_cache_option(c, flag="--cache-from") for c in cache_from),
        cache_to=tuple(parse_cache_option(c, flag="--cache-to") for c in cache_to),
        pull=pull,
        push=push,
        registry=registry_config(insecure_registries),
    )
    renderer = make_progress(progress)
    with renderer if hasattr(renderer, "__enter__") else contextlib.nullcontext():
        local = run_build(request, get_settings(), renderer, stdin=stdin)
    for name in tags:
        click.echo(f"naming to {name} done", err=True)
    click.echo(local.result.descriptor.digest)
    if metadata_file:
        write_metadata(Path(metadata_file), local)


def _call(call, context, dockerfile, platforms, args, target, stdin) -> None:  # type: ignore[no-untyped-def]
    """`--call targets|outline|check|plan`: read the Dockerfile, build nothing."""
    from api.commands import render
    from buildkit.context import open_context
    from buildkit.dockerfile import parse_dockerfile
    from buildkit.platforms import host_platform, parse_platforms

    host = host_platform()
    targets = parse_platforms(list(platforms)) if platforms else (host,)
    with open_context(context, dockerfile=dockerfile, stdin=stdin, cwd=Path.cwd()) as ctx:
        df = parse_dockerfile(ctx.dockerfile_text, path=ctx.dockerfile_name)
    options = render.build_options(targets, host, target, args)
    if call == "targets":
        click.echo(render.targets(df))
    elif call == "outline":
        click.echo(render.outline(df, options))
    elif call == "check":
        text, failed = render.check(df, options)
        click.echo(text)
        if failed:
            sys.exit(1)
    else:
        click.echo(render.plan(df, options))


def _parse_build_args(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--build-arg K=V` sets K; a bare `--build-arg K` takes K from the environment, as Docker does."""
    import os

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key:
            raise click.BadParameter(
                f"invalid build arg {pair!r}: expected KEY=VALUE", param_hint="--build-arg"
            )
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _fields(text: str, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise click.BadParameter(f"{text!r}: {part!r} is not key=value", param_hint=flag)
        out[key.strip().lower()] = value.strip()
    return out


def _parse_secrets(items: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """`--secret id=x,src=FILE` or `id=x,env=VAR`, as buildx reads them (the env
    var is read here, at the edge; the engine never reads the environment)."""
    import os

    from buildkit.secrets import SecretSource

    found: dict[str, SecretSource] = {}
    for item in items:
        fields = _fields(item, "--secret")
        sid = fields.get("id", "")
        src = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if fields.get("type") == "env" and not env:
            env = sid
        if not sid:
            raise click.BadParameter(f"{item!r}: id= is required", param_hint="--secret")
        if src:
            found[sid] = SecretSource(sid, file=Path(src).expanduser())
        elif env or sid in os.environ:
            name = env or sid
            if name not in os.environ:
                raise click.BadParameter(
                    f"{item!r}: environment variable {name} is not set", param_hint="--secret"
                )
            found[sid] = SecretSource(sid, env_value=os.environ[name])
        else:
            raise click.BadParameter(f"{item!r}: give src=FILE or env=VAR", param_hint="--secret")
    return found


def _parse_ssh(items: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """`--ssh default` (the agent at $SSH_AUTH_SOCK) or `--ssh ID=SOCKET`."""
    import os

    from buildkit.secrets import SshSource

    found: dict[str, SshSource] = {}
    for item in items:
        sid, _, socket = item.partition("=")
        socket = socket or os.environ.get("SSH_AUTH_SOCK", "")
        if not socket:
            raise click.BadParameter(
                f"{item!r}: no socket given and SSH_AUTH_SOCK is not set", param_hint="--ssh"
            )
        found[sid] = SshSource(sid, Path(socket))
    return found
