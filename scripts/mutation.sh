#!/usr/bin/env bash
# Mutation testing of the torch-free base and runtime (mutmut 2.x mutates files in place, so it works on a
# scratch copy): scripts/mutation.sh [SCRATCH_DIR]  → `mutmut results` there lists the survivors.
# mutmut 2 counts a mutant as killed only on exit code 1 and times out only its direct child: the runner wraps
# pytest in `timeout 60 … || exit 1`. The runner is the fast torch-free tests (readers, tables, runtime units: a synthetic bundle, no export).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-/tmp/edge-sent-mutation}"
rm -rf "$scratch" && mkdir -p "$scratch"
git ls-files -z | xargs -0 cp --parents -t "$scratch"
python3 -m venv "$scratch/.venv"
"$scratch/.venv/bin/pip" install -q -e "$scratch" pytest hypothesis onnx "mutmut==2.5.1"
cd "$scratch"
PATH="$scratch/.venv/bin:$PATH" mutmut run \
  --paths-to-mutate src/edge_sent/labeled.py,src/edge_sent/readers.py,src/edge_sent/metrics.py,src/edge_sent/tokenization.py,src/edge_sent/contract.py,src/edge_sent/providers.py,src/edge_sent/variants.py,runtime/classifier.py,runtime/engine.py,runtime/session.py,runtime/bench.py \
  --tests-dir tests --simple-output --no-progress \
  --runner "bash -c \"timeout 60 python -B -m pytest -x -q -p no:cacheprovider tests/test_readers.py tests/test_tables.py tests/test_runtime_units.py -k 'not cli_choices and not export_builds' || exit 1\"" || true
PATH="$scratch/.venv/bin:$PATH" mutmut results
