#!/usr/bin/env bash
# Mutation testing (mutmut 2.x mutates files in place, so it works on a scratch copy):
#   scripts/mutation.sh [SCRATCH_DIR] [SET]   → `mutmut results` there lists the survivors
# SET base (default): the torch-free base and runtime, run by the fast torch-free tests (readers, tables, runtime
# units: a synthetic bundle, no export).
# SET faults: score, the score job, the server's request path, the feature store and `auto`'s rules, each module
# with the in-process tests that target it (fakes for the classifier, the engine and the clock: no bundle, no
# subprocess, a few seconds per mutant); the scratch venv has the train and test extras.
# The scratch copy is the committed HEAD (`git archive`): uncommitted edits in the checkout are not measured.
# mutmut 2 counts a mutant as killed only on exit code 1 and times out only its direct child: the runner wraps
# pytest in `timeout … || exit 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-/tmp/edge-sent-mutation}"
set_name="${2:-base}"
rm -rf "$scratch" && mkdir -p "$scratch"
git archive HEAD | tar -x -C "$scratch"
git rev-parse HEAD >"$scratch/.measured-commit"
python3 -m venv "$scratch/.venv"
pip="$scratch/.venv/bin/pip"
if [ "$set_name" = faults ]; then
  "$pip" install -q torch==2.13.0
  "$pip" install -q -e "$scratch[train,test]" "mutmut==2.5.1"
else
  "$pip" install -q -e "$scratch" pytest hypothesis onnx "mutmut==2.5.1"
fi
cd "$scratch"
export PATH="$scratch/.venv/bin:$PATH"
pytest_q="python -B -m pytest -x -q -p no:cacheprovider"

run() {  # run PATHS SECONDS TESTS...: mutate PATHS, kill with TESTS (each mutant's run bounded by SECONDS)
  local paths="$1" seconds="$2"
  shift 2
  mutmut run --paths-to-mutate "$paths" --tests-dir tests --simple-output --no-progress \
    --runner "bash -c \"timeout $seconds $pytest_q $* || exit 1\"" || true
}

if [ "$set_name" = faults ]; then
  export EDGE_SENT_PROBE=0
  run src/edge_sent/fidelity.py 60 tests/test_fidelity_units.py tests/test_fidelity.py tests/test_host_floor.py \
    "-k 'not answers_the_same and not tiny and not info'"
  run train/feature_store.py 60 tests/test_feature_store_units.py
  run runtime/scoring/run.py,runtime/scoring/job.py 60 tests/test_score_units.py \
    tests/test_score_faults.py::test_changes_name_every_field_and_an_old_job_file \
    tests/test_score_identity.py::test_another_variant_is_named_alone_with_the_flag_that_resumes_the_job
  run runtime/serve/batching.py,runtime/serve/service.py,runtime/serve/errors.py,runtime/serve/config.py 60 \
    tests/test_serve_rules.py tests/test_serve_units.py \
    tests/test_serve.py::test_plan_batch_takes_the_oldest_then_the_cheapest_neighbours
else
  run src/edge_sent/labeled.py,src/edge_sent/readers.py,src/edge_sent/metrics.py,src/edge_sent/tokenization.py,src/edge_sent/contract.py,src/edge_sent/providers.py,src/edge_sent/variants.py,runtime/classifier.py,runtime/engine.py,runtime/session.py,runtime/bench.py 60 \
    "tests/test_readers.py tests/test_tables.py tests/test_runtime_units.py -k 'not cli_choices and not export_builds'"
fi
mutmut results
