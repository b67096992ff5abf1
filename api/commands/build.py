"""`farm build`: the buildx-like entry point."""

from __future__ import annotations

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
def build(
    context: str,
    dockerfile: str | None,
    platforms: tuple[str, ...],
    build_args: tuple[str, ...],
    target: str,
    call: str,
) -> None:
    """Build an image from a Dockerfile and a context (a directory, a tarball, a git URL or -)."""
    from api.commands import render
    from buildkit.context import open_context
    from buildkit.dockerfile import parse_dockerfile
    from buildkit.platforms import host_platform, parse_platforms

    args = _parse_build_args(build_args)
    host = host_platform()
    targets = parse_platforms(list(platforms)) if platforms else (host,)
    stdin = sys.stdin.buffer if context == "-" else None
    with open_context(context, dockerfile=dockerfile, stdin=stdin, cwd=Path.cwd()) as ctx:
        df = parse_dockerfile(ctx.dockerfile_text, path=ctx.dockerfile_name)
        options = render.build_options(targets, host, target, args)
        if call == "targets":
            click.echo(render.targets(df))
            return
        if call == "outline":
            click.echo(render.outline(df, options))
            return
        if call == "check":
            text, failed = render.check(df, options)
            click.echo(text)
            if failed:
                sys.exit(1)
            return
        if call == "plan":
            click.echo(render.plan(df, options))
            return
        raise click.ClickException(
            "building images arrives with the build engine (issue 3); try --call plan"
        )


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
