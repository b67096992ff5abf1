"""The benchmark's build contexts: what each case builds and which file it changes.

Inputs that are slow to make (the Debian root filesystems, the bigfiles data,
the local .debs of the offline Debian variant) are made once under CACHE and
reused by later runs; small contexts are written afresh into each run's work
directory. Large cached files are hardlinked into a context, so a case never
writes into a file it did not create: `change()` replaces files, it does not
edit them in place.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FARM_BENCH_CACHE", "/var/cache/farm-bench"))
ARCHES = ("amd64", "arm64")
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGE = "jq"
# jq and the libraries it needs beyond a minbase root, for the offline variant.
DEBIAN_OFFLINE_DEBS = ("jq", "libjq1", "libonig5")


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextmanager
def locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)


def replace_file(path: Path, text: str) -> None:
    """Write `path` as a new inode (never through a hardlink into the cache)."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------ cached inputs


def busybox_tarball(arch: str) -> Path:
    """The busybox root tarball of the test fixtures (built once, cached)."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures.rootfs import busybox_rootfs_tarball

    return busybox_rootfs_tarball(arch)


def apt_mirrors() -> list[str]:
    """One-line apt sources for bookworm (+updates, +security) from the host's apt config."""
    main = security = ""
    sources = Path("/etc/apt/sources.list.d")
    texts = [p.read_text() for p in sorted(sources.glob("*.sources"))] if sources.is_dir() else []
    for text in texts:
        for line in text.splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("debian-security"):
                        security = security or uri
                    elif uri.rstrip("/").endswith("debian"):
                        main = main or uri
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and not parts[1].startswith("["):
                uri = parts[1]
                if uri.rstrip("/").endswith("debian-security"):
                    security = security or uri
                elif uri.rstrip("/").endswith("debian"):
                    main = main or uri
    main = main or "http://deb.debian.org/debian"
    out = [f"deb {main} {DEBIAN_SUITE} main", f"deb {main} {DEBIAN_SUITE}-updates main"]
    if security:
        out.append(f"deb {security} {DEBIAN_SUITE}-security main")
    return out


