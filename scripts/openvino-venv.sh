#!/usr/bin/env bash
# A runtime venv with onnxruntime's OpenVINO execution provider (the onnxruntime-openvino build), for the export's
# --openvino-python measurement and benchmarks/openvino_provider.py: scripts/openvino-venv.sh [VENV [EXTRAS]] (default
# .venv-ov; EXTRAS e.g. "bench"). The OpenVINO runtime itself needs none of this: `pip install edge-sent[openvino]`.
# The OpenVINO build and the plain CPU build both provide the `onnxruntime` module, so one venv holds one of them:
# install the package, then remove the CPU build and put the OpenVINO one in its place.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-ov}"
extras="${2:+[$2]}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e ".$extras"
"$venv/bin/pip" uninstall -q -y onnxruntime onnxruntime-openvino
"$venv/bin/pip" install -q --no-deps "onnxruntime-openvino==1.24.1"
"$venv/bin/python" - <<'PY'
import onnxruntime as ort

providers = ort.get_available_providers()
assert "OpenVINOExecutionProvider" in providers, f"OpenVINO provider missing: {providers}"
print(f"OpenVINO venv ready: onnxruntime {ort.__version__}, providers {providers}")
PY
