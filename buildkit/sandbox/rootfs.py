"""The step's root filesystem, built inside the helper's own mount namespace.

Runs as pid 1 of the step's pid namespace, before anything untrusted does, so
nothing races the path resolution below. Layout of the per-step scratch dir,
which is a tmpfs mounted only in this namespace (the host never sees it):

    <scratch>/stub   the bottom lower layer: empty mount points (proc, sys, dev,
                     etc/hosts, etc/resolv.conf, etc/hostname, mount targets),
                     so creating them never writes to the upper dir
    <scratch>/files  hosts, resolv.conf, hostname: bound over the stubs
    <scratch>/root   the overlay (lower dirs + stub, upper, work); pivot_root target

A mount point the stub layer cannot supply (a real layer shadows it with a
symlink that leads nowhere, or an opaque dir) is created in the merged root and
reported back, so the caller removes it from the upper dir after the run.
"""

from __future__ import annotations

import os
import stat

from buildkit.sandbox import linux
from buildkit.sandbox.base import BindMount, StepSpec, TmpfsMount

# The OCI/Docker default masked and read-only paths.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
ETC_FILES = ("hosts", "resolv.conf", "hostname")

_NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
_MAX_SYMLINKS = 40


class RootfsError(Exception):
    """The step's root cannot be assembled as the spec asks."""


def _resolve(root: str, path: str, created: list[str], kind: str | None) -> str:
    """The host path of `path` inside `root`, following symlinks as if `root` were `/`.

    With `kind` ("dir" or "file"), missing components are created (parents as
    dirs) and their root-relative paths appended to `created`.
    """
    pending = [p for p in path.split("/") if p]
    parts: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        host = os.path.join(root, *parts, name)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            if kind is None:
                raise
            if pending or kind == "dir":
                os.mkdir(host, 0o755)
            else:
                os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            created.append("/".join([*parts, name]))
            parts.append(name)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise RootfsError(f"too many symlinks resolving {path}")
            target = os.readlink(host)
            if target.startswith("/"):
                parts = []
            pending[:0] = [p for p in target.split("/") if p]
            continue
        parts.append(name)
    return os.path.join(root, *parts)


def _mount_point(root: str, path: str, created: list[str], is_dir: bool) -> str:
    host = _resolve(root, path, created, "dir" if is_dir else "file")
    if os.path.isdir(host) != is_dir or os.path.islink(host):
        want = "directory" if is_dir else "file"
        raise RootfsError(f"cannot mount on {path}: the image has no {want} there")
    return host


