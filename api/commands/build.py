"""`farm build`: the buildx-like entry point."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click


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
    "--allow",
    "allow",
    multiple=True,
    type=click.Choice(["network.host"]),
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
    allow: tuple[str, ...],
    progress: str,
    metadata_file: str | None,
    source_date_epoch: str,
) -> None:
    """Build an image from a Dockerfile and a context (a directory, a tarball, a git URL or -)."""
    args = _parse_build_args(build_args)
    stdin = sys.stdin.buffer if context == "-" or dockerfile == "-" else None
    if call != "build":
        _call(call, context, dockerfile, platforms, args, target, stdin)
        return
    from api.progress import make_progress
    from buildkit.platforms import parse_platforms
    from workers.embedded import LocalBuild, parse_output, run_build, write_metadata
    from workers.settings import get_settings

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
