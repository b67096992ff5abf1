"""Garbage collection of a store and of a machine's `$FARM_HOME`.

What is kept (everything else older than the grace period goes):

- every blob reachable from a root: a tag, a manifest revision link or a
  `_layers` link of a repository (a registry:2 serves all three), a digest in
  a pulled base's record (`farm/bases/`), a kept cache record's layer, or a
  manifest or index written within the grace period (a build about to tag
  it); from a manifest its config, layers and subject, from an index its
  manifests;
- cache records used within the grace period, and the others while the kept
  blobs do not fit `keep_storage` (none with `--all`), most recently used first;
- unpacked snapshots of a kept layer (by diff_id) or of a kept image's layer
  chain (`chain-<hex>`); cache-mount directories unless `--all`.

Two steps. `plan_prune` is pure: listings in, what to delete out.
`execute_prune` deletes in a safe order, re-checking each thing right before
it goes: cache records first (a record whose `last_used` moved since the
plan, or that was used within the grace period, stays), then blobs (each
one's mtime and the records that named it are re-read, and the roots are
marked again after the records are gone), then local snapshots. A cache hit
records its use before it touches the blob (`cache.index.lookup`), so a
prune can never take the blob of a hit that the plan did not see.

The package follows those steps: `options` (what was asked), `plan` (the pure
planning), `listing` (reading a store for it), `sweep` (executing a plan
against a store) and `home` (this machine's snapshots and cache mounts).
`prune` runs them all; everything public is re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from buildkit.prune.home import CACHE_MOUNTS_DIR, kept_snapshot_names, prune_home
from buildkit.prune.listing import BASES_PREFIX, list_roots, list_store
from buildkit.prune.options import (
    DEFAULT_GRACE,
    PruneError,
    PruneOptions,
    format_size,
    parse_duration,
    parse_size,
)
from buildkit.prune.plan import (
    BlobInfo,
    PrunePlan,
    StoreListing,
    plan_prune,
    plan_snapshots,
    reachable,
    snapshot_names,
)
from buildkit.prune.sweep import PruneReport, execute_prune, prune_store
from buildkit.store.base import Store

__all__ = [
    "BASES_PREFIX",
    "CACHE_MOUNTS_DIR",
    "DEFAULT_GRACE",
    "BlobInfo",
    "PruneError",
    "PruneOptions",
    "PrunePlan",
    "PruneReport",
    "StoreListing",
    "execute_prune",
    "format_size",
    "kept_snapshot_names",
    "list_roots",
    "list_store",
    "parse_duration",
    "parse_size",
    "plan_prune",
    "plan_snapshots",
    "prune",
    "prune_home",
    "prune_store",
    "reachable",
    "snapshot_names",
]


def prune(
    store: Store,
    home: Path | None,
    options: PruneOptions,
    *,
    clock: Callable[[], float] = time.time,
) -> PruneReport:
    """The whole of `farm prune`: the store, then this machine's `home`."""
    plan, report = prune_store(store, options, clock=clock)
    if home is not None:
        prune_home(home, kept_snapshot_names(store, plan), options, now=clock(), report=report)
    return report
