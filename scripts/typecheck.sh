#!/usr/bin/env bash
# mypy over the installed layout: src/edge_sent is the base package and train/, export/, runtime/ are mapped
# into it (pyproject's package-dir), which mypy cannot read from the source tree. Mirror the mapping with
# symlinks in .typecheck/ and check the package there; strict for the torch-free base and runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .typecheck && mkdir -p .typecheck/edge_sent
for entry in src/edge_sent/*; do ln -s "$PWD/$entry" ".typecheck/edge_sent/$(basename "$entry")"; done
for stage in train export runtime; do ln -s "$PWD/$stage" ".typecheck/edge_sent/$stage"; done
cd .typecheck && exec "${MYPY:-../.venv/bin/mypy}" --config-file ../pyproject.toml -p edge_sent "$@"
