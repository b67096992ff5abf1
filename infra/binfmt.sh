#!/usr/bin/env bash
# Mounts binfmt_misc when needed and registers the QEMU handlers that
# qemu-user-static ships in /usr/lib/binfmt.d, so foreign binaries run with the
# F (fix-binary) flag: the interpreter is opened once, nothing is copied into
# an image. Handlers already registered are left alone.
set -euo pipefail
mnt=/proc/sys/fs/binfmt_misc
if [ ! -e "$mnt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$mnt"
fi
shopt -s nullglob
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  line=$(grep -v '^#' "$conf" | head -n 1)
  [ -n "$line" ] || continue
  name=$(printf '%s' "$line" | cut -d: -f2)
  [ -e "$mnt/$name" ] && continue
  # Make sure the F flag is present: the kernel then pins the interpreter.
  flags=${line##*:}
  case "$flags" in *F*) ;; *) line="${line}F" ;; esac
  printf '%s' "$line" > "$mnt/register" || echo "binfmt: could not register $name" >&2
done
