"""Snapshots.layer: a cache hit's layer blob → an overlay lower directory."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from buildkit.errors import StorageError
from buildkit.layers import diff_upperdir, tar_directory
from buildkit.snapshots import Snapshots
from buildkit.store.filesystem import FilesystemStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, trusted xattrs)")


def step_upper(root: Path) -> Path:
    """An upper dir as a RUN leaves it: `gone` deleted, `opq` replaced, `added` new."""
    root.mkdir(parents=True)
    os.mknod(root / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (root / "opq").mkdir()
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    (root / "opq" / "new").write_text("new")
    (root / "added").write_text("added")
    return root


def store_layer(store: FilesystemStore, tree: Path, *, overlay: bool = True):
    out = io.BytesIO()
    layer = (diff_upperdir if overlay else tar_directory)(tree, out, source_date_epoch=0)
    out.seek(0)
    store.put_blob(out, layer.digest, media_type=layer.media_type)
    return layer


@pytest.fixture
def env(tmp_path):
    return FilesystemStore(tmp_path / "store"), Snapshots(tmp_path / "home")


def test_layer_unpacks_in_overlay_form_once(env, tmp_path):
    store, snapshots = env
    layer = store_layer(store, step_upper(tmp_path / "upper"))
    path = snapshots.layer(store, layer.digest, layer.diff_id)
    assert path == snapshots.path(layer.diff_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    gone = os.lstat(path / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(path / "opq", "trusted.overlay.opaque") == b"y"
    assert (path / "added").read_text() == "added"
    # Present now: not unpacked again, even when the blob is gone.
    store.blob_path(layer.digest).unlink()
    assert snapshots.layer(store, layer.digest, layer.diff_id) == path
    assert not any(snapshots.scratch.iterdir())


def test_layer_reuses_the_snapshot_a_step_committed(env, tmp_path):
    store, snapshots = env
    upper = step_upper(tmp_path / "upper")
    layer = store_layer(store, upper)
    committed = snapshots.commit(layer.diff_id, upper)
    assert snapshots.layer(store, layer.digest, layer.diff_id) == committed


def test_corrupt_blob_never_becomes_a_snapshot(env, tmp_path):
    store, snapshots = env
    layer = store_layer(store, step_upper(tmp_path / "upper"))
    blob = store.blob_path(layer.digest)
    data = blob.read_bytes()
    # Same tar, different trailing bytes after the gzip member: the tar reads fine.
    blob.write_bytes(data + b"\0" * 16)
    with pytest.raises(StorageError, match="its content has digest"):
        snapshots.layer(store, layer.digest, layer.diff_id)
    assert snapshots.get(layer.diff_id) is None
    assert not any(snapshots.scratch.iterdir())


def test_concurrent_unpacks_agree(env, tmp_path):
    store, snapshots = env
    layer = store_layer(store, step_upper(tmp_path / "upper"))
    results: list[Path] = []
    errors: list[BaseException] = []

    def unpack() -> None:
        try:
            results.append(snapshots.layer(store, layer.digest, layer.diff_id))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=unpack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(results) == {snapshots.path(layer.diff_id)}
    assert sorted(p.name for p in snapshots.root.iterdir()) == [layer.diff_id.hex]


@pytest.mark.sandbox
def test_layer_snapshot_over_a_base_image_snapshot(env, tmp_path):
    store, snapshots = env
    base = tmp_path / "base"
    (base / "opq").mkdir(parents=True)
    (base / "opq" / "old").write_text("old")
    (base / "gone").write_text("bye")
    (base / "kept").write_text("kept")
    base_layer = store_layer(store, base, overlay=False)
    lower = snapshots.flattened(store, [(base_layer.digest, base_layer.diff_id)])
    step = store_layer(store, step_upper(tmp_path / "upper"))
    top = snapshots.layer(store, step.digest, step.diff_id)
    merged = tmp_path / "merged"
    merged.mkdir()
    opts = f"lowerdir={top}:{lower}"
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {proc.stderr.decode().strip()}")
    try:
        seen = sorted(p.relative_to(merged).as_posix() for p in merged.rglob("*"))
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert seen == ["added", "kept", "opq", "opq/new"]
