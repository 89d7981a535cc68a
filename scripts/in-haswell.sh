#!/usr/bin/env bash
# Run a command on an emulated x86-64 CPU without AVX-512: qemu-x86_64-static (qemu-user, TCG) as a Haswell
# (SSE4.2, AVX, AVX2, FMA, F16C, BMI2; no AVX-512, no VNNI), e.g.
#   scripts/in-haswell.sh .venv/bin/python -c 'import onnxruntime'     scripts/in-haswell.sh .venv/bin/pytest -q tests
# CMD is an ELF binary or a `#!` script (its interpreter is what runs under qemu). Only that one process is
# emulated: binfmt_misc has no x86-64 handler on an x86-64 host, so its CHILD processes (subprocess,
# multiprocessing, sys.executable) and anything it execs run natively, with the host's AVX-512; threads stay
# emulated. So name the real interpreter (.venv/bin/python), not a shell wrapper such as a pyenv shim.
# Needs the qemu-user-static package (installed here when missing and run as root), not root itself.
# EMU_X86_CPU overrides the model (qemu-x86_64-static -cpu help); the default drops the features TCG lacks,
# which otherwise print a warning for every new thread.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CMD..." >&2; exit 2; }
if ! command -v qemu-x86_64-static >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "in-haswell.sh: install qemu-user-static first" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null
fi
cmd=$(command -v "$1") || { echo "in-haswell.sh: $1: not found" >&2; exit 127; }
shift
while [ "$(head -c 2 "$cmd")" = "#!" ]; do   # qemu-user loads ELF only: run the script's interpreter
  read -r -a interp < <(head -n 1 "$cmd" | cut -c 3-)   # e.g. /path/python, or /usr/bin/env python3
  set -- "${interp[@]:1}" "$cmd" "$@"
  cmd=${interp[0]}
  if [ "$(basename "$cmd")" = env ]; then cmd=$(command -v "$1"); shift; fi
done
exec qemu-x86_64-static -cpu "${EMU_X86_CPU:-Haswell-noTSX,-pcid,-x2apic,-tsc-deadline,-invpcid}" "$cmd" "$@"
