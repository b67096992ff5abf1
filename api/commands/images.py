"""`farm images` and `farm run`: look at and run what the local store holds."""

from __future__ import annotations

import sys

import click


@click.command()
def images() -> None:
    """List the images in the local store."""
    from buildkit.image import INDEX_TYPES, parse_manifest_or_index
    from buildkit.store.base import read_blob
    from workers.embedded import open_store
    from workers.settings import get_settings

    store = open_store(get_settings())
    rows = [("NAME", "TAG", "DIGEST", "PLATFORMS", "SIZE")]
    for repo in store.repositories():
        for tag in sorted(store.tags(repo)):
            desc = store.resolve(repo, tag)
            doc = parse_manifest_or_index(read_blob(store, desc.digest), desc.media_type)
            manifests = doc.manifests if desc.media_type in INDEX_TYPES else (desc,)  # type: ignore[union-attr]
            platforms, blobs = [], {}
            for m in manifests:
                man = parse_manifest_or_index(read_blob(store, m.digest), m.media_type)
                for blob in (man.config, *man.layers):  # type: ignore[union-attr]
                    blobs[blob.digest] = blob.size
                if m.platform is not None:
                    platforms.append(str(m.platform))
            rows.append(
                (
                    repo,
                    tag,
                    desc.digest[:19],
                    ",".join(platforms) or "-",
                    _size(sum(blobs.values())),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--platform", default="", help="Which platform of a multi-platform image to run.")
@click.option(
    "--rm", is_flag=True, help="Accepted for docker compatibility: Farm never keeps containers."
)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(platform: str, rm: bool, image: str, command: tuple[str, ...]) -> None:
    """Run IMAGE from the local store in the build sandbox."""
    from buildkit.binfmt import require
    from buildkit.container import run_image
    from buildkit.platforms import host_platform, parse_platform
    from workers.embedded import open_store
    from workers.settings import get_settings

    settings = get_settings()
    plat = parse_platform(platform) if platform else host_platform()
    require((plat,))

    def out(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    code = run_image(open_store(settings), settings.home, image, plat, command, out)
    sys.exit(code)
