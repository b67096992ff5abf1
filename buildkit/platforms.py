"""OCI platforms: parsing, normalising and formatting, as containerd does.

`parse_platform("aarch64")` and `parse_platform("linux/arm64/v8")` are both
`linux/arm64`; `linux/arm` is `linux/arm/v7`. A platform string names an OS and
an architecture, optionally a variant: `os/arch[/variant]`, or just an
architecture (the OS is then linux), or `local` (the host).

Host detection lives at the bottom: `host_platform()` reads `uname -m` and
`emulated_platforms()` reads the binfmt_misc handlers the kernel has enabled.
"""

from __future__ import annotations

import os
import platform as _stdlib_platform
from dataclasses import dataclass
from pathlib import Path

from buildkit.errors import PlatformError

# Architecture aliases, as containerd's normalizeArch: alias → (arch, variant).
# A variant of None means "keep the variant given" (or the default below).
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "amd64": ("amd64", None),
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "arm64": ("arm64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "arm": ("arm", None),
    "386": ("386", None),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64le": ("mips64le", None),
}

# Variants each architecture accepts, and the one it gets when none is given.
_VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "amd64": (("", "v1", "v2", "v3", "v4"), ""),
    "arm64": (("", "v8", "v9"), ""),
    "arm": (("v5", "v6", "v7", "v8"), "v7"),
}

_OSES = ("linux", "windows", "darwin", "freebsd")

KNOWN = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
)

_VALID_FORMS = (
    "expected os/arch[/variant] (e.g. "
    + ", ".join(KNOWN)
    + "), an architecture alone (amd64, x86_64, aarch64, armhf, armel, i386, ...), or 'local'"
)


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    @property
    def arch_variant(self) -> str:
        """`arm64`, `armv7`: what BuildKit puts in TARGETARCH+TARGETVARIANT."""
        return self.architecture + self.variant

    def to_oci(self) -> dict[str, str]:
        """The `platform` object of an OCI index entry."""
        obj = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            obj["variant"] = self.variant
        return obj


def _normalise_arch(arch: str, variant: str, original: str) -> tuple[str, str]:
    try:
        arch, forced = _ARCH_ALIASES[arch]
    except KeyError:
        raise PlatformError(
            f"invalid platform {original!r}: unknown architecture {arch!r}; {_VALID_FORMS}"
        ) from None
    if forced is not None and not variant:
        variant = forced
    allowed, default = _VARIANTS.get(arch, (("",), ""))
    if variant and variant not in allowed:
        raise PlatformError(
            f"invalid platform {original!r}: {arch} has no variant {variant!r}; {_VALID_FORMS}"
        )
    variant = variant or default
    # containerd drops the default variants: arm64/v8 is arm64, amd64/v1 is amd64.
    if (arch, variant) in (("arm64", "v8"), ("amd64", "v1")):
        variant = ""
    return arch, variant


def parse_platform(text: str, *, local: Platform | None = None) -> Platform:
    """Parse one platform string; `local` names the host (default: detected)."""
    original = text
    text = text.strip().lower()
    if not text:
        raise PlatformError(f"invalid platform {original!r}: empty; {_VALID_FORMS}")
    if text == "local":
        return local or host_platform()
    parts = text.split("/")
    if len(parts) > 3 or any(not p for p in parts):
        raise PlatformError(f"invalid platform {original!r}: {_VALID_FORMS}")
    if len(parts) == 1:
        if parts[0] in _OSES:
            # An OS alone means that OS on the host's architecture.
            host = local or host_platform()
            return Platform(parts[0], host.architecture, host.variant)
        os_name, arch, variant = "linux", parts[0], ""
    elif len(parts) == 2:
        os_name, arch, variant = parts[0], parts[1], ""
    else:
        os_name, arch, variant = parts
    if os_name not in _OSES:
        raise PlatformError(
            f"invalid platform {original!r}: unknown operating system {os_name!r}; {_VALID_FORMS}"
        )
    arch, variant = _normalise_arch(arch, variant, original)
    return Platform(os_name, arch, variant)


