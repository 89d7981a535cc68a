"""Torch-free runtime: API, batching, integrity, bad input, and the CLI on a real exported bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_sent.errors import BundleError, EdgeSentError
from edge_sent.runtime import Classifier
from edge_sent.runtime.session import ProviderFallbackWarning
from tests.conftest import DATA, TORCH_GUARD, assert_user_error, run_cli

TEXTS = [
    "这个酒店很好，服务周到",
    "太差了，再也不来",
    "房间一般",
    "早餐很丰富，位置方便，下次还会再来",
    "😀👍",
    "a\x00b\tc\x07",
]


@pytest.fixture(scope="module")
def clf(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle, variant="fp32", provider="cpu")


def test_predictions_in_input_order_and_independent_of_batching(clf):
    texts = [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text().splitlines()[1:80]]
    one = clf.predict(texts, batch_size=1)
    many = clf.predict(texts, batch_size=16)
    reversed_ = clf.predict(texts[::-1], batch_size=7)[::-1]
    p1 = np.array([[p.probabilities[lab] for lab in clf.labels] for p in one])
    assert p1[:, 1].std() > 1e-3  # outputs really differ across texts: not a constant model
    for other in (many, reversed_):
        p = np.array([[q.probabilities[lab] for lab in clf.labels] for q in other])
        assert np.abs(p - p1).max() < 1e-4
        assert [q.label for q in other] == [q.label for q in one]


def test_prediction_fields(clf):
    out = clf.predict(TEXTS)
    assert len(out) == len(TEXTS)
    for p in out:
        assert p.label in clf.labels and clf.labels[p.label_id] == p.label
        assert set(p.probabilities) == set(clf.labels)
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5
        assert p.truncated is False
    assert clf.variant == "fp32" and clf.providers[0] == "CPUExecutionProvider"


def test_long_text_is_truncated_and_flagged(clf):
    long_text = "很好" * 50_000  # 100,000 characters
    short, long_ = clf.predict(["很好", long_text])
    assert long_.truncated and not short.truncated


def test_empty_and_whitespace_texts_get_a_defined_answer(clf):
    out = clf.predict(["", "   ", "\n"])
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in out)
    assert out[0].label == out[1].label == out[2].label  # all reduce to [CLS] [SEP]


def test_non_strings_raise_type_error_naming_the_position(clf):
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        clf.predict(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        clf.predict(["ok", "fine", 3])
    with pytest.raises(TypeError, match="not a single string"):
        clf.predict("just one string")


def test_predict_iter_streams(clf):
    def gen():
        for i in range(2500):
            yield TEXTS[i % len(TEXTS)]

    out = list(clf.predict_iter(gen(), chunk_size=256))
    assert len(out) == 2500
    assert [p.label for p in out[:6]] == [p.label for p in clf.predict(TEXTS)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=12))
def test_any_unicode_gives_valid_probabilities(clf, texts):
    for p in clf.predict(texts):
        probs = np.array(list(p.probabilities.values()))
        assert np.all((probs >= 0) & (probs <= 1)) and abs(probs.sum() - 1) < 1e-5


def test_int8_labels_match_export_verification(tiny_bundle):
    from edge_sent.export.prepare import texts_from
    from edge_sent.export.verify import select_texts, texts_sha256
    from edge_sent.tokenization import Tokenizer

    clf = Classifier.load(tiny_bundle, variant="int8")  # auto's choice is tested in test_fidelity.py
    assert clf.variant == "int8"
    manifest = clf.manifest.data
    source = Path(manifest["verification"]["source"])
    texts = select_texts(
        texts_from(source, "text"),
        Tokenizer(tiny_bundle / "tokenizer.json", manifest["max_length"]),
        manifest["verification"]["n_texts"],
    )
    assert texts_sha256(texts) == manifest["verification"]["texts_sha256"]
    for variant in ("fp32", "int8", "int4"):
        runtime = Classifier.load(tiny_bundle, variant=variant)
        # same length-sorted batches as the export's check (dynamic int8 scales activations per batch)
        labels = [p.label_id for p in runtime.predict(texts, batch_size=manifest["verification"]["batch_size"])]
        assert labels == manifest["variants"][variant]["verification_labels"], variant


def test_fp16_on_cpu_is_refused(tiny_bundle):
    with pytest.raises(EdgeSentError, match="fp16 variant runs on CUDA only"):
        Classifier.load(tiny_bundle, variant="fp16", provider="cpu")


def test_unavailable_provider_is_a_clear_error(tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    with pytest.raises(EdgeSentError, match=r"provider 'cuda' is not available .*\(available: .*CPUExecutionProvider"):
        Classifier.load(tiny_bundle, provider="cuda")
    with pytest.raises(EdgeSentError, match="unknown provider"):
        Classifier.load(tiny_bundle, provider="tpu")


def test_silent_fallback_warns_or_raises(tiny_bundle, monkeypatch):
    """Simulate a build that lists CUDA but cannot create a CUDA session (no device)."""
    from edge_sent.runtime import session as session_mod

    class FakeSession:
        def __init__(self, real):
            self._real = real

        def get_providers(self):
            return ["CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self._real, name)

    real_create = session_mod.ort.InferenceSession
    monkeypatch.setattr(session_mod, "resolve_provider", lambda p: "cuda")
    monkeypatch.setattr("edge_sent.runtime.classifier.resolve_provider", lambda p: "cuda")
    monkeypatch.setattr("edge_sent.runtime.engine.resolve_provider", lambda p: "cuda")
    monkeypatch.setattr(
        session_mod.ort,
        "InferenceSession",
        lambda path, sess_options, providers: FakeSession(real_create(path, sess_options, ["CPUExecutionProvider"])),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Classifier.load(tiny_bundle, variant="fp32", provider="cuda")
    assert any(issubclass(w.category, ProviderFallbackWarning) for w in caught)
    with pytest.raises(EdgeSentError, match="fell back to CPUExecutionProvider"):
        Classifier.load(tiny_bundle, variant="fp32", provider="cuda", strict=True)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "b"
    shutil.copytree(bundle, dest)
    return dest


def test_tampered_model_is_refused_naming_the_file(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    model = bundle / "model_quantized.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model_quantized\.onnx: altered"):
        Classifier.load(bundle, variant="int8")
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 1 and "model_quantized.onnx: altered" in proc.stderr


def test_truncated_tokenizer_and_missing_file_are_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    tok = bundle / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"tokenizer\.json: altered"):
        Classifier.load(bundle)
    (bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx: missing"):
        Classifier.load(bundle, variant="fp32")


def test_newer_format_missing_bundle_and_edited_manifest(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="bundle directory not found"):
        Classifier.load(tmp_path / "nowhere")
    bundle = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer than this edge-sent understands"):
        Classifier.load(bundle)
    manifest["format_version"] = 0
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bundle format version 0 is older than this edge-sent reads"):
        Classifier.load(bundle)
    del manifest["format_version"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no bundle format version"):
        Classifier.load(bundle)
    manifest["format_version"] = 1
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"model\.onnx: altered"):
        Classifier.load(bundle, variant="fp32")


def test_runtime_never_imports_torch_or_transformers(tiny_bundle):
    """A fresh interpreter in which importing torch or transformers raises still classifies text."""
    code = (
        TORCH_GUARD
        + f"""
