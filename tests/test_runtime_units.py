"""Fast torch-free unit tests of the runtime and the base package on a synthetic bundle (no training, seconds).
They pin what mutation testing found unchecked; the mutmut command is in the README's development section."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tokenizers
from onnx import numpy_helper, parser
from tokenizers import models, pre_tokenizers, processors

from edge_sent import readers
from edge_sent.assets import __file__ as assets
from edge_sent.contract import MANIFEST, Manifest, read_manifest
from edge_sent.errors import BundleError, EdgeSentError
from edge_sent.integrity import check_file, verify_bundle, write_manifest
from edge_sent.labeled import LabeledData, label_ids, label_set
from edge_sent.metrics import classification_report, confusion, macro_f1
from edge_sent.providers import provider_spec
from edge_sent.readers import detect_format, read_records
from edge_sent.runtime import bench, classifier, engine, session
from edge_sent.runtime.classifier import Classifier, choose_variant
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.session import SessionConfig
from edge_sent.tokenization import Tokenizer, check_texts
from edge_sent.variants import QUANTIZE_CHOICES, VARIANT_FILES, VARIANT_TABLE, variant_help

BERT_TOKENIZER = Path(assets).parent / "bert-base-chinese" / "tokenizer.json"
LABELS = ["neg", "neu", "pos"]
LONG, SHORT, MIDDLE = "很好" * 40, "差", "一般般吧还行"
CPU = "CPUExecutionProvider"
# masked mean of (token + type) embeddings -> linear -> softmax: the outputs depend on every real token
GRAPH = """<ir_version: 8, opset_import: ["" : 17]>
tiny (int64[b, s] input_ids, int64[b, s] attention_mask, int64[b, s] token_type_ids)
    => (float[b, n] logits, float[b, n] probabilities) {
    ids = Mod(input_ids, vocab)
    tok = Gather(emb, ids)
    typ = Gather(types, token_type_ids)
    x = Add(tok, typ)
    mask = Cast<to = 1>(attention_mask)
    m = Unsqueeze(mask, last)
    xm = Mul(x, m)
    total = ReduceSum<keepdims = 0>(xm, seq)
    count = ReduceSum<keepdims = 0>(m, seq)
    pooled = Div(total, count)
    logits = MatMul(pooled, w)
    probabilities = Softmax<axis = -1>(logits)
}"""
# format 1 as literals, not the contract's constants: bundles already written must stay readable
RECORD = {"format": "edge-sent/bundle", "format_version": 1, "labels": LABELS, "max_length": 16}
AGREEMENT = dict.fromkeys(("label_agreement", "max_abs_dprob", "mean_abs_dprob"), 1)


def make_bundle(root: Path) -> Path:
    """fp32 and an fp16 entry (the same file: only the GPU rule tells them apart), the vendored tokenizer."""
    model, rng = parser.parse_model(GRAPH), np.random.default_rng(0)
    weights = {"emb": rng.normal(size=(97, 8)), "types": rng.normal(size=(2, 8)), "w": rng.normal(size=(8, 3))}
    model.graph.initializer.extend(numpy_helper.from_array(a.astype(np.float32), k) for k, a in weights.items())
    ints = {"vocab": np.array(97), "last": np.array([-1]), "seq": np.array([1])}
    model.graph.initializer.extend(numpy_helper.from_array(a.astype(np.int64), k) for k, a in ints.items())
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "model.onnx"))
    shutil.copy(BERT_TOKENIZER, root / "tokenizer.json")
    (root / "config.json").write_text('{"vocab_size": 21128}')
    fp32 = {"file": "model.onnx", "verified_on": "cpu", "verification_labels": [2, 0], "eval_accuracy": 0.5}
    fp32 |= {"vs_torch": {"max_abs_dlogit": 0.25}, "vs_fp32": AGREEMENT, "eval_vs_fp32": AGREEMENT}
    variants = {"fp32": fp32, "fp16": {"file": "model.onnx"}}
    write_manifest(root, RECORD | {"encoder": {"random_weights": True}, "data_labels": [0, 1, 2], "variants": variants})
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def clf(bundle: Path) -> Classifier:
    return Classifier.load(bundle, provider="cpu", threads=1)


def test_probabilities_pair_with_labels_and_match_the_graph(clf: Classifier, bundle: Path) -> None:
    raw = ort.InferenceSession(str(bundle / "model.onnx"), providers=[CPU])
    texts = ["这家酒店很好", "服务太差了", MIDDLE, LONG]
    preds = clf.predict(texts, batch_size=2)
    for text, pred in zip(texts, preds, strict=True):
        feeds = clf.engine.tokenizer.pad(clf.engine.encode([text]), np.array([0])).feeds()
        (row,) = raw.run(["probabilities"], feeds)[0]
        assert list(pred.probabilities) == LABELS
        np.testing.assert_allclose(list(pred.probabilities.values()), row, rtol=1e-5)
        np.testing.assert_allclose(clf.run_feeds(feeds)[0], row, rtol=1e-5)
        assert pred.label == max(pred.probabilities, key=pred.probabilities.__getitem__) == LABELS[pred.label_id]
    assert len({p.label for p in preds}) > 1  # the texts really get different answers
    assert (clf.variant, clf.provider, clf.precision, clf.providers) == ("fp32", "cpu", "fp32", [CPU])
    assert clf.max_length == 16 and clf.manifest.root == bundle and not clf.engine._io_binding
    assert Classifier.load(bundle).provider == session.resolve_provider("auto")


def test_truncation_flags_and_rows_follow_the_callers_order(clf: Classifier) -> None:
    preds = clf.predict([LONG, SHORT, LONG], batch_size=2)
    assert [p.truncated for p in preds] == [True, False, True]
    single = [clf.predict([t])[0] for t in (LONG, SHORT)]
    expected = [list(single[i].probabilities.values()) for i in (0, 1, 0)]
    np.testing.assert_allclose([list(p.probabilities.values()) for p in preds], expected, rtol=1e-5)
    streamed = list(clf.predict_iter(iter([SHORT, LONG, SHORT]), batch_size=1, chunk_size=2))
    assert [p.truncated for p in streamed] == [False, True, False]
    pred = preds[0]
    as_dict = {"label": pred.label, "label_id": pred.label_id, "probabilities": pred.probabilities, "truncated": True}
    assert pred.as_dict() == as_dict


def test_engine_scatters_every_output_back_to_the_callers_order(clf: Classifier, bundle: Path) -> None:
    texts = [LONG, SHORT, MIDDLE]
    out = clf.engine.run_texts(texts, batch_size=2, outputs=("logits", "probabilities"), order=np.array([2, 0, 1]))
    plain = Engine(bundle / "model.onnx", clf.engine.tokenizer)  # default config: the auto provider
    assert plain.provider == session.resolve_provider("auto")
    single = [plain.run_texts([t], outputs=("logits",))["logits"][0] for t in texts]
    np.testing.assert_allclose(out["logits"], single, rtol=1e-5)
    assert out["probabilities"].dtype == np.float32 and out.truncated.tolist() == [True, False, False]
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, rtol=1e-5)
    clf.engine.require_outputs("logits", "probabilities")
    with pytest.raises(BundleError, match=rf"^{bundle / 'model.onnx'}: the graph has no 'scores' output$"):
        clf.engine.require_outputs("probabilities", "scores")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="needs a CPU-only build")
def test_sessions_options_fallback_and_unloadable_model(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = bundle / "model.onnx"
    options = session.create_session(model, "cpu", SessionConfig(threads=1)).get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level) == (1, 1, 3)
    message = f"^requested provider 'cuda' is not running this model; onnxruntime fell back to {CPU}$"
    with pytest.raises(EdgeSentError, match=message):
        session.create_session(model, "cuda", SessionConfig(strict=True))
    for module in (classifier, engine):  # a CUDA request that onnxruntime runs on the CPU: warned, no IO binding
        monkeypatch.setattr(module, "resolve_provider", lambda p: "cuda")
    with pytest.warns(session.ProviderFallbackWarning, match=message):
        session.create_session(model, "cuda", SessionConfig(threads=1))  # not strict by default
        assert not Classifier.load(bundle, threads=1).engine._io_binding
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(EdgeSentError, match=r"^\S+bad.onnx: onnxruntime cannot load it \(.+\)$"):
        session.create_session(tmp_path / "bad.onnx", "cpu", SessionConfig())


def test_precision_reaches_the_openvino_options(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    seen: list[object] = []

    class FakeSession:
        def __init__(self, path: str, sess_options: object, providers: list[object]) -> None:
            seen.append(providers)

        def get_providers(self) -> list[str]:
            return ["OpenVINOExecutionProvider", CPU]

    monkeypatch.setattr(session.ort, "InferenceSession", FakeSession)
    for precision in ("bf16", "fp32"):
        session.create_session(bundle / "model.onnx", "openvino", SessionConfig(precision=precision))
    config = '{{"CPU": {{"INFERENCE_PRECISION_HINT": "{}"}}}}'
    options = [{"device_type": "CPU", "load_config": config.format(hint)} for hint in ("bf16", "f32")]
    assert seen == [[("OpenVINOExecutionProvider", option), CPU] for option in options]
    trt = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    assert provider_spec("tensorrt").session_providers("fp32") == trt


def test_choose_variant_and_the_variant_table() -> None:
    def manifest(*names: str) -> Manifest:
        faithful = {"label_agreement": 0.99, "max_abs_dprob": 0.01, "mean_abs_dprob": 0.001}
        return Manifest(
            root=Path("/b"), data={"variants": {n: {"file": f"{n}.onnx", "vs_fp32": faithful} for n in names}}
        )

    full = manifest("fp32", "int8", "fp16")
    providers = ("cpu", "cuda", "tensorrt", "openvino")
    assert [choose_variant(full, "auto", p) for p in providers] == ["int8", "fp16", "fp16", "fp32"]
    assert choose_variant(full, "auto", "cpu", min_agreement=0.995) == "fp32"  # 99% is below that floor
    assert [choose_variant(manifest("fp32"), "auto", p) for p in ("cpu", "cuda")] == ["fp32", "fp32"]
    assert choose_variant(full, "fp16", "tensorrt") == "fp16" and choose_variant(full, "int8", "cuda") == "int8"
    assert choose_variant(manifest("fp32", "custom"), "custom", "cpu") == "custom"  # not in the table: no rule
    refused = r"^the fp16 variant runs on CUDA only \(fp16 on CPU is slower than fp32\); use --variant fp32, int8 on"
    with pytest.raises(EdgeSentError, match=refused + " cpu, or --provider cuda$"):
        choose_variant(full, "fp16", "cpu")
    with pytest.raises(EdgeSentError, match="use --variant fp32 on openvino"):
        choose_variant(manifest("fp16"), "fp16", "openvino")
    with pytest.raises(BundleError, match=r"^variant 'int4' is not in bundle /b \(it has: fp16, fp32, int8\)$"):
        choose_variant(full, "int4", "cpu")
    with pytest.raises(BundleError, match=r"\(it has: none\)$"):
        choose_variant(manifest(), "fp32", "cpu")
    assert variant_help().startswith(
        "auto: decided on this host: the fastest candidate (cpu: int8, cpu: int8-block) that beats fp32 here"
    )
    # file names are part of the bundle format: bundles already written must keep loading
    names = ("fp32", "int8", "int8-block", "int8-static", "fp16", "int4")
    files = ["model.onnx", "model_quantized.onnx", "model_int8_block.onnx", "model_qdq.onnx", "model_fp16.onnx"]
    assert dict(zip(names, [*files, "model_q4.onnx"], strict=True)) == VARIANT_FILES
    assert names[1:] == QUANTIZE_CHOICES
    assert [s.name for s in VARIANT_TABLE if s.needs_calibration] == ["int8-static"]


def _data(*labels: str) -> LabeledData:
    return LabeledData("d.tsv", ["t"] * len(labels), list(labels), 0)


def test_label_set_label_ids_and_metrics() -> None:
    assert label_set(_data("2", "10", "1", "2")) == ["1", "2", "10"] and label_set(_data("-1", "0")) == ["-1", "0"]
    assert label_set(_data("pos", "neg", "10")) == ["10", "neg", "pos"] and label_set(_data("X2", "X10")) == [
        "X10",
        "X2",
    ]
    with pytest.raises(EdgeSentError, match=r"^d.tsv: the training set has a single class \('x'\); need at least 2"):
        label_set(_data("x", "x"))
    # a real label name maps to its own position; a position alias only to strings that are not names
    assert label_ids(_data("1", "2", "0"), ["1", "2"], aliases=[["0", "1"]]).tolist() == [0, 1, 0]
    assert label_ids(_data("0", "pos"), ["a", "b"], aliases=[["0", "1"], ["neg", "pos"]]).tolist() == [0, 1]
    assert label_ids(_data("b", "a"), ["a", "b"]).dtype == np.int64
    with pytest.raises(EdgeSentError, match=r"^d.tsv: label '7' does not occur in the bundle \(labels: a, b\)$"):
        label_ids(_data("a", "7"), ["a", "b"], known_from="the bundle")
    matrix = confusion(np.array([0, 0, 1]), np.array([1, 1, 1]), 2)
    assert matrix.tolist() == [[0, 2], [0, 1]]  # rows are true labels
    with np.errstate(all="raise"):  # an absent class scores 0 without dividing 0 by 0
        assert macro_f1(confusion(np.array([0, 1]), np.array([0, 1]), 3)) == pytest.approx(2 / 3)
        assert macro_f1(matrix) == pytest.approx((0 + 0.5) / 2)
    assert macro_f1(confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2)) == pytest.approx(0.5)
    report = classification_report(np.array([0, 1, 1, 1]), np.array([0, 1, 0, 1]), ["a", "b"])
    expected = {"n": 4, "accuracy": 0.75, "macro_f1": pytest.approx(0.7333333), "labels": ["a", "b"]}
    assert report == expected | {"confusion": [[1, 0], [1, 2]]}
    assert classification_report(np.array([], dtype=int), np.array([], dtype=int), ["a"])["accuracy"] == 0.0


def _tokenizer(path: Path, vocab: dict[str, int], template: str | None = None) -> Path:
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if template:
        tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[("[UNK]", 3)])
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", {"[UNK]": 0, "a": 1, "b": 2, "[PAD]": 7})


def test_tokenizer_pads_batches_and_restores_order(word_tokenizer: Path) -> None:
    enc = Tokenizer(word_tokenizer, max_length=8)
    encoded = enc.encode(["a b a", "b", "a " * 9, "a b"])
    assert [e.truncated for e in encoded] == [False, False, True, False] and len(encoded[2].ids) == 8
    batches = list(enc.batches(encoded, batch_size=2))
    assert [b.index.tolist() for b in batches] == [[1, 3], [0, 2]]
    assert batches[0].input_ids.tolist() == [[2, 7], [1, 2]] and batches[0].attention_mask.tolist() == [[1, 0], [1, 1]]
    assert batches[1].truncated.tolist() == [False, True] and batches[0].token_type_ids.tolist() == [[0, 0], [0, 0]]
    assert [b.index.tolist() for b in enc.batches(encoded, 1, order=np.array([3, 0]))] == [[3], [0]]
    with pytest.raises(EdgeSentError, match=r"^batch size must be at least 1, got 0$"):
        next(enc.batches(encoded, 0))
    with pytest.raises(EdgeSentError, match=r"^max length 7 is too short \(at least 8 tokens\)$"):
        Tokenizer(word_tokenizer, max_length=7)
    assert (enc.first_id, enc.last_id, enc.vocab_size) == (None, None, 4)
    bert = Tokenizer(BERT_TOKENIZER, 8)
    assert (bert.first_id, bert.last_id, bert.pad_id, bert.vocab_size) == (101, 102, 0, 21128)
    lead = Tokenizer(_tokenizer(word_tokenizer.with_name("lead.json"), {"[UNK]": 3, "a": 1}, "[UNK] $A"), 8)
    assert (lead.pad_id, lead.first_id, lead.last_id) == (0, 3, None)  # no [PAD], one framing token
    word_tokenizer.with_name("bad.json").write_text("{")
    with pytest.raises(EdgeSentError, match=r"^\S+bad.json: cannot load tokenizer \(.+\)$"):
        Tokenizer(word_tokenizer.with_name("bad.json"), 8)
    check_texts(["a", ""])
    for bad in ("abc", b"abc"):
        with pytest.raises(TypeError, match=r"^texts must be a list of strings, not a single string$"):
            check_texts(bad)
    with pytest.raises(TypeError, match=r"^texts\[1\] is int, expected str$"):
        check_texts(["a", 3, None])


def _rows(path: Path | str, **kw: Any) -> list[tuple[int, str, str | None, str | None]]:
    return [(r.line, r.text, r.label, r.id) for r in read_records(path, **kw)]


def test_readers_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ("a.JSON", "a.ndjson", "a.csv", "a.tsv", "a.jsonl", "a.log", "a.parquet", "a.PQ")
    kinds = ["jsonl", "jsonl", "csv", "tsv", "jsonl", "txt", "parquet", "parquet"]
    assert [detect_format(p) for p in paths] == kinds
    assert detect_format("a.txt", "csv") == "csv"
    message = r"^unknown file format 'xml' \(choose from txt, tsv, csv, jsonl, parquet\)$"
    with pytest.raises(EdgeSentError, match=message):
        detect_format("a.txt", "xml")
    path = tmp_path / "d.jsonl"
    path.write_text('\ufeff{"text_a": "x", "label": 1, "k": 7}\n\n{"text_a": "y", "label": " b ", "k": "z"}\n')
    assert _rows(path, label_field="label", id_field="k") == [(1, "x", "1", "7"), (3, "y", "b", "z")]
    assert _rows(path) == [(1, "x", None, None), (3, "y", None, None)]
    bad = {
        "[1]": "expected a JSON object, got list",
        "{}": "no key 'text_a'; keys found: (none)",
        '{"text_a": "x", "label": true}': "label must be a string or an integer, got True",
        '{"text_a": "x", "label": " "}': "empty label",
    }
    for line, message in bad.items():
        path.write_text(line + "\n")
        with pytest.raises(EdgeSentError) as info:
            list(read_records(path, label_field="label"))
        assert str(info.value) == f"{path}:1: {message}"
    tsv, csv_file, skipped = tmp_path / "d.tsv", tmp_path / "d.csv", []
    tsv.write_text(' text_a \tlabel\tk\n"q\t 1 \ta\n\nbad\n\t\td\nb\t0\tc\n')
    opened: list[IO[Any]] = []

    def tracked_open(*args: Any) -> IO[Any]:
        opened.append(open(*args))  # noqa: SIM115 - read_records closes it: checked below
        return opened[-1]

    monkeypatch.setattr(readers, "open", tracked_open, raising=False)
    rows = _rows(tsv, label_field="label", id_field="k", on_bad_row=lambda e: skipped.append(str(e)))
    assert rows == [(2, '"q', "1", "a"), (6, "b", "0", "c")] and opened and all(f.closed for f in opened)
    assert skipped == [f"{tsv}:4: malformed row: 1 fields, header has 3", f"{tsv}:5: empty label"]
    csv_file.write_text('text_a\n"a"b\nok\n')
    assert _rows(csv_file, on_bad_row=lambda e: skipped.append(str(e))) == [(3, "ok", None, None)]
    assert skipped[-1].startswith(f"{csv_file}:2: malformed row (")
    tsv.write_bytes(b"text_a\n\xff\nok\n")
    assert _rows(tsv, on_bad_row=lambda e: skipped.append(str(e))) == [(3, "ok", None, None)]
    assert skipped[-1] == f"{tsv}:2: invalid UTF-8 (invalid start byte at byte 0)"
    with pytest.raises(EdgeSentError, match=r"^\S+d.tsv: a .txt file has one text per line and no labels"):
        list(read_records(tsv, fmt="txt", label_field="label"))
    with pytest.raises(EdgeSentError, match=r"^\S+none.tsv: file not found$"):
        list(read_records(tmp_path / "none.tsv"))
    tsv.write_text("\nx\n")
    with pytest.raises(EdgeSentError, match=r"d.tsv: no column 'text_a'; columns found: \(none\)$"):
        list(read_records(tsv))
    stdin = io.BytesIO("aX\r\n\n好\n".encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    assert _rows("-") == [(1, "aX", None, None), (2, "", None, None), (3, "好", None, None)] and not stdin.closed
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"text_a\tl\nx\t\n")))
    with pytest.raises(EdgeSentError, match=r"^<stdin>:2: empty label$"):
        list(read_records("-", fmt="tsv", label_field="l"))


def test_resolve_precision_and_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "cpu_has_bf16", lambda: True)
    assert [session.resolve_precision("cpu", p) for p in ("auto", "fp32")] == ["fp32", "fp32"]
    assert [session.resolve_precision("openvino", p) for p in ("auto", "fp32", "bf16")] == ["bf16", "fp32", "bf16"]
    monkeypatch.setattr(session, "cpu_has_bf16", lambda: False)
    assert session.resolve_precision("openvino", "auto") == "fp32"
    with pytest.raises(EdgeSentError, match=r"^precision bf16 needs the OpenVINO provider \(--provider openvino\)$"):
        session.resolve_precision("cuda", "bf16")
    with pytest.raises(EdgeSentError, match=r"^unknown precision 'fp16' \(choose from auto, fp32, bf16\)$"):
        session.resolve_precision("openvino", "fp16")
    assert session.resolve_provider("cpu") == "cpu"
    assert session._installed("onnxruntime") and not session._installed("no-such-distribution")
    with pytest.raises(EdgeSentError, match=r"^unknown provider 'gpu' \(choose from auto, cpu, cuda"):
        session.resolve_provider("gpu")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", CPU])
    assert session.resolve_provider("auto") == "cuda"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["OpenVINOExecutionProvider", CPU])
    for machine, expected in (("x86_64", "openvino"), ("AMD64", "openvino"), ("aarch64", "cpu")):
        monkeypatch.setattr(session.platform, "machine", lambda m=machine: m)
        assert session.resolve_provider("auto") == expected
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", CPU])
    assert session.resolve_provider("auto") == "cpu" and session.resolve_provider("tensorrt") == "tensorrt"
    monkeypatch.setattr(session, "_installed", lambda name: name in ("onnxruntime", "onnxruntime-openvino"))
    message = (
        rf"^provider 'cuda' is not available in this onnxruntime build \(available: TensorrtExecutionProvider, {CPU}"
    )
    with pytest.raises(
        EdgeSentError, match=message + r"\); see docs/openvino.md \(onnxruntime builds: one per venv\)$"
    ):
        session.resolve_provider("cuda")
    with pytest.raises(EdgeSentError, match=r"^provider 'openvino': onnxruntime-openvino is installed, but the CPU"):
        session.resolve_provider("openvino")


def test_physical_cores_count_cores_not_hyperthreads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"  # 2 sockets x 2 cores x 2 threads
    cpuinfo.write_text(
        "".join(f"processor\t: {i}\nphysical id\t: {i % 2}\ncore id\t: {i // 2 % 2}\n\n" for i in range(8))
    )
    monkeypatch.setattr(session, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else tmp_path / "absent")
    for affinity, cores in ((8, 4), (3, 3), (1, 1)):
        monkeypatch.setattr(session.os, "sched_getaffinity", lambda pid, n=affinity: set(range(n)) if pid == 0 else {0})
        assert session.physical_cores() == cores
    monkeypatch.delattr(session.os, "sched_getaffinity")
    for count, cores in ((6, 4), (None, 1)):
        monkeypatch.setattr(session.os, "cpu_count", lambda c=count: c)
        assert session.physical_cores() == cores
    cpuinfo.write_text("flags\t: avx2 avx512_bf16\n")
    assert session.physical_cores() == 1  # no core ids: the usable count
    cpuinfo.unlink()
    assert session.physical_cores() == 1
    # bf16 is read from the CPU this code runs on (cpu_identity), never from /proc/cpuinfo (the host's under qemu)
    for flags, bf16 in ((["avx2", "avx512_bf16"], True), (["amx_bf16"], True), (["avx2", "avx512f"], False)):
        monkeypatch.setattr(session, "cpu_flags", lambda f=flags: f)
        assert session.cpu_has_bf16() is bf16


def _error(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(BundleError) as info:
        call(*args)
    return str(info.value)


def test_manifest_and_file_checks(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    manifest, path, config = read_manifest(root), root / "manifest.json", root / "config.json"
    assert (manifest.labels, manifest.max_length, manifest.variant_file("fp32")) == (LABELS, 16, "model.onnx")
    assert manifest.data_labels == ["0", "1", "2"] and manifest.random_weights and verify_bundle(root) == []
    check = manifest.variants["fp32"].verification
    assert (check.verified_on, check.labels, check.max_abs_dlogit, check.eval_accuracy) == ("cpu", (2, 0), 0.25, 0.5)
    assert check.vs_fp32 == check.eval_vs_fp32 and check.vs_fp32 is not None and check.vs_fp32.mean_abs_dprob == 1
    assert manifest.variants["fp16"].verification.vs_fp32 is None
    assert check_file(manifest, "tokenizer.json") == root / "tokenizer.json"
    for name in ("../x", "", ".", ".."):
        assert _error(check_file, manifest, name) == f"{path}: file name {name!r} points outside the bundle"
    assert _error(check_file, manifest, "extra.bin") == f"{root / 'extra.bin'}: not listed in the manifest"
    config.write_text('{"vocab_size": 21128} ')
    assert _error(check_file, manifest, "config.json") == f"{config}: altered (size 22 bytes, manifest says 21)"
    assert verify_bundle(root) == [f"{config}: altered (size 22 bytes, manifest says 21)"]
    config.write_text('{"vocab_size": 21129}')
    assert _error(check_file, manifest, "config.json") == f"{config}: altered (sha256 does not match the manifest)"
    config.unlink()
    assert _error(check_file, manifest, "config.json") == f"{config}: missing"
    data = json.loads(path.read_text())
    assert MANIFEST not in write_manifest(root, data)["files"]
    versions = {2: "is newer than this edge-sent understands (1)", 0: "is older than this edge-sent reads (1 to 1)"}
    for version, message in versions.items():
        path.write_text(json.dumps(data | {"format_version": version}))
        assert _error(read_manifest, root).startswith(f"{path}: bundle format version {version} {message}; ")
    for bad in ("1", True):
        path.write_text(json.dumps(data | {"format_version": bad}))
        assert (
            _error(read_manifest, root)
            == f"{path}: no bundle format version (format_version is {bad!r}); re-export the bundle"
        )
    cases = [
        (data | {"format": "other"}, "unknown format 'other'"),
        ([1], "unknown format None"),
        ({k: v for k, v in data.items() if k != "variants"}, "manifest lacks 'variants'"),
        (data | {"variants": {"fp32": "x"}}, "malformed manifest (variant 'fp32' needs an object with a 'file')"),
        (data | {"files": {"x": "y"}}, "malformed manifest (a file entry must be an object, got str)"),
    ]
    for content, message in cases:
        path.write_text(json.dumps(content))
        assert _error(read_manifest, root) == f"{path}: {message}"
    path.write_text(json.dumps({**data, "files": {"model.onnx": {}}}))
    assert _error(check_file, read_manifest(root), "model.onnx").endswith("manifest says -1)")
    path.write_bytes(b"\xff{")
    assert _error(read_manifest, root).startswith(f"{path}: not valid JSON (")
    path.unlink()
    assert _error(read_manifest, root) == f"{path}: missing (not an edge-sent bundle?)"
    assert _error(read_manifest, root / "nope") == f"bundle directory not found: {root / 'nope'}"


def test_bench(bundle: Path, word_tokenizer: Path) -> None:
    feeds = bench.synthetic_feeds(64, 64, Tokenizer(BERT_TOKENIZER, 64), seed=1)
    ids = feeds["input_ids"]
    # the bundle's own framing ([CLS] 101 ... [SEP] 102 for bert-base-chinese), the upper 95% of its vocabulary
    assert ids.shape == (64, 64) and ids.dtype == np.int64 and (ids[:, 0] == 101).all() and (ids[:, -1] == 102).all()
    assert ids[:, 1:-1].min() >= 21128 // 20 and ids.max() < 21128 and (feeds["attention_mask"] == 1).all()
    assert (feeds["token_type_ids"] == 0).all()
    # a tokenizer that is not bert-base-chinese's: ids stay inside its vocabulary, no [CLS]/[SEP] ids
    other = bench.synthetic_feeds(3, 6, Tokenizer(word_tokenizer, 8), seed=0)["input_ids"]
    assert other.max() < 8 and not np.isin(other, [101, 102]).any()
    stats = bench.percentiles([0.001, 0.002, 0.003, 0.004, 0.010])
    assert stats == pytest.approx({"p50_ms": 3.0, "p90_ms": 7.6, "p99_ms": 9.76, "runs": 5})
    assert all(0 <= t < 1 for t in bench.time_calls(lambda f: None, feeds, runs=3, warmup=0))
    calls: list[str] = []
    times = bench.rotated_blocks({"a": lambda f: calls.append("a"), "b": lambda f: calls.append("b")}, feeds, 3, 1, 0)
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    config = bench.BenchConfig(seq_lengths=(8, 64), runs=2, warmup=1, provider="cpu", threads=1, pause_s=0)
    result = bench.run_bench(str(bundle), config, texts=[SHORT, LONG])
    assert set(result) == {
        "edge_sent_version",
        "bundle",
        "machine",
        "random_weights",
        "batch_size",
        "threads",
        "variants",
    }
    assert set(result["machine"]) == {"cpu", "python", "onnxruntime"} and result["machine"]["cpu"]
    assert result["random_weights"] is True and result["batch_size"] == 1 and list(result["variants"]) == ["fp32"]
    fp32 = result["variants"]["fp32"]  # fp16 is in the bundle but does not run on CPU
    assert set(fp32) == {"file_bytes", "provider", "precision", "latency", "throughput"}
    assert fp32["provider"] == CPU and fp32["file_bytes"] == (bundle / "model.onnx").stat().st_size
    assert list(fp32["latency"]) == ["8", "16"] and fp32["latency"]["16"]["runs"] == 2
    throughput = fp32["throughput"]  # 2 texts through a tiny graph take well under a second
    assert (throughput["texts"], throughput["batch_size"]) == (2, 32) and throughput["texts_per_s"] > 2
