"""`farm prune`, through the real `farm` command with its own FARM_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from buildkit.cache import index
from buildkit.cache.index import CachedLayer
from buildkit.digest import Digest
from buildkit.image import OCI_LAYER_GZIP
from buildkit.store.base import put_bytes
from buildkit.store.filesystem import FilesystemStore

FARM = [str(Path(sys.executable).with_name("farm"))]
ROOT = Path(__file__).resolve().parents[2]


def farm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARM, *args],
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "HOME": str(home.parent),
            "FARM_HOME": str(home),
        },
    )


def old(store: FilesystemStore, digest: str) -> None:
    os.utime(store.blob_path(Digest(digest)), (1000, 1000))


def test_prune_reclaims_unreferenced_blobs_and_with_all_the_cache(tmp_path):
    home = tmp_path / "farm"
    store = FilesystemStore(home / "registry")
    stray = put_bytes(store, b"x" * 12_345)
    layer = put_bytes(store, b"y" * 2_000, media_type=OCI_LAYER_GZIP)
    for blob in (stray, layer):
        old(store, blob.digest)
    cached = CachedLayer(layer.digest, Digest("sha256:" + "1" * 64), layer.size, OCI_LAYER_GZIP)
    index.record(store, "sha256:" + "2" * 64, cached, now=1000.0)
    snap = home / "snapshots" / ("3" * 64)
    snap.mkdir(parents=True)
    os.utime(snap, (1000, 1000))

    res = farm(home, "prune", "--grace", "1h")
    assert res.returncode == 0, res.stderr
    # blobs dated 1970 are outside any grace: the stray blob and the orphan snapshot go
    assert "Deleted 1 blobs (12.35kB)" in res.stdout
    assert "Deleted 1 snapshots" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("Total reclaimed space: 12.")
    assert not store.has_blob(stray.digest) and store.has_blob(layer.digest)
    assert not snap.exists()

    res = farm(home, "prune", "--all", "--grace", "0s")
    assert res.returncode == 0, res.stderr
    assert "Deleted 1 cache records" in res.stdout
    assert res.stdout.splitlines()[-1] == "Total reclaimed space: 2kB"
    assert store.list_blobs() == [] and index.list_records(store) == []

    res = farm(home, "prune", "--grace", "0s")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "Total reclaimed space: 0B\n"


def test_prune_keep_storage_and_bad_options(tmp_path):
    home = tmp_path / "farm"
    res = farm(home, "prune", "--keep-storage", "10GB", "--grace", "0s")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "Total reclaimed space: 0B\n"
    res = farm(home, "prune", "--keep-storage", "lots")
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        == "ERROR: invalid size 'lots': expected a number with B, kB, MB, GB or TB"
    )
    res = farm(home, "prune", "--grace", "1 hour")
    assert res.returncode == 1 and "invalid duration '1 hour'" in res.stderr
    assert "Traceback" not in res.stderr
