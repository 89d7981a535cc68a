#!/usr/bin/env bash
# Run CMD inside the aarch64 root made by scripts/arm64-root.sh:  scripts/in-arm64.sh ROOT CMD...
# e.g. EMU_BIND=/tmp/bundle scripts/in-arm64.sh .emu/arm64 /opt/venv/bin/python -c '...'
# The command runs in a private mount namespace (unshare) holding ROOT/proc and, for EMU_BIND=DIR[:DIR...], each
# host DIR bind-mounted at the same path inside the root; the mounts vanish when the command ends, even when it
# is killed, and concurrent runs do not disturb each other. Never /sys: with the host's /sys onnxruntime
# segfaults under qemu. The command gets a clean environment: PATH (/opt/venv/bin first), HOME, LANG, TERM, plus
# the variables named in EMU_ENV (e.g. EMU_ENV="OMP_NUM_THREADS VARIANT"), plus QEMU_CPU when set: the emulated
# CPU, read by qemu through binfmt (default max: dotprod, i8mm, bf16, SVE; neoverse-n1: dotprod only;
# cortex-a72: plain NEON). Needs root.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 ROOT CMD..." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "in-arm64.sh: needs root (mount namespace, chroot)" >&2; exit 2; }
root=$(realpath "$1"); shift
[ -e "$root/.emu-complete" ] || { echo "in-arm64.sh: $root is not a finished root (scripts/arm64-root.sh)" >&2; exit 2; }
if [ -z "${_EMU_NS:-}" ]; then
  _EMU_NS=1 exec unshare --mount --propagation private -- "$0" "$root" "$@"
fi
if [ -L "$root/proc" ]; then echo "in-arm64.sh: $root/proc must be a directory" >&2; exit 2; fi
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
IFS=: read -ra binds <<<"${EMU_BIND:-}"
for d in "${binds[@]}"; do
  d=$(realpath "$d")
  mkdir -p "$root$d"
  mount --bind "$d" "$root$d"
done
envs=(PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}")
for v in ${QEMU_CPU:+QEMU_CPU} ${EMU_ENV:-}; do envs+=("$v=${!v-}"); done
exec env -i "${envs[@]}" "$(command -v chroot)" "$root" "$@"
