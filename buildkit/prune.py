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
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from buildkit.cache.index import CacheRecord, list_records, record_key
from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import BlobUnknown, RegistryError, StorageError, UserError
from buildkit.image import Index, Manifest, ManifestInvalid, parse_config, parse_manifest_or_index
from buildkit.snapshots import Snapshots, chain_id, remove_tree
from buildkit.store.base import NameUnknown, Store, read_blob

DEFAULT_GRACE = 3600.0
CACHE_MOUNTS_DIR = "cache-mounts"  # under $FARM_HOME, the root `open_cache` is given
BASES_PREFIX = "bases"
_MAX_MANIFEST = 4 << 20  # blobs larger than this are not read as manifests
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


class PruneError(UserError):
    """A prune option that is not one (a size or a duration)."""


# ------------------------------------------------------------ options


@dataclass(frozen=True)
class PruneOptions:
    """`all`: drop every cache record not used within `grace` (and cache mounts).
    `keep_storage`: drop least recently used records until the kept blobs fit
    in that many bytes (None: no limit; 0 with `all`)."""

    all: bool = False
    keep_storage: int | None = None
    grace: float = DEFAULT_GRACE


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(text: str) -> int:
    """`10GB`, `500MB`, `1.5g`, `0`: bytes, powers of 1024 as docker reads
    `--keep-storage` (`10GB` and `10GiB` are both 10 * 2**30)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise PruneError(f"invalid size {text!r}: expected a number with B, kB, MB, GB or TB")
    number, prefix = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgtp".index(prefix or " "))


def parse_duration(text: str) -> float:
    """`1h`, `30m`, `1h30m`, `0s`, `0`: seconds, as Go's time.ParseDuration (plus `d`)."""
    spec = text.strip()
    if spec == "0":
        return 0.0
    parts = _DURATION_RE.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise PruneError(f"invalid duration {text!r}: expected e.g. 1h, 30m, 1h30m or 0s")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def format_size(n: float) -> str:
    """Decimal units with four significant digits, as docker prints sizes: `12.35MB`."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


# ------------------------------------------------------------ planning (pure)


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


# ------------------------------------------------------------ listing a store


def _manifest_children(data: bytes) -> tuple[str, ...] | None:
    try:
        doc = parse_manifest_or_index(data)
    except (ManifestInvalid, ValueError, UnicodeDecodeError):
        return None
    subject = (doc.subject.digest,) if doc.subject is not None else ()
    if isinstance(doc, Index):
        return (*(m.digest for m in doc.manifests), *subject)
    return (doc.config.digest, *(layer.digest for layer in doc.layers), *subject)


def _read_small_json(store: Store, digest: str, size: int) -> bytes | None:
    if size > _MAX_MANIFEST:
        return None
    try:
        with store.open_blob(Digest(digest)) as f:
            if f.read(1) != b"{":
                return None
            return b"{" + f.read()
    except BlobUnknown:
        return None


def list_roots(store: Store) -> set[str]:
    """Digests named by tags, revision links, `_layers` links and base records."""
    roots: set[str] = set()
    for repo in store.repositories():
        with contextlib.suppress(NameUnknown):
            roots.update(store.revisions(repo))
            roots.update(store.linked_blobs(repo))
            for tag in store.tags(repo):
                with contextlib.suppress(RegistryError, StorageError):
                    roots.add(store.resolve(repo, tag).digest)
    for key in store.list_json(BASES_PREFIX):
        # Whatever shape a base's record has, every digest in it is kept.
        roots.update(_DIGEST_RE.findall(repr(store.get_json(key))))
    return roots


def list_store(store: Store) -> StoreListing:
    blobs: dict[str, BlobInfo] = {}
    children: dict[str, tuple[str, ...]] = {}
    for digest in store.list_blobs():
        with contextlib.suppress(BlobUnknown):
            size, mtime = store.blob_size(digest), store.blob_mtime(digest)
            blobs[digest] = BlobInfo(size, mtime)
            data = _read_small_json(store, digest, size)
            found = _manifest_children(data) if data is not None else None
            if found is not None:
                children[digest] = found
    return StoreListing(
        roots=frozenset(list_roots(store)),
        children=children,
        records=tuple(list_records(store)),
        blobs=blobs,
    )


# ------------------------------------------------------------ executing


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


# ------------------------------------------------------------ $FARM_HOME


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
        with _flock(entry / ".lock"):
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


@contextlib.contextmanager
def _flock(path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