def _stub(stub: str, path: str, is_dir: bool) -> None:
    """Create `path` (and its parents) in the stub layer."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise RootfsError(f"mount target {path} contains '..'")
    current = stub
    for i, name in enumerate(parts):
        current = os.path.join(current, name)
        last = i == len(parts) - 1
        if os.path.lexists(current):
            continue
        if last and not is_dir:
            os.close(os.open(current, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        else:
            os.mkdir(current, 0o755)


def _bind(source: str, target: str, flags: int) -> None:
    linux.mount(source, target, None, linux.MS_BIND)
    linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | flags)


def _write(path: str, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)


def _mount_proc(root: str) -> None:
    proc = os.path.join(root, "proc")
    linux.mount("proc", proc, "proc", _NOSUID_NODEV_NOEXEC)
    for path in READONLY_PATHS:
        host = os.path.join(root, path.lstrip("/"))
        if os.path.lexists(host):
            linux.mount(host, host, None, linux.MS_BIND | linux.MS_REC)
            flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | _NOSUID_NODEV_NOEXEC
            linux.mount(None, host, None, flags)


def _mount_sys(root: str) -> None:
    sys_dir = os.path.join(root, "sys")
    linux.mount("sysfs", sys_dir, "sysfs", linux.MS_RDONLY | _NOSUID_NODEV_NOEXEC)


def _mask(root: str) -> None:
    for path in MASKED_PATHS:
        host = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(host) and not os.path.islink(host):
            linux.mount("tmpfs", host, "tmpfs", linux.MS_RDONLY | _NOSUID_NODEV_NOEXEC, "size=0")
        elif os.path.exists(host):
            _bind("/dev/null", host, linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NOEXEC)


def _mount_dev(root: str) -> None:
    dev = os.path.join(root, "dev")
    linux.mount("tmpfs", dev, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755,size=65536k")
    for name in DEVICES:
        node = os.path.join(dev, name)
        _write(node, "")
        # The bind keeps the host devtmpfs mount's "dev" flag: only these nodes work.
        _bind(f"/dev/{name}", node, linux.MS_NOSUID | linux.MS_NOEXEC)
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, name), 0o755)
    linux.mount(
        "devpts", os.path.join(dev, "pts"), "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )  # fmt: skip
    linux.mount("shm", os.path.join(dev, "shm"), "tmpfs", _NOSUID_NODEV_NOEXEC,
                "mode=1777,size=65536k")  # fmt: skip
    linux.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", _NOSUID_NODEV_NOEXEC)
    links = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
             "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}  # fmt: skip
    for name, target in links.items():
        os.symlink(target, os.path.join(dev, name))


def prepare(spec: StepSpec, scratch: str) -> list[str]:
    """Build the step's root and pivot into it.

    Call in a process that already has its own pid namespace (it mounts a
    fresh /proc for it). Unshares the mount namespace itself. Returns the
    root-relative paths it had to create in the merged root (see module doc).
    """
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("farm-step", scratch, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV,
                "mode=0700,size=4m")  # fmt: skip
    stub, files, root = (os.path.join(scratch, d) for d in ("stub", "files", "root"))
    for d in (stub, files, root):
        os.mkdir(d, 0o755)

    binds = {
        "hosts": spec.hosts,
        "resolv.conf": spec.resolv_conf,
        "hostname": spec.hostname_file if spec.hostname_file is not None else spec.hostname + "\n",
    }
    for name, content in binds.items():
        _write(os.path.join(files, name), content)
    for d in ("proc", "sys", "dev", "etc"):
        _stub(stub, d, True)
    for name in ETC_FILES:
        _stub(stub, f"etc/{name}", False)
    mount_dirs: dict[str, bool] = {}
    for m in spec.mounts:
        is_dir = isinstance(m, TmpfsMount) or os.path.isdir(m.source)
        mount_dirs[m.target] = is_dir
        _stub(stub, m.target, is_dir)

    # The overlay's options are named by links in the scratch tmpfs, relative to
    # it: what the step reads back in /proc/self/mountinfo names no host path.
    lowers = []
    for i, path in enumerate(spec.lower_dirs):
        os.symlink(path, os.path.join(scratch, f"l{i}"))
        lowers.append(f"l{i}")
    os.symlink(spec.upper_dir, os.path.join(scratch, "upper"))
    os.symlink(spec.work_dir, os.path.join(scratch, "work"))
    os.chdir(scratch)
    options = f"lowerdir={':'.join([*lowers, 'stub'])},upperdir=upper,workdir=work"
    flags = linux.MS_NOSUID | linux.MS_NODEV
    linux.mount("overlay", root, "overlay", flags, options + ",index=off,redirect_dir=off")

    created: list[str] = []
    for d in ("proc", "sys", "dev"):
        _mount_point(root, d, created, True)
    _mount_proc(root)
    _mount_sys(root)
    _mask(root)
    _mount_dev(root)
    for name in ETC_FILES:
        target = _mount_point(root, f"/etc/{name}", created, False)
        _bind(os.path.join(files, name), target, _NOSUID_NODEV_NOEXEC)
    for m in sorted(spec.mounts, key=lambda m: m.target.rstrip("/").count("/")):
        target = _mount_point(root, m.target, created, mount_dirs[m.target])
        if isinstance(m, BindMount):
            ro = linux.MS_RDONLY if m.readonly else 0
            _bind(m.source, target, linux.MS_NOSUID | linux.MS_NODEV | ro)
        else:
            size = f",size={m.size_bytes}" if m.size_bytes else ""
            linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV,
                        "mode=1777" + size)  # fmt: skip

    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")
    return created


def make_cwd(path: str, uid: int, gid: int) -> None:
    """Create the step's working directory (after pivot_root) owned by the step's user."""
    current = "/"
    for name in (p for p in path.split("/") if p):
        current = os.path.join(current, name)
        if not os.path.lexists(current):
            os.mkdir(current, 0o755)
            os.chown(current, uid, gid)
