"""Unpacked filesystems under `$FARM_HOME/snapshots`, shared by every build.

Two kinds of snapshot, both usable as overlayfs lower directories:

- a layer Farm produced itself: the overlay upper directory of its step,
  kept as it is (deletions are overlay whiteouts, which overlayfs honours in
  lower directories too), named by the layer's diff_id;
- a base image from the store: its layers unpacked in order into ONE
  directory, whiteouts applied, named by the chain ID of its diff_ids (the
  OCI image spec's ChainID), so an image is unpacked once however many
  builds start from it.

A snapshot appears by an atomic rename of a finished directory; readers never
see one half written, and two builds unpacking the same one both succeed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from buildkit.digest import Digest
from buildkit.layers import apply_layer
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

    def path(self, key: str) -> Path:
        return self.root / key.removeprefix("sha256:")

    def get(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_dir() else None

    @contextlib.contextmanager
    def new_dir(self, prefix: str = "upper-") -> Iterator[Path]:
        """A fresh directory on the snapshots' filesystem, removed on exit
        unless it was committed (moved away) meanwhile."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=self.scratch, prefix=prefix))
        try:
            yield path
        finally:
            if path.exists():
                remove_tree(path)

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
        key = chain_id(diff_id for _, diff_id in layers)
        found = self.get(key)
        if found is not None:
            return found
        with self.new_dir("unpack-") as tmp:
            for digest, _ in layers:
                with store.open_blob(digest) as blob:
                    apply_layer(blob, tmp)
            return self.commit(key, tmp)


def remove_tree(path: Path) -> None:
    """rmtree that also removes read-only directories a step left behind."""

    def onerror(func, p, _exc):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        with contextlib.suppress(OSError):
            func(p)

    shutil.rmtree(path, onerror=onerror)
