"""binfmt_misc: which platforms this host can emulate, and registering QEMU.

A foreign binary runs through QEMU user emulation when the kernel has a
binfmt_misc handler for its ELF header. Farm registers handlers with the F
(fix-binary) flag: the kernel opens the interpreter once, at registration, so
it works inside a sandbox's pivoted root and nothing is copied into an image.
The O and P flags (open the binary for the interpreter, keep argv[0]) are what
Debian's qemu-user-static uses too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from buildkit.errors import EmulationUnavailable
from buildkit.platforms import (
    BINFMT_MISC,
    Platform,
    emulated_platforms,
    host_platform,
    native_platforms,
    parse_platform,
)

_ELF64_LE_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
_X86_MASK = r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


@dataclass(frozen=True)
class QemuTarget:
    platform: str
    qemu_arch: str  # qemu-<arch>-static
    magic: str  # ELF header bytes, in binfmt_misc's \x notation
    mask: str

    @property
    def handler(self) -> str:
        return f"qemu-{self.qemu_arch}"


# ELF e_ident + e_type + e_machine per architecture (facts from the ELF ABI
# supplements; the masks ignore the OS ABI byte and the ELF type's low bit).
TARGETS: tuple[QemuTarget, ...] = (
    QemuTarget(
        "linux/amd64",
        "x86_64",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        _X86_MASK,
    ),
    QemuTarget(
        "linux/386",
        "i386",
        r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
        _X86_MASK,
    ),
    QemuTarget(
        "linux/arm64",
        "aarch64",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        _ELF64_LE_MASK,
    ),
    QemuTarget(
        "linux/arm/v7",
        "arm",
        r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        _ELF64_LE_MASK,
    ),
    QemuTarget(
        "linux/ppc64le",
        "ppc64le",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
        r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    ),
    QemuTarget(
        "linux/s390x",
        "s390x",
        r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
        r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    ),
    QemuTarget(
        "linux/riscv64",
        "riscv64",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        _ELF64_LE_MASK,
    ),
    QemuTarget(
        "linux/mips64le",
        "mips64el",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00",
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
)

QEMU_PACKAGE = "qemu-user-static"
_QEMU_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/libexec/qemu-binfmt")


def target_for(platform: Platform) -> QemuTarget | None:
    for target in TARGETS:
        if parse_platform(target.platform) == platform:
            return target
    return None


def find_qemu(target: QemuTarget) -> Path | None:
    """The statically linked QEMU for a target: only static binaries work
    after pivot_root, where the host's shared libraries are gone."""
    for d in _QEMU_DIRS:
        p = Path(d) / f"qemu-{target.qemu_arch}-static"
        if p.exists():
            return p.resolve()
    found = shutil.which(f"qemu-{target.qemu_arch}-static")
    return Path(found).resolve() if found else None


def registration(target: QemuTarget, interpreter: Path) -> str:
    """The line written to binfmt_misc/register."""
    return f":{target.handler}:M::{target.magic}:{target.mask}:{interpreter}:OPF"


@dataclass(frozen=True)
class Status:
    native: tuple[Platform, ...]
    emulated: tuple[Platform, ...]

    def can_run(self, platform: Platform) -> bool:
        return platform in self.native or platform in self.emulated


def status(binfmt_dir: Path = BINFMT_MISC) -> Status:
    native = native_platforms()
    emulated = tuple(p for p in emulated_platforms(binfmt_dir) if p not in native)
    return Status(native, emulated)


def require(platforms: tuple[Platform, ...], current: Status | None = None) -> None:
    """Fail before any step runs when a platform can be neither run nor emulated."""
    current = current or status()
    for plat in platforms:
        if not current.can_run(plat):
            raise EmulationUnavailable(str(plat), how_to_enable(plat))


def how_to_enable(platform: Platform) -> str:
    target = target_for(platform)
    if target is None:
        return f"Farm knows no QEMU emulator for {platform}"
    if find_qemu(target) is None:
        return (
            f"install QEMU user emulation (apt-get install {QEMU_PACKAGE}), "
            f"then run 'farm binfmt install {platform}'"
        )
    return f"register QEMU for it with 'farm binfmt install {platform}' (as root)"


def mount_binfmt_misc(binfmt_dir: Path = BINFMT_MISC) -> None:
    if (binfmt_dir / "register").exists():
        return
    subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
        check=True,
        capture_output=True,
    )


@dataclass(frozen=True)
class InstallResult:
    registered: tuple[str, ...]
    already: tuple[str, ...]
    missing: tuple[str, ...]  # platforms whose QEMU binary is not installed


def install(platforms: tuple[Platform, ...] = (), binfmt_dir: Path = BINFMT_MISC) -> InstallResult:
    """Register F-flag handlers for `platforms` (default: every foreign one
    whose QEMU is installed). Handlers already present are left alone."""
    mount_binfmt_misc(binfmt_dir)
    host = host_platform()
    wanted = [t for t in TARGETS if not platforms or parse_platform(t.platform) in platforms]
    registered, already, missing = [], [], []
    for target in wanted:
        if parse_platform(target.platform) == host:
            continue
        if (binfmt_dir / target.handler).exists():
            already.append(target.platform)
            continue
        qemu = find_qemu(target)
        if qemu is None:
            if platforms:
                missing.append(target.platform)
            continue
        fd = os.open(binfmt_dir / "register", os.O_WRONLY)
        try:
            os.write(fd, registration(target, qemu).encode())
        finally:
            os.close(fd)
        registered.append(target.platform)
    return InstallResult(tuple(registered), tuple(already), tuple(missing))


if __name__ == "__main__":  # infra/setup.sh, before Farm is installed
    done = install()
    for name in done.registered:
        print(f"binfmt: registered {name}")
