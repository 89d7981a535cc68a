#!/usr/bin/env bash
# infinity (infinity-emb), a contender of benchmarks/serve.py, in its own venv: scripts/infinity-venv.sh [VENV]
# (default .venv-infinity). CPU torch is installed FIRST and pinned, so nothing pulls a CUDA build.
# The pins are the set that serves a local ORTModelForSequenceClassification directory offline:
# infinity-emb 0.0.78 resolves optimum 2.1 + optimum-onnx 0.1 + transformers 4.57 (optimum 1.27, the last with
# `optimum.onnxruntime` inside, fails to import with torch 2.13). See benchmarks/serve.py for the two flags
# and the working directory that this version needs (`--model-id .`, `--no-model-warmup`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-infinity}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "torch==2.13.0"
"$venv/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 'a CUDA torch was installed')"
"$venv/bin/pip" install -q "infinity-emb[server,optimum]==0.0.78" "optimum==2.1.0" "optimum-onnx[onnxruntime]==0.1.0" \
    "transformers==4.57.6" "numpy<2" "torch==2.13.0"
"$venv/bin/python" -c "import infinity_emb, torch; print(f'infinity venv ready: infinity-emb {infinity_emb.__version__}, torch {torch.__version__}')"
