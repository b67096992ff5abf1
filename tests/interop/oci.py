"""Reading OCI image layouts and comparing flattened images, for the interop tests.

The layout is read with plain `json` (not Farm's own parsers), so a test reads
Farm's output the way an independent tool would. `flatten` applies the layers
in order (whiteouts and opaque directories included) with
`buildkit.layers.apply_layer`; `snapshot` describes the result path by path;
`diff_snapshots` and `diff_configs` report differences as readable lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildkit.layers import apply_layer

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Image:
    layout: Path
    manifest: dict[str, Any]
    config: dict[str, Any]

    def blob(self, digest: str) -> Path:
        algo, hexdigest = digest.split(":", 1)
        return self.layout / "blobs" / algo / hexdigest

    @property
    def runtime(self) -> dict[str, Any]:
        return self.config.get("config") or {}


def unpack_archive(archive: Path, dest: Path) -> Path:
    """An OCI archive (a tar of a layout) into the directory `dest`."""
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def load_image(layout: Path, arch: str | None = None) -> Image:
    """The image `index.json` points to; through image indexes, the manifest for
    linux/`arch` (an index with several platforms needs `arch`)."""
    desc = _only(read_json(layout / "index.json")["manifests"], arch)
    while True:
        algo, hexdigest = desc["digest"].split(":", 1)
        doc = read_json(layout / "blobs" / algo / hexdigest)
        media_type = doc.get("mediaType") or desc.get("mediaType")
        if media_type not in INDEX_TYPES and "manifests" not in doc:
            break
        desc = _only(doc["manifests"], arch)
    algo, hexdigest = doc["config"]["digest"].split(":", 1)
    config = read_json(layout / "blobs" / algo / hexdigest)
    return Image(layout, doc, config)


def _only(descs: list[dict[str, Any]], arch: str | None) -> dict[str, Any]:
    if arch is not None and any("platform" in d for d in descs):
        descs = [d for d in descs if (d.get("platform") or {}).get("architecture") == arch]
    assert len(descs) == 1, f"expected one descriptor for {arch or 'the image'}: {descs}"
    return descs[0]


def flatten(image: Image, dest: Path) -> Path:
    """Apply the image's layers in order onto the empty directory `dest`."""
    dest.mkdir(parents=True)
    for layer in image.manifest["layers"]:
        with open(image.blob(layer["digest"]), "rb") as f:
            apply_layer(f, dest, same_owner=True)
    return dest


# ------------------------------------------------------------ snapshots


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
        (stat.S_ISFIFO, "fifo"),
    ):
        if test(mode):
            return name
    return "other"


def snapshot(root: Path) -> dict[str, dict[str, Any]]:
    """Every path under `root` (as `/a/b`, the root itself excluded): type,
    permission bits (with setuid/setgid/sticky), uid, gid, and the sha256 of a
    file, the target of a symlink, the device numbers of a device, and for a
    file with several names, all its names (a hardlink group)."""
    entries: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(path, root)
            st = os.lstat(path)
            entry: dict[str, Any] = {
                "type": _kind(st.st_mode),
                "mode": oct(stat.S_IMODE(st.st_mode)),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
                entry["size"] = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
                del entry["mode"]  # symlink permission bits mean nothing on Linux
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            entries[rel] = entry
    for names in inodes.values():
        for name in names:
            entries[name]["hardlinks"] = tuple(sorted(names))
    return entries


def is_empty_stub(entry: dict[str, Any], root: Path, path: str) -> bool:
    """An empty file or an empty directory."""
    if entry["type"] == "file":
        return entry["size"] == 0
    if entry["type"] == "dir":
        return not os.listdir(root / path.lstrip("/"))
    return False


def diff_snapshots(
    farm: dict[str, dict[str, Any]],
    other: dict[str, dict[str, Any]],
    *,
    ignore_paths: set[str] = frozenset(),  # type: ignore[assignment]
    ignore_fields: dict[str, set[str]] | None = None,
) -> list[str]:
    """Readable differences between two snapshots (`farm` first)."""
    ignore_fields = ignore_fields or {}
    lines = []
    for path in sorted(set(farm) | set(other)):
        if path in ignore_paths:
            continue
        a, b = farm.get(path), other.get(path)
        if a is None:
            lines.append(f"{path}: only in buildah {b}")
        elif b is None:
            lines.append(f"{path}: only in farm {a}")
        else:
            skip = ignore_fields.get(path, set())
            for key in sorted(set(a) | set(b)):
                if key not in skip and a.get(key) != b.get(key):
                    lines.append(f"{path}: {key} farm={a.get(key)!r} buildah={b.get(key)!r}")
    return lines


# ------------------------------------------------------------ image configs

CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
)


def config_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The compared fields of an image config's `config`. An absent field, null
    and an empty list, map or string are the same value: the image-spec's Go
    types mark them all `omitempty`, so writers differ only in spelling."""
    runtime = config.get("config") or {}
    return {key: runtime.get(key) or None for key in CONFIG_FIELDS}


def diff_configs(farm: dict[str, Any], other: dict[str, Any]) -> list[str]:
    return [
        f"config.{key}: farm={farm[key]!r} buildah={other[key]!r}"
        for key in CONFIG_FIELDS
        if farm[key] != other[key]
    ]