from edge_sent.runtime import Classifier
from edge_sent.runtime.scoring.run import score
from edge_sent.cli import app
clf = Classifier.load({str(tiny_bundle)!r})
print(clf.predict(['很好'])[0].label)
assert not any(m.split('.')[0] in ('torch', 'transformers', 'optimum') for m in sys.modules)
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("0", "1")


def test_cli_predict_text_file_stdin_and_json(tiny_bundle, tmp_path):
    proc = run_cli("predict", str(tiny_bundle), "很好", "很差", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["很好", "很差"]
    assert all(set(r) >= {"label", "probabilities", "truncated"} for r in rows)
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"review": "不错"}\n{"review": "糟糕"}\n', encoding="utf-8")
    proc = run_cli("predict", str(tiny_bundle), "--file", str(jsonl), "--text-column", "review", "--json")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    proc = run_cli("predict", str(tiny_bundle), "--file", "-", "--json", input="一\n\n二\n" + "长" * 3000 + "\n")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and rows[2]["truncated"] is True
    assert "1 empty line(s)" in proc.stderr and "truncated" in proc.stderr
    proc = run_cli("predict", str(tiny_bundle), "--file", str(DATA / "dev.tsv"))
    assert proc.returncode == 0 and "1200 text(s)" in proc.stdout


def test_cli_predict_title_is_its_own_line(tiny_bundle):
    """The table's title is a line of its own above the table, whole at 100 columns: not wrapped at the width of
    the (narrow) table below it."""
    proc = run_cli("predict", str(tiny_bundle), "很好", "--variant", "fp32", env={"COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "1 text(s) · variant fp32 · CPUExecutionProvider"


def test_cli_predict_bad_input(tiny_bundle, tmp_path):
    assert_user_error(run_cli("predict", str(tmp_path / "missing"), "好"), "bundle directory not found")
    assert_user_error(run_cli("predict", str(tiny_bundle), "  "), "text argument 1 is empty")
    assert_user_error(run_cli("predict", str(tiny_bundle)), "no texts to classify")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_user_error(run_cli("predict", str(tiny_bundle), "--file", str(empty)), "no texts to classify")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xc3\x28 broken\n")
    assert_user_error(run_cli("predict", str(tiny_bundle), "--file", str(bad)), f"{bad}:2: invalid UTF-8")
    assert_user_error(run_cli("predict", str(tiny_bundle), "好", "--variant", "fp16"), "CUDA only")
    assert_user_error(
        run_cli("predict", str(tiny_bundle), "好", "--provider", "openvino"), "pip install 'edge-sent[openvino]'"
    )


def test_cli_eval_info_verify(tiny_bundle):
    proc = run_cli("eval", str(tiny_bundle), "--data", str(DATA / "test.tsv"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # auto: the tiny bundle's int8 is far below the fidelity floor, so eval runs fp32
    assert report["n"] == 1200 and report["variant"] == "fp32" and report["texts_per_s"] > 0
    assert np.array(report["confusion"]).sum() == 1200 and 0 <= report["macro_f1"] <= 1
    info = run_cli("info", str(tiny_bundle))
    assert info.returncode == 0 and "int8" in info.stdout and "RANDOM" in info.stdout
    assert json.loads(run_cli("info", str(tiny_bundle), "--json").stdout)["format"] == "edge-sent/bundle"
    proc = run_cli("verify", str(tiny_bundle), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True
