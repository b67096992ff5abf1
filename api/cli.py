"""The `farm` command line.

Heavy modules (the engine, rich, boto3, celery, fastapi) are imported inside
the commands that use them, so `farm --help` starts fast.
"""

from __future__ import annotations

import sys

import click

from buildkit.errors import FarmError


class FarmGroup(click.Group):
    """Turns every FarmError into a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except FarmError as exc:
            click.echo(f"ERROR: {exc}", err=True)
            sys.exit(1)


@click.group(cls=FarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Farm: cross-architecture container builds, without a Docker daemon."""


# The build command lives in its own module: it has the most options.
from api.commands.binfmt import binfmt  # noqa: E402
from api.commands.build import build  # noqa: E402
from api.commands.images import images, run  # noqa: E402
from api.commands.prune import prune  # noqa: E402
from api.commands.registry import inspect, pull, push  # noqa: E402
from api.commands.serve import serve  # noqa: E402

main.add_command(build)
main.add_command(binfmt)
main.add_command(images)
main.add_command(run)
main.add_command(prune)
main.add_command(serve)
for _command in (pull, push, inspect):
    main.add_command(_command)
