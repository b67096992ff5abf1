"""Executing a prune plan against a store, re-checking each thing before it goes.

`prune_store` plans and executes; `execute_prune` deletes cache records first
(those used or changed since the plan stay), then blobs, after marking the
roots again; `PruneReport` counts what went (and what a re-check saved).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from buildkit.cache.index import CacheRecord, list_records, record_key
from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import BlobUnknown
from buildkit.prune.listing import _manifest_children, _read_small_json, list_roots, list_store
from buildkit.prune.options import PruneOptions
from buildkit.prune.plan import PrunePlan, plan_prune, reachable
from buildkit.store.base import Store


@dataclass
class PruneReport:
    records: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    cache_mounts: int = 0
    cache_mount_bytes: int = 0
    scratch: int = 0
    kept: list[str] = field(default_factory=list)  # what a re-check saved, for the curious

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + self.snapshot_bytes + self.cache_mount_bytes


def _still_stale(store: Store, planned: CacheRecord, cutoff: float) -> bool:
    """True if the record is as the plan saw it and unused since `cutoff`."""
    now = store.get_json(record_key(planned.key))
    if now is None:
        return True
    try:
        current = CacheRecord.from_json(now)
    except (KeyError, TypeError, ValueError, InvalidDigest):
        return True
    return current == planned and max(current.last_used, current.created) < cutoff


def prune_store(
    store: Store,
    options: PruneOptions,
    *,
    clock: Callable[[], float] = time.time,
    between: Callable[[PrunePlan], None] | None = None,
) -> tuple[PrunePlan, PruneReport]:
    """Plan and execute a prune of `store`. `between` runs after planning,
    before anything is deleted (for tests of the re-checks)."""
    plan = plan_prune(list_store(store), options, now=clock())
    if between is not None:
        between(plan)
    return plan, execute_prune(store, plan, options, clock=clock)


def execute_prune(
    store: Store,
    plan: PrunePlan,
    options: PruneOptions,
    *,
    clock: Callable[[], float] = time.time,
    report: PruneReport | None = None,
) -> PruneReport:
    report = report if report is not None else PruneReport()
    for rec in plan.records:
        if _still_stale(store, rec, clock() - options.grace):
            if store.delete_json(record_key(rec.key)):
                report.records += 1
        else:
            report.kept.append(rec.key)
    if not plan.blobs:
        return report
    named_by: dict[str, list[CacheRecord]] = {}
    for rec in (*plan.records, *plan.kept_records):
        if rec.layer is not None:
            named_by.setdefault(rec.layer.digest, []).append(rec)
    # Mark again, now that the records are gone: what was tagged, linked,
    # recorded or written since the plan stays.
    roots = list_roots(store)
    live_records = list_records(store)
    roots.update(r.layer.digest for r in live_records if r.layer is not None)
    children: dict[str, tuple[str, ...]] = {}
    for digest in roots:
        _children_into(store, digest, children)
    live = reachable(roots, children)
    for digest in plan.blobs:
        if digest in live or not _blob_stale(store, digest, named_by, clock() - options.grace):
            report.kept.append(digest)
            continue
        try:
            size = store.blob_size(Digest(digest))
        except BlobUnknown:
            continue
        if store.delete_blob(Digest(digest)):
            report.blobs += 1
            report.blob_bytes += size
    return report


def _children_into(store: Store, digest: str, children: dict[str, tuple[str, ...]]) -> None:
    todo = [digest]
    while todo:
        d = todo.pop()
        if d in children:
            continue
        try:
            data = _read_small_json(store, d, store.blob_size(Digest(d)))
        except (BlobUnknown, InvalidDigest):
            data = None
        found = _manifest_children(data) if data is not None else None
        children[d] = found or ()
        todo.extend(found or ())


def _blob_stale(
    store: Store, digest: str, named_by: Mapping[str, list[CacheRecord]], cutoff: float
) -> bool:
    try:
        if store.blob_mtime(Digest(digest)) >= cutoff:
            return False
    except BlobUnknown:
        return False
    # Recorded (or looked up) again since its record was deleted: it stays.
    return all(store.get_json(record_key(r.key)) is None for r in named_by.get(digest, ()))
