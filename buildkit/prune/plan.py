"""The pure half of a prune: listings in, what to delete out.

`StoreListing` (what a plan needs to know about a store), `plan_prune` and the
`PrunePlan` it returns, `reachable` (marking from the roots), and
`plan_snapshots` / `snapshot_names` for the unpacked snapshots of a machine.
No I/O: see `buildkit.prune` for the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from buildkit.cache.index import CacheRecord
from buildkit.digest import Digest
from buildkit.prune.options import PruneOptions
from buildkit.snapshots import chain_id


@dataclass(frozen=True)
class BlobInfo:
    size: int
    mtime: float


@dataclass(frozen=True)
class StoreListing:
    """What a plan needs to know about a store.

    `roots`: digests named by tags, revision and `_layers` links, base records.
    `children`: for each blob that is a manifest or an index, what it refers to.
    """

    roots: frozenset[str]
    children: Mapping[str, tuple[str, ...]]
    records: tuple[CacheRecord, ...]
    blobs: Mapping[str, BlobInfo]


@dataclass(frozen=True)
class PrunePlan:
    records: tuple[CacheRecord, ...]  # to delete, least recently used first
    blobs: tuple[str, ...]  # to delete, in digest order
    kept_records: tuple[CacheRecord, ...]
    kept_blobs: frozenset[str]
    reclaimable: int  # bytes of `blobs`


def reachable(roots: Iterable[str], children: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest not in seen:
            seen.add(digest)
            todo.extend(children.get(digest, ()))
    return seen


def plan_prune(listing: StoreListing, options: PruneOptions, *, now: float) -> PrunePlan:
    """What to delete: see the module docstring."""
    cutoff = now - options.grace
    blobs = listing.blobs
    fresh_blobs = {d for d, info in blobs.items() if info.mtime >= cutoff}
    pinned = reachable(listing.roots | fresh_blobs, listing.children)

    fresh: list[CacheRecord] = []
    stale: list[CacheRecord] = []
    doomed: list[CacheRecord] = []
    for rec in listing.records:
        if max(rec.last_used, rec.created) >= cutoff:
            fresh.append(rec)
        elif rec.layer is not None and rec.layer.digest not in blobs:
            doomed.append(rec)  # a miss anyway: its blob is gone
        else:
            stale.append(rec)
    stale.sort(key=lambda r: (r.last_used, r.key))

    users: dict[str, int] = {}
    for rec in (*fresh, *stale):
        if rec.layer is not None:
            users[rec.layer.digest] = users.get(rec.layer.digest, 0) + 1
    kept = pinned | set(users)
    total = sum(blobs[d].size for d in kept if d in blobs)

    budget = options.keep_storage
    drop_all = options.all and budget is None  # even records that hold no blob
    kept_records = [*fresh]
    for i, rec in enumerate(stale):
        if not drop_all and (budget is None or total <= budget):
            kept_records.extend(stale[i:])
            break
        doomed.append(rec)
        if rec.layer is not None:
            users[rec.layer.digest] -= 1
            if not users[rec.layer.digest] and rec.layer.digest not in pinned:
                kept.discard(rec.layer.digest)
                total -= blobs[rec.layer.digest].size
    gone = sorted(d for d in blobs if d not in kept)
    return PrunePlan(
        records=tuple(doomed),
        blobs=tuple(gone),
        kept_records=tuple(sorted(kept_records, key=lambda r: r.key)),
        kept_blobs=frozenset(kept & set(blobs)),
        reclaimable=sum(blobs[d].size for d in gone),
    )


def plan_snapshots(
    snapshots: Mapping[str, float], keep: Iterable[str], *, now: float, grace: float
) -> list[str]:
    """Snapshot names (`<hex>`, `chain-<hex>`, with their mtimes) to remove:
    those not in `keep` and not modified within `grace`."""
    kept = set(keep)
    return sorted(n for n, mtime in snapshots.items() if n not in kept and mtime < now - grace)


def snapshot_names(
    diff_id_lists: Iterable[Iterable[str]], layer_diff_ids: Iterable[str]
) -> set[str]:
    """The snapshots worth keeping: each layer's own (`<hex>`) and every prefix
    chain of each image (`chain-<hex>`)."""
    names = {Digest(d).hex for d in layer_diff_ids}
    for diff_ids in diff_id_lists:
        chain: list[str] = []
        for diff_id in diff_ids:
            chain.append(diff_id)
            names.add(Digest(diff_id).hex)
            names.add("chain-" + chain_id(chain).hex)
    return names
