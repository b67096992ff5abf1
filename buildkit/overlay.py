"""Overlay mounts on the host side, for COPY/ADD and for reading a stage's files.

RUN steps mount their overlay inside the sandbox's own mount namespace; the
engine itself needs a merged view too: to copy files into a new layer
(lower = the parent snapshots, upper = the new layer) and to read another
stage's filesystem for `COPY --from` (lower only).

Lower directories are named through short links under `<home>/l/` and the
mount runs with that directory as its working directory, so the mount options
stay far below the kernel's one-page limit even for images with many layers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from buildkit.errors import StorageError
from buildkit.scratch import scratch_dir


def _short_link(links: Path, target: Path) -> str:
    name = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    link = links / name
    if not link.is_symlink():
        # Unique per process and thread: stages of one build mount in parallel.
        tmp = links / f".{name}.{os.getpid()}.{threading.get_ident()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return f"l/{name}"


def _mount(options: str, target: Path, cwd: Path) -> None:
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise StorageError(f"cannot mount overlay at {target}: {proc.stderr.strip()}")


def _umount(target: Path) -> None:
    proc = subprocess.run(["umount", str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        # Busy (a process still has a file open): detach, the kernel finishes later.
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextlib.contextmanager
def merged(
    home: Path,
    lowers: Sequence[Path],
    upper: Path | None = None,
) -> Iterator[Path]:
    """Mount `lowers` (top first) with an optional writable `upper`; yield the
    merged root. Without an upper the view is read-only."""
    links = home / "l"
    links.mkdir(parents=True, exist_ok=True)
    # A locked scratch dir: if this process is killed while the view is
    # mounted, the next build's `collect_stale` detaches it and cleans up.
    with scratch_dir(home / "tmp", "ovl-") as root:
        target = root / "merged"
        target.mkdir()
        layers = [_short_link(links, p) for p in lowers]
        # overlayfs wants two lower dirs when there is no upper, and at least one
        # lower in any case: pad with empty directories.
        empty = root / "empty"
        empty.mkdir()
        pad = _short_link(links, empty)
        while len(layers) < (1 if upper else 2):
            layers.append(pad)
        # nosuid, nodev: the host never runs a setuid program or opens a device
        # node of an image through a view, whatever the image holds.
        options = "nosuid,nodev,lowerdir=" + ":".join(layers)
        if upper is not None:
            work = root / "work"
            work.mkdir()
            options += f",upperdir={upper},workdir={work}"
        options += ",index=off,xino=off,redirect_dir=off,metacopy=off"
        _mount(options, target, cwd=home)
        try:
            yield target
        finally:
            _umount(target)
            # The pad link pointed into this temporary directory.
            with contextlib.suppress(FileNotFoundError):
                (links / pad.removeprefix("l/")).unlink()
