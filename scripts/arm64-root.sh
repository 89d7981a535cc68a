#!/usr/bin/env bash
# An emulated aarch64 Debian bookworm root with a venv (/opt/venv) holding the runtime's dependencies:
#   scripts/arm64-root.sh [ROOT_DIR [WHEEL]]     (default .emu/arm64; run as root; run things in it with
#   scripts/in-arm64.sh). WHEEL (the project's pure-python wheel) is installed into the venv with --no-deps.
# Fast by design: qemu-aarch64 is registered with binfmt_misc flag F (the root needs no qemu inside);
# `debootstrap --foreign` downloads and unpacks natively, the rest of the debs are unpacked natively too instead
# of debootstrap's emulated second stage (no maintainer scripts run, so the root has no dpkg database: it is for
# Python only; ARM64_FULL=1 runs the plain, emulated debootstrap instead); the HOST's pip installs the aarch64
# wheels (--target --platform), so pip never runs under emulation. The finished system carries ROOT/.emu-os, the
# finished venv ROOT/.emu-complete (its dependency list): a rerun then only rechecks binfmt and installs WHEEL
# (pass it on every call: a changed dependency list rebuilds the venv without it); a half-made root or venv
# (a killed run) is rebuilt. Runs on one ROOT are serialised (flock ROOT.lock).
# Env: ORT_VERSION (1.32.0), ARM64_PIP_DEPS (the runtime's deps), ARM64_EXTRA_DEPS (e.g. "pytest hypothesis onnx"
# for the tests), HOST_PY (.venv/bin/python, else python3: its pip installs the wheels), EMU_DEB_CACHE
# (debootstrap --cache-dir), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(realpath -m "${1:-.emu/arm64}")
wheel=${2:+$(realpath "$2")}
deps="${ARM64_PIP_DEPS:-onnxruntime==${ORT_VERSION:-1.32.0} tokenizers numpy onnxruntime-extensions typer rich platformdirs} ${ARM64_EXTRA_DEPS:-}"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
host_py=${HOST_PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
site=$root/opt/venv/lib/python3.11/site-packages
os_spec="bookworm minbase python3 full=${ARM64_FULL:-0}"
[ "$(id -u)" = 0 ] || { echo "arm64-root.sh: needs root (apt-get, binfmt_misc, debootstrap, chroot)" >&2; exit 2; }

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock" && flock 9   # one build of a root at a time
t0=$(date +%s.%N)
lap() { local t; t=$(date +%s.%N); awk -v s="$1" -v a="$t" -v b="$t0" 'BEGIN{printf "[arm64-root] %-30s %6.1fs\n", s, a-b}'; t0=$t; }
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot "$root" "$@"; }
# pip --target puts console scripts in site-packages/bin with the host's interpreter: move them to the venv.
fix_bin() {
  [ -d "$site/bin" ] || return 0
  sed -i '1s|^#!.*python.*$|#!/opt/venv/bin/python|' "$site"/bin/*
  cp -a "$site"/bin/. "$root/opt/venv/bin/" && rm -rf "${site:?}/bin"
}
# pip does not widen --platform manylinux_2_36 to older glibc tags: name them all (bookworm has glibc 2.36)
plats=(--platform manylinux2014_aarch64)
for v in $(seq 17 36); do plats+=(--platform "manylinux_2_${v}_aarch64"); done
pip_target() {
  "$host_py" -m pip install -q --no-compile --no-warn-conflicts --only-binary=:all: --python-version 3.11 \
    --implementation cp "${plats[@]}" --target "$site" "$@"
}
# .pyc files for the root's Python 3.11: the host compiles them when its Python is 3.11 too (same magic).
compile() {
  if "$host_py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    "$host_py" -m compileall -q -j0 -s "$root" -p / "${@/#/$root}" >/dev/null
  else in_root /usr/bin/python3 -m compileall -q "$@" >/dev/null; fi
}

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  pkgs=(qemu-user-static debootstrap)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; }
  lap "apt-get install qemu debootstrap"
fi

binfmt=/proc/sys/fs/binfmt_misc
[ -e $binfmt/register ] || mount -t binfmt_misc binfmt_misc $binfmt
if [ -e $binfmt/qemu-aarch64 ] && ! grep -q '^flags:.*F' $binfmt/qemu-aarch64; then
  echo -1 > $binfmt/qemu-aarch64   # registered without F: the chroot could not find the interpreter
fi
[ -e $binfmt/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > $binfmt/register
lap "binfmt qemu-aarch64 (flag F)"

if [ "$(cat "$root/.emu-os" 2>/dev/null)" != "$os_spec" ]; then
  if [ -e "$root" ]; then
    # unmount leftovers of a killed run first: rm -rf would follow a bind mount into the host's files
    awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r \
      | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$root"
  fi
  common=(--arch=arm64 --variant=minbase --merged-usr --include=python3 ${EMU_DEB_CACHE:+--cache-dir="$EMU_DEB_CACHE"})
  if [ "${ARM64_FULL:-0}" = 1 ]; then
    debootstrap "${common[@]}" bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail "$root.log"; exit 1; }
    lap "debootstrap (plain, emulated)"
  else
    debootstrap --foreign "${common[@]}" bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail "$root.log"; exit 1; }
    lap "debootstrap --foreign"
    for deb in "$root"/var/cache/apt/archives/*.deb; do
      dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$root" --keep-directory-symlink
    done
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root/debootstrap"
    # debootstrap links proc -> /proc when it thinks it runs in docker (/.dockerenv): make it a directory
    if [ -L "$root/proc" ]; then rm "$root/proc" && mkdir "$root/proc"; fi
    cp "$root"/usr/share/base-passwd/passwd.master "$root/etc/passwd"
    cp "$root"/usr/share/base-passwd/group.master "$root/etc/group"
    cp "$root"/usr/share/libc-bin/nsswitch.conf "$root/etc/nsswitch.conf"
    in_root /sbin/ldconfig
    compile /usr/lib/python3.11
    lap "unpack debs natively"
  fi
  # cpuinfo (in onnxruntime) reads these; the host's /sys must not be mounted (onnxruntime segfaults)
  mkdir -p "$root/sys/devices/system/cpu"
  echo "0-$(($(nproc) - 1))" | tee "$root"/sys/devices/system/cpu/{possible,present} >/dev/null
  echo "$os_spec" > "$root/.emu-os"
fi

if [ "$(cat "$root/.emu-complete" 2>/dev/null)" != "$deps" ]; then   # other deps: only the venv is rebuilt
  rm -rf "$root/.emu-complete" "$root/opt/venv"
  in_root /usr/bin/python3 -m venv --without-pip /opt/venv
  lap "venv /opt/venv (emulated)"
  # shellcheck disable=SC2086
  pip_target $deps
  fix_bin
  compile /opt/venv/lib/python3.11/site-packages
  lap "host pip: aarch64 wheels"
  echo "$deps" > "$root/.emu-complete"
fi

if [ -n "$wheel" ]; then
  pip_target --no-deps --upgrade "$wheel"
  fix_bin
  compile /opt/venv/lib/python3.11/site-packages
  lap "project wheel (--no-deps)"
fi
scripts/in-arm64.sh "$root" python -c 'import onnxruntime, platform; print("[arm64-root] ready:", platform.machine(), "onnxruntime", onnxruntime.__version__)'
lap "check import (emulated)"
