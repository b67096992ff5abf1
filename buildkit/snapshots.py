"""Unpacked filesystems under `$FARM_HOME/snapshots`, shared by every build.

Two kinds of snapshot, both usable as overlayfs lower directories:

- a layer Farm produced itself: the overlay upper directory of its step,
  kept as it is (deletions are overlay whiteouts, which overlayfs honours in
  lower directories too), named by the layer's diff_id; on a cache hit
  without it, `layer()` unpacks the layer's blob back into that form;
- a base image from the store: its layers unpacked in order into ONE
  directory, whiteouts applied, named by the chain ID of its diff_ids (the
  OCI image spec's ChainID), so an image is unpacked once however many
  builds start from it.

A snapshot appears by an atomic rename of a finished directory; readers never
see one half written, and two builds unpacking the same one both succeed.

Work in progress happens in scratch directories under `$FARM_HOME/tmp`
(`scratch.py`: locked while in use, collected after a killed build).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from buildkit.digest import CHUNK, Digest, DigestWriter
from buildkit.errors import StorageError
from buildkit.layers import apply_layer
from buildkit.scratch import collect_stale, remove_tree, scratch_dir
from buildkit.store.base import Store


def chain_id(diff_ids: Iterable[str]) -> Digest:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))."""
    chain = ""
    for diff_id in diff_ids:
        chain = (
            diff_id
            if not chain
            else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        )
    if not chain:
        raise ValueError("chain_id of no layers")
    return Digest(chain)


class Snapshots:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "snapshots"
        self.scratch = home / "tmp"
        secure_home(home)

    def path(self, key: str) -> Path:
        return self.root / key.removeprefix("sha256:")

    def get(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_dir() else None

    def new_dir(self, prefix: str = "upper-") -> contextlib.AbstractContextManager[Path]:
        """A fresh directory on the snapshots' filesystem (`scratch.scratch_dir`),
        removed on exit unless it was committed (moved away) meanwhile."""
        return scratch_dir(self.scratch, prefix)

    def collect_stale(self) -> list[str]:
        """Remove the scratch directories of builds that died (`scratch.collect_stale`)."""
        return collect_stale(self.scratch)

    def commit(self, key: str, directory: Path) -> Path:
        """Make `directory` the snapshot `key`; if one appeared meanwhile, keep
        that one and drop `directory`."""
        target = self.path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(directory, target)
        except OSError:
            if not target.is_dir():
                raise
            remove_tree(directory)
        return target

    def flattened(self, store: Store, layers: list[tuple[Digest, Digest]]) -> Path:
        """The snapshot of a base image: (blob digest, diff_id) pairs, bottom first."""
        # "chain-": a one-layer chain ID equals that layer's diff_id, and a
        # flattened snapshot (whiteouts applied) must not pass for the layer's
        # own overlay-form snapshot.
        key = "chain-" + chain_id(diff_id for _, diff_id in layers).hex
        found = self.get(key)
        if found is not None:
            return found
        with self.new_dir("unpack-") as tmp:
            for digest, _ in layers:
                with store.open_blob(digest) as blob:
                    apply_layer(blob, tmp)
            return self.commit(key, tmp)

    def layer(self, store: Store, digest: Digest, diff_id: Digest) -> Path:
        """The snapshot of one layer, as its step's upper directory was: the
        blob `digest` unpacked in overlay form (whiteouts as 0/0 character
        devices, opaque directories by xattr; needs root), named by `diff_id`
        like the snapshots the executor commits. For a cache hit on a machine
        that does not have the step's snapshot. The blob is checked against
        `digest` before the snapshot appears."""
        found = self.get(diff_id)
        if found is not None:
            return found
        with self.new_dir("layer-") as tmp:
            os.chmod(tmp, 0o755)  # as an upper directory is made: the root of the merged view
            with store.open_blob(digest) as blob:
                reader = _VerifyingReader(blob)
                apply_layer(reader, tmp, overlay=True)  # type: ignore[arg-type]
                got = reader.finish()
            if got != digest:
                raise StorageError(f"layer blob {digest}: its content has digest {got}")
            return self.commit(diff_id, tmp)


class _VerifyingReader:
    """A blob reader that hashes what is read; `finish` reads the rest and gives the digest."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = DigestWriter()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        return data

    def finish(self) -> Digest:
        while data := self.raw.read(CHUNK):
            self.hash.update(data)
        return self.hash.digest


def secure_home(home: Path) -> None:
    """Make FARM_HOME reachable by its owner only (0700), as Docker keeps
    /var/lib/docker: snapshots hold what build steps wrote, setuid programs
    and device nodes included, and no other user of the host may run or open
    them through it."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.stat().st_mode & 0o077:
        os.chmod(home, 0o700)
