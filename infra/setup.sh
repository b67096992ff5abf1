#!/usr/bin/env bash
# Installs every system package Farm and its tests need on Debian/Ubuntu, and
# registers binfmt_misc handlers for QEMU. Idempotent: safe to run again.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "infra/setup.sh: run as root (it installs packages and mounts binfmt_misc)" >&2
  exit 1
fi

packages=(
  ca-certificates git make curl
  python3 python3-venv python3-pip
  qemu-user-static        # emulated RUN steps (binfmt_misc F flag)
  slirp4netns iproute2 util-linux  # step networking and namespaces
  redis-server            # broker and live build state
  busybox-static          # tiny test root filesystems
  gcc libc6-dev gcc-multilib  # the seccomp tests compile a static probe (64 and 32 bit)
  skopeo umoci buildah docker-registry  # third-party readers and peers in tests
  xz-utils bzip2 zstd gzip
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# arm64 packages are downloaded, not installed: tests unpack busybox-static:arm64
# into a test root filesystem.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi

# binfmt_misc: mount it and register QEMU handlers with the F flag (the same
# code as `farm binfmt install`; it needs nothing outside the standard library).
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$root" python3 -m buildkit.binfmt
