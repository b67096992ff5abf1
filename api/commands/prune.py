"""`farm prune`: remove what no image, tag or kept cache record needs."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Remove all cache, not just what is unused."
)
@click.option(
    "--keep-storage",
    default="",
    metavar="SIZE",
    help="Drop least recently used cache until the store fits in SIZE (10GB, 500MB, 0).",
)
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Keep anything used or written this recently (1h, 30m, 0s).",
)
@click.option("-f", "--force", is_flag=True, help="Accepted for docker compatibility: never asks.")
def prune(all_: bool, keep_storage: str, grace: str, force: bool) -> None:
    """Remove unused build cache, unreferenced blobs and unpacked snapshots."""
    from buildkit.prune import PruneOptions, format_size, parse_duration, parse_size
    from buildkit.prune import prune as run_prune
    from workers.embedded import open_store
    from workers.settings import get_settings

    options = PruneOptions(
        all=all_,
        keep_storage=parse_size(keep_storage) if keep_storage else None,
        grace=parse_duration(grace),
    )
    settings = get_settings()
    report = run_prune(open_store(settings), settings.home, options)
    rows = [
        ("cache records", report.records, None),
        ("blobs", report.blobs, report.blob_bytes),
        ("snapshots", report.snapshots, report.snapshot_bytes),
        ("cache mounts", report.cache_mounts, report.cache_mount_bytes),
    ]
    for name, count, size in rows:
        if count:
            click.echo(f"Deleted {count} {name}" + (f" ({format_size(size)})" if size else ""))
    click.echo(f"Total reclaimed space: {format_size(report.total_bytes)}")
