"""Scratch directories under `$FARM_HOME/tmp`, and what a killed build left there.

Each scratch directory `<tmp>/<name>` has a lock file `<name>.lock` on which
its creator holds an exclusive flock while it uses the directory. A build
killed with SIGKILL cannot remove its directories, nor unmount the overlay
views it had mounted in them (COPY and `COPY --from` read through host-side
mounts, `overlay.py`), but its locks die with it: `collect_stale()` (the next
build, or `farm prune`) detaches every mount below a directory whose lock it
can take, then removes the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def remove_tree(path: Path) -> None:
    """rmtree that also removes read-only directories a step left behind."""

    def onerror(func, p, _exc):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if not os.path.islink(p):  # never the mode of what a link points to
                os.chmod(p, 0o700)
        with contextlib.suppress(OSError):
            func(p)

    shutil.rmtree(path, onerror=onerror)


@contextlib.contextmanager
def scratch_dir(scratch: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory under `scratch`, locked while in use, removed on exit
    unless it was moved away meanwhile."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=scratch, prefix=prefix))
    lock = path.with_name(path.name + ".lock")
    part = path.with_name(path.name + ".lock.part")
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(part, lock)  # visible to collect_stale() only once locked
        yield path
    finally:
        try:
            if path.exists():
                remove_tree(path)
        finally:
            for name in (lock, part):
                with contextlib.suppress(FileNotFoundError):
                    name.unlink()
            os.close(fd)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path` in this mount namespace, deepest first.
    The kernel writes them canonical, so `path` is resolved first."""
    top = os.fsencode(os.path.realpath(path))
    found = []
    for line in MOUNTINFO.read_bytes().split(b"\n"):  # bytes: any name, any separator
        fields = line.split(b" ")
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == top or point.startswith(top + b"/"):
            found.append(Path(os.fsdecode(point)))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unescape(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field)


def detach(target: Path) -> None:
    """Unmount `target` lazily: whoever still has a file open keeps it until closed."""
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def collect_stale(scratch: Path) -> list[str]:
    """Remove the scratch directories of builds that died (their lock is free),
    detaching what those builds left mounted in them first; return their names."""
    removed: list[str] = []
    if not scratch.is_dir():
        return removed
    for lock in sorted(scratch.glob("*.lock")):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its build is alive
            path = lock.with_name(lock.name.removesuffix(".lock"))
            if path.is_dir():
                for point in mounts_under(path):
                    detach(point)
                if mounts_under(path):
                    continue  # never delete through a mount; the lock stays for next time
                remove_tree(path)
                if path.exists():
                    continue  # something could not go: the lock stays for next time
                removed.append(path.name)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        finally:
            os.close(fd)
    return removed