def parse_platforms(
    text: str | list[str] | tuple[str, ...], *, local: Platform | None = None
) -> tuple[Platform, ...]:
    """Parse a comma list (or several lists), dropping duplicates, keeping order."""
    items = [text] if isinstance(text, str) else list(text)
    seen: dict[Platform, None] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                raise PlatformError(f"invalid platform list {item!r}: empty entry; {_VALID_FORMS}")
            seen.setdefault(parse_platform(part, local=local), None)
    return tuple(seen)


def format_platforms(platforms: tuple[Platform, ...] | list[Platform]) -> str:
    return ",".join(str(p) for p in platforms)


def matches(want: Platform, have: Platform) -> bool:
    """Whether an image for `have` satisfies a request for `want`.

    An image without a variant satisfies any variant of its architecture, and
    arm/v7 hosts run arm/v6 images (containerd's platform matcher).
    """
    if (want.os, want.architecture) != (have.os, have.architecture):
        return False
    if not have.variant or want.variant == have.variant:
        return True
    if want.architecture == "arm":
        order = ("v5", "v6", "v7", "v8")
        return (
            have.variant in order
            and want.variant in order
            and (order.index(have.variant) <= order.index(want.variant))
        )
    return False


# ---------------------------------------------------------------- the host

# binfmt_misc handler names (as qemu-user-static registers them) → platform.
QEMU_HANDLERS: dict[str, str] = {
    "qemu-x86_64": "linux/amd64",
    "qemu-aarch64": "linux/arm64",
    "qemu-arm": "linux/arm/v7",
    "qemu-i386": "linux/386",
    "qemu-ppc64le": "linux/ppc64le",
    "qemu-s390x": "linux/s390x",
    "qemu-riscv64": "linux/riscv64",
    "qemu-mips64el": "linux/mips64le",
}

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def host_platform() -> Platform:
    """The platform this machine runs natively (`uname -m`)."""
    machine = _stdlib_platform.machine() or os.uname().machine
    return parse_platform(f"linux/{machine}", local=Platform("linux", "amd64"))


def native_platforms(host: Platform | None = None) -> tuple[Platform, ...]:
    """What runs without emulation. Only the host itself: 32-bit siblings
    (386 on amd64, arm on arm64) depend on the kernel's build options, so they
    are left to binfmt_misc, which reports them when it can run them."""
    return (host or host_platform(),)


def emulated_platforms(binfmt_dir: Path = BINFMT_MISC) -> tuple[Platform, ...]:
    """Platforms an enabled binfmt_misc handler with the F flag can run."""
    found: dict[Platform, None] = {}
    try:
        entries = sorted(binfmt_dir.iterdir())
    except OSError:
        return ()
    for entry in entries:
        plat = QEMU_HANDLERS.get(entry.name)
        if plat is None:
            continue
        info = read_binfmt_handler(entry)
        if info is not None and info.enabled and "F" in info.flags:
            found.setdefault(parse_platform(plat), None)
    return tuple(found)


@dataclass(frozen=True)
class BinfmtHandler:
    name: str
    enabled: bool
    interpreter: str
    flags: str


def read_binfmt_handler(path: Path) -> BinfmtHandler | None:
    """Parse one /proc/sys/fs/binfmt_misc/<name> file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return parse_binfmt_handler(path.name, text)


def parse_binfmt_handler(name: str, text: str) -> BinfmtHandler:
    enabled = False
    interpreter = ""
    flags = ""
    for line in text.splitlines():
        if line.strip() == "enabled":
            enabled = True
        elif line.startswith("interpreter "):
            interpreter = line.split(" ", 1)[1].strip()
        elif line.startswith("flags:"):
            flags = line.split(":", 1)[1].strip()
    return BinfmtHandler(name, enabled, interpreter, flags)
