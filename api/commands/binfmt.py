"""`farm binfmt status|install`: what this host runs natively and through QEMU."""

from __future__ import annotations

import click


@click.group()
def binfmt() -> None:
    """Show or set up QEMU emulation through binfmt_misc."""


@binfmt.command()
def status() -> None:
    """List the platforms this host runs natively and through emulation."""
    from buildkit import binfmt as bf

    st = bf.status()
    click.echo("native:   " + ", ".join(str(p) for p in st.native))
    click.echo("emulated: " + (", ".join(str(p) for p in st.emulated) or "(none)"))
    if not st.emulated:
        click.echo("hint: 'farm binfmt install' (as root) registers QEMU for foreign platforms")


@binfmt.command()
@click.argument("platforms", nargs=-1)
def install(platforms: tuple[str, ...]) -> None:
    """Register QEMU handlers (F flag) for PLATFORMS, default every one available."""
    from buildkit import binfmt as bf
    from buildkit.platforms import parse_platforms

    wanted = parse_platforms(list(platforms)) if platforms else ()
    try:
        result = bf.install(wanted)
    except PermissionError as exc:
        raise click.ClickException(f"binfmt_misc needs root: {exc}") from exc
    for p in result.registered:
        click.echo(f"registered {p}")
    for p in result.already:
        click.echo(f"already registered {p}")
    for p in result.missing:
        click.echo(
            f"cannot register {p}: its QEMU is not installed (apt-get install {bf.QEMU_PACKAGE})",
            err=True,
        )
    if result.missing:
        raise SystemExit(1)