def debian_tarball(arch: str) -> Path:
    """A minbase bookworm root for `arch` made with mmdebstrap, cached under CACHE."""
    target = CACHE / f"debian-{DEBIAN_SUITE}-{arch}.tar"
    with locked(f"debian-{arch}"):
        if target.exists():
            return target
        if shutil.which("mmdebstrap") is None:
            log("installing mmdebstrap (apt-get install -y mmdebstrap)")
            subprocess.run(
                ["apt-get", "install", "-y", "mmdebstrap"],
                check=True, capture_output=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        part = CACHE / f".debian-{DEBIAN_SUITE}-{arch}.tar.part"
        log(f"mmdebstrap {DEBIAN_SUITE} {arch} (once; cached as {target})")
        started = time.monotonic()
        with open(CACHE / f"mmdebstrap-{arch}.log", "w") as out:
            subprocess.run(
                [
                    "mmdebstrap", "--format=tar", "--variant=minbase",
                    f"--architectures={arch}", DEBIAN_SUITE, str(part), *apt_mirrors(),
                ],
                check=True, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        os.replace(part, target)
        log(f"mmdebstrap {arch}: {time.monotonic() - started:.0f}s")
        return target


def debian_debs() -> Path:
    """`apt-get download` of jq and its libraries for both arches, cached."""
    target = CACHE / "debs"
    with locked("debs"):
        if (target / ".done").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        names = [f"{p}:{a}" for a in ARCHES for p in DEBIAN_OFFLINE_DEBS]
        subprocess.run(
            ["apt-get", "download", *names], cwd=target, check=True, capture_output=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        (target / ".done").touch()
        return target


BIG_FILE_MB = 25


def bigfiles_data(total_mb: int) -> Path:
    """`total_mb` MB of deterministic, partially compressible data in 25 MB files.

    Each 1 MiB block is half pseudo-random bytes (incompressible) and half
    log-like text lines (gzip shrinks them ~4x): about 60% overall with gzip -6.
    """
    count = max(1, round(total_mb / BIG_FILE_MB))
    target = CACHE / f"bigfiles-{count * BIG_FILE_MB}mb"
    with locked(target.name):
        if (target / ".done").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        log(f"generating {count * BIG_FILE_MB} MB of data under {target} (once)")
        rng = random.Random(20250520)
        words = ("GET", "PUT", "POST", "ok", "miss", "hit", "retry", "cache", "layer", "blob")
        half = 1 << 19
        for i in range(count):
            with open(target / f"blob-{i:03d}.bin", "wb") as f:
                for block in range(BIG_FILE_MB):
                    f.write(rng.randbytes(half))
                    lines, size = [], 0
                    n = 0
                    while size < half:
                        line = (
                            f"{i:03d}.{block:03d}.{n:05d} {words[rng.randrange(10)]} "
                            f"/v2/app/blobs/{rng.getrandbits(32):08x} {rng.randrange(1000)}ms\n"
                        )
                        lines.append(line)
                        size += len(line)
                        n += 1
                    f.write("".join(lines).encode()[:half])
        (target / ".done").touch()
        return target


# ------------------------------------------------------------ cases


@dataclass
class Case:
    name: str
    description: str
    prepare: Callable[[Path], None]  # write the context into an empty directory
    change: Callable[[Path], str]  # change one source file, return its name
    timeout: float = 900.0


BUSYBOX_BASE = """\
FROM scratch AS base
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
"""


def _busybox_roots(ctx: Path) -> None:
    for arch in ARCHES:
        link_or_copy(busybox_tarball(arch), ctx / f"rootfs-{arch}.tar")


# (a) hello ---------------------------------------------------------------

HELLO_DOCKERFILE = (
    BUSYBOX_BASE
    + """
FROM base AS hello
ARG GREETING=hello
ENV GREETING=${GREETING}
WORKDIR /app
COPY greet.sh /app/
COPY conf/ /app/conf/
RUN chmod 0755 /app/greet.sh && echo "built on $(uname -m)" > /app/built-on
RUN for i in $(seq 1 100); do echo "entry $i $(uname -m)" >> /app/conf/entries; done && wc -l /app/conf/entries
CMD ["/app/greet.sh"]
"""
)

GREET = '#!/bin/sh\necho "$GREETING from $(uname -m), $(cat /app/built-on)"\n'


def prepare_hello(ctx: Path) -> None:
    _busybox_roots(ctx)
    (ctx / "Dockerfile").write_text(HELLO_DOCKERFILE)
    (ctx / "greet.sh").write_text(GREET)
    (ctx / "conf").mkdir()
    for i in range(5):
        (ctx / "conf" / f"part-{i}.conf").write_text(f"key{i} = value{i}\n" * 20)


def change_hello(ctx: Path) -> str:
    replace_file(ctx / "greet.sh", GREET + "# changed\n")
    return "greet.sh"


# (b) multistage ----------------------------------------------------------

MULTISTAGE_DOCKERFILE = """\
# The build stage runs on the build platform (natively) for every target and
# "compiles" for TARGETARCH; the final stage copies the result onto a target root.
FROM --platform=$BUILDPLATFORM scratch AS build
ARG BUILDARCH
ARG TARGETARCH
ADD rootfs-${BUILDARCH}.tar /
WORKDIR /src
COPY src/ /src/
RUN mkdir -p /out/obj && for i in $(seq 1 300); do \\
      sed -e "s/@ARCH@/${TARGETARCH}/g" -e "s/@N@/$i/g" /src/module.c.in > /out/obj/mod_$i.o; \\
    done && cat /out/obj/*.o | busybox md5sum > /out/checksum && echo "${TARGETARCH}" > /out/arch

FROM scratch AS runtime
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
COPY --from=build /out/ /app/
RUN cat /app/arch /app/checksum && ls /app/obj | wc -l
CMD ["/bin/sh", "-c", "cat /app/arch /app/checksum"]
"""

MODULE = "".join(
    f"/* module @N@ for @ARCH@, function {i} */\nint f{i}_@N@(int x) {{ return x * {i} + @N@; }}\n"
    for i in range(40)
)


def prepare_multistage(ctx: Path) -> None:
    _busybox_roots(ctx)
    (ctx / "Dockerfile").write_text(MULTISTAGE_DOCKERFILE)
    (ctx / "src").mkdir()
    (ctx / "src" / "module.c.in").write_text(MODULE)
    (ctx / "src" / "README").write_text("sources of the pretend compiler\n")


def change_multistage(ctx: Path) -> str:
    replace_file(ctx / "src" / "module.c.in", MODULE + "/* changed */\n")
    return "src/module.c.in"


# (c) debian --------------------------------------------------------------

DEBIAN_BASE = """\
FROM scratch AS base
ARG TARGETARCH
ADD debian-bookworm-${TARGETARCH}.tar /
"""

DEBIAN_ONLINE = (
    DEBIAN_BASE
    + f"""
FROM base
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends {DEBIAN_PACKAGE} \\
    && rm -rf /var/lib/apt/lists/* && {DEBIAN_PACKAGE} --version
COPY app.sh /usr/local/bin/app.sh
RUN chmod 0755 /usr/local/bin/app.sh
CMD ["/usr/local/bin/app.sh"]
"""
)

DEBIAN_OFFLINE = (
    DEBIAN_BASE
    + f"""
FROM base
ARG TARGETARCH
COPY debs/ /tmp/debs/
RUN dpkg -i /tmp/debs/*_${{TARGETARCH}}.deb && rm -rf /tmp/debs && {DEBIAN_PACKAGE} --version
COPY app.sh /usr/local/bin/app.sh
RUN chmod 0755 /usr/local/bin/app.sh
CMD ["/usr/local/bin/app.sh"]
"""
)

APP = '#!/bin/sh\necho \'{"arch": "\'"$(uname -m)"\'"}\' | jq .\n'


def _debian_context(ctx: Path, offline: bool) -> None:
    for arch in ARCHES:
        link_or_copy(debian_tarball(arch), ctx / f"debian-bookworm-{arch}.tar")
    (ctx / "app.sh").write_text(APP)
    if offline:
        debs = debian_debs()
        for deb in debs.glob("*.deb"):
            link_or_copy(deb, ctx / "debs" / deb.name)
        (ctx / "Dockerfile").write_text(DEBIAN_OFFLINE)
    else:
        (ctx / "Dockerfile").write_text(DEBIAN_ONLINE)


def change_debian(ctx: Path) -> str:
    replace_file(ctx / "app.sh", APP + "# changed\n")
    return "app.sh"


# (d) bigfiles ------------------------------------------------------------

BIGFILES_DOCKERFILE = (
    BUSYBOX_BASE
    + """
FROM base
COPY data/ /data/
RUN find /data -type f -exec touch {} + && du -sk /data > /data-size.txt
CMD ["/bin/cat", "/data-size.txt"]
"""
)


def make_bigfiles_prepare(total_mb: int) -> Callable[[Path], None]:
    def prepare(ctx: Path) -> None:
        _busybox_roots(ctx)
        data = bigfiles_data(total_mb)
        for f in sorted(data.glob("*.bin")):
            link_or_copy(f, ctx / "data" / f.name)
        (ctx / "data" / "NOTES.txt").write_text("bigfiles: notes\n")
        (ctx / "Dockerfile").write_text(BIGFILES_DOCKERFILE)

    return prepare


def change_bigfiles(ctx: Path) -> str:
    replace_file(ctx / "data" / "NOTES.txt", "bigfiles: notes, changed\n")
    return "data/NOTES.txt"


def all_cases(bigfiles_mb: int) -> dict[str, Case]:
    return {
        "hello": Case(
            "hello", "busybox root + COPY/RUN steps", prepare_hello, change_hello, timeout=600
        ),
        "multistage": Case(
            "multistage",
            "FROM --platform=$BUILDPLATFORM build stage + final stage",
            prepare_multistage,
            change_multistage,
            timeout=600,
        ),
        "debian": Case(
            "debian",
            f"mmdebstrap minbase {DEBIAN_SUITE} + apt-get install {DEBIAN_PACKAGE}",
            lambda ctx: _debian_context(ctx, offline=False),
            change_debian,
            timeout=1500,
        ),
        "debian-offline": Case(
            "debian-offline",
            f"mmdebstrap minbase {DEBIAN_SUITE} + dpkg -i local {DEBIAN_PACKAGE} .debs",
            lambda ctx: _debian_context(ctx, offline=True),
            change_debian,
            timeout=1500,
        ),
        "bigfiles": Case(
            "bigfiles",
            f"COPY of ~{bigfiles_mb} MB + RUN touching every file",
            make_bigfiles_prepare(bigfiles_mb),
            change_bigfiles,
            timeout=1800,
        ),
    }
