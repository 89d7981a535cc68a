#!/usr/bin/env bash
# Node.js and Chromium for the JavaScript tests (tests/test_js.py), from the distribution's packages (apt-get:
# never a browser download), then the npm packages pinned in js/package-lock.json. Runs as root or with
# passwordless sudo; skips apt when node, npm and chromium are already there.
#   ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's install script would fetch CUDA binaries (the CPU build
#   ships in the npm package); PUPPETEER_SKIP_DOWNLOAD=1: puppeteer-core drives Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "error: apt-get install ${missing[*]} needs root or passwordless sudo" >&2
    exit 1
  fi
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
(cd js && ONNXRUNTIME_NODE_INSTALL=skip PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
echo "js setup ($(node --version), $(chromium --version 2>/dev/null | head -1)): $(($(date +%s) - started)) s"
