#!/usr/bin/env bash
# A runtime venv with Ray Data for `edge-sent score --engine ray`: scripts/ray-venv.sh [VENV] (default .venv-ray).
# Kept apart from the training venv: Ray pins its own protobuf/pyarrow, and the runtime needs no torch.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-ray}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e ".[ray,parquet]"
"$venv/bin/python" -c "import ray, edge_sent.runtime; print(f'Ray venv ready: ray {ray.__version__}')"
