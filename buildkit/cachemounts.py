"""Persistent cache directories for `RUN --mount=type=cache`, shared on this host.

A cache is found by its key (`CacheSpec.key`): the mount's `id` (the target
path when there is none) plus what shapes a fresh one (`uid`, `gid`, `mode`,
and `from`/`source` when it is seeded from a stage). As in BuildKit the
platform is *not* part of it: `linux/amd64` and `linux/arm64` steps of one
build share a cache with the same id. Add `$TARGETPLATFORM` to the id to keep
them apart.

Layout under the cache root:

    <sha256 of key>/id          the key, for people and for pruning
    <sha256 of key>/.lock       held briefly while an instance is created
    <sha256 of key>/<n>/lock    flock'ed by whoever uses instance n
    <sha256 of key>/<n>/data    the directory a step sees

A key has one instance (`0`) unless users overlapped. Sharing, with BuildKit's
meaning:

* `shared`: users share an instance (LOCK_SH); one held exclusively gets a
  new instance rather than a wait.
* `private`: a user takes an instance nobody is using (LOCK_EX), or a new one.
* `locked`: a user takes an instance nobody is using, or waits for one.

Locks are flock(2) on a file opened per use, so they work between threads,
processes and workers on one host, and a crashed user releases its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from buildkit.scratch import remove_tree
from buildkit.treecopy import chown_if_root

Sharing = Literal["shared", "private", "locked"]
DEFAULT_MODE = 0o755


@dataclass(frozen=True)
class CacheSpec:
    """What identifies one cache; None means the option was not given."""

    id: str
    sharing: Sharing = "shared"
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    seed: str = ""  # "from\0source" when seeded from a stage, else ""

    @property
    def key(self) -> str:
        return json.dumps([self.id, self.uid, self.gid, self.mode, self.seed])

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()


#: Fills a new, empty data directory (mode 0700, root-owned) before it is used.
Seeder = Callable[[Path], None]


@contextlib.contextmanager
def open_cache(root: Path, spec: CacheSpec, seed: Seeder | None = None) -> Iterator[Path]:
    """Yield the data directory of an instance of the cache, held as `spec.sharing`
    says until the context exits. A new instance is seeded by `seed`, then given
    `uid`/`gid`/`mode` (0, 0 and 0755 when not given and not seeded)."""
    entry = root / spec.digest
    entry.mkdir(parents=True, exist_ok=True)
    id_file = entry / "id"
    if not id_file.exists():
        fd, tmp = tempfile.mkstemp(dir=entry, prefix=".id-")
        with os.fdopen(fd, "w") as f:
            f.write(spec.key + "\n")
        os.replace(tmp, id_file)
    fd, instance = _acquire(entry, spec, seed)
    try:
        yield instance / "data"
    finally:
        os.close(fd)  # releases the flock


def _acquire(entry: Path, spec: CacheSpec, seed: Seeder | None) -> tuple[int, Path]:
    exclusive = spec.sharing != "shared"
    found = _try_any(entry, exclusive)
    if found is not None:
        return found
    with locked_entry(entry):
        # Someone may have released or created an instance while we waited.
        found = _try_any(entry, exclusive)
        if found is not None:
            return found
        instances = _instances(entry)
        if spec.sharing != "locked" or not instances:
            return _create(entry, instances, spec, seed, exclusive)
        wait_on = instances[0]
    fd = _open_lock(wait_on)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the second user waits here
    except BaseException:
        os.close(fd)
        raise
    return fd, wait_on


def _instances(entry: Path) -> list[Path]:
    numbered = [p for p in entry.iterdir() if p.name.isdigit()]
    return sorted(numbered, key=lambda p: int(p.name))


def _open_lock(instance: Path) -> int:
    return os.open(instance / "lock", os.O_RDWR | os.O_CLOEXEC)


def _try_any(entry: Path, exclusive: bool) -> tuple[int, Path] | None:
    how = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    for instance in _instances(entry):
        fd = _open_lock(instance)
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd, instance
    return None


def _create(
    entry: Path, instances: list[Path], spec: CacheSpec, seed: Seeder | None, exclusive: bool
) -> tuple[int, Path]:
    number = int(instances[-1].name) + 1 if instances else 0
    new = Path(tempfile.mkdtemp(dir=entry, prefix=".new-"))
    try:
        lock = new / "lock"
        lock.touch(0o600)
        data = new / "data"
        data.mkdir(0o700)
        uid, gid, mode = 0, 0, DEFAULT_MODE
        if seed is not None:
            seed(data)
            info = os.lstat(data)
            uid, gid, mode = info.st_uid, info.st_gid, info.st_mode & 0o7777
        uid = spec.uid if spec.uid is not None else uid
        gid = spec.gid if spec.gid is not None else gid
        mode = spec.mode if spec.mode is not None else mode
        chown_if_root(data, uid, gid)
        os.chmod(data, mode)
        fd = _open_lock(new)
        # Nobody else can see the instance yet: this never blocks. Holding the
        # lock before the rename means no one else can take it first.
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        target = entry / str(number)
        try:
            os.rename(new, target)
        except BaseException:
            os.close(fd)
            raise
        return fd, target
    except BaseException:
        remove_tree(new)
        raise


@contextlib.contextmanager
def locked_entry(entry: Path) -> Iterator[None]:
    """Hold a cache key's `.lock`: whoever picks, creates or prunes its
    instances holds it meanwhile."""
    fd = os.open(entry / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
