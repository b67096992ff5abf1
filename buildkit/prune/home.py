"""Cleaning a machine's `$FARM_HOME` after its store was pruned.

`kept_snapshot_names` says which unpacked snapshots the kept records and images
still use; `prune_home` removes the others, scratch directories of dead builds,
dangling layer links and (with `all`) cache-mount instances nobody holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from buildkit.cache.index import list_records
from buildkit.cachemounts import locked_entry
from buildkit.digest import Digest
from buildkit.errors import BlobUnknown
from buildkit.image import Manifest, ManifestInvalid, parse_config, parse_manifest_or_index
from buildkit.prune.listing import _read_small_json
from buildkit.prune.options import PruneOptions
from buildkit.prune.plan import PrunePlan, plan_snapshots, snapshot_names
from buildkit.prune.sweep import PruneReport
from buildkit.scratch import remove_tree
from buildkit.snapshots import Snapshots
from buildkit.store.base import Store, read_blob

CACHE_MOUNTS_DIR = "cache-mounts"  # under $FARM_HOME, the root `open_cache` is given


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def kept_snapshot_names(store: Store, plan: PrunePlan) -> set[str]:
    """Snapshots of the layers of the records left after a prune and of the kept images."""
    layers = [r.layer.diff_id for r in list_records(store) if r.layer is not None]
    images: list[tuple[str, ...]] = []
    for digest in sorted(plan.kept_blobs):
        try:
            data = _read_small_json(store, digest, store.blob_size(Digest(digest)))
            doc = parse_manifest_or_index(data) if data is not None else None
            if isinstance(doc, Manifest):
                images.append(tuple(parse_config(read_blob(store, doc.config.digest)).diff_ids))
        except (BlobUnknown, ManifestInvalid, ValueError, UnicodeDecodeError):
            continue
    return snapshot_names(images, layers)


def prune_home(
    home: Path,
    keep: set[str],
    options: PruneOptions,
    *,
    now: float,
    report: PruneReport | None = None,
) -> PruneReport:
    """Remove snapshots not in `keep`, scratch directories of dead builds, and
    (with `all`) cache-mount instances nobody holds and nobody changed within grace."""
    report = report if report is not None else PruneReport()
    snaps = Snapshots(home)
    report.scratch += len(snaps.collect_stale())
    found: dict[str, float] = {}
    if snaps.root.is_dir():
        for entry in os.scandir(snaps.root):
            if entry.is_dir(follow_symlinks=False):
                found[entry.name] = entry.stat(follow_symlinks=False).st_mtime
    for name in plan_snapshots(found, keep, now=now, grace=options.grace):
        path = snaps.root / name
        size = _tree_size(path)
        try:
            # Out of the snapshots first, so no build picks it up half removed.
            trash = snaps.scratch / f"prune-{name}-{os.getpid()}"
            snaps.scratch.mkdir(parents=True, exist_ok=True)
            os.rename(path, trash)
        except FileNotFoundError:
            continue
        remove_tree(trash)
        report.snapshots += 1
        report.snapshot_bytes += size
    _remove_dangling_links(home / "l")
    if options.all:
        _prune_cache_mounts(home / CACHE_MOUNTS_DIR, now - options.grace, report)
    return report


def _remove_dangling_links(links: Path) -> None:
    if not links.is_dir():
        return
    for entry in os.scandir(links):
        if entry.is_symlink() and not os.path.exists(entry.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _prune_cache_mounts(root: Path, cutoff: float, report: PruneReport) -> None:
    """Remove each instance `<key>/<n>` that nobody holds (we take its flock, and
    the key's `.lock` so nobody picks it while we look) and whose directories
    did not change since `cutoff`."""
    if not root.is_dir():
        return
    for entry in sorted(p for p in root.iterdir() if p.is_dir()):
        with locked_entry(entry):
            for instance in sorted(p for p in entry.iterdir() if p.name.isdigit()):
                _prune_instance(instance, cutoff, report)


def _prune_instance(instance: Path, cutoff: float, report: PruneReport) -> None:
    try:
        fd = os.open(instance / "lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # in use
        times = [os.lstat(p).st_mtime for p in (instance, instance / "data") if p.exists()]
        if max(times, default=0.0) >= cutoff:
            return
        size = _tree_size(instance)
        trash = instance.with_name(f".prune-{instance.name}-{os.getpid()}")
        os.rename(instance, trash)
    finally:
        os.close(fd)
    remove_tree(trash)
    report.cache_mounts += 1
    report.cache_mount_bytes += size
