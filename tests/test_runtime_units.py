"""Fast torch-free unit tests of the runtime and the base package on a synthetic bundle (no training, seconds).
They pin what mutation testing found unchecked; the mutmut command is in the README's development section."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tokenizers
from onnx import TensorProto, helper, numpy_helper
from tokenizers import models, pre_tokenizers, processors

from edge_sent import readers
from edge_sent.assets import __file__ as assets
from edge_sent.contract import MANIFEST, Manifest, check_file, read_manifest, verify_bundle, write_manifest
from edge_sent.errors import BundleError, EdgeSentError
from edge_sent.labeled import LabeledData, label_ids, label_set
from edge_sent.metrics import classification_report, confusion, macro_f1
from edge_sent.providers import provider_spec
from edge_sent.readers import detect_format, read_records
from edge_sent.runtime import bench, session
from edge_sent.runtime.classifier import Classifier, choose_variant
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.session import SessionConfig
from edge_sent.tokenization import Tokenizer, check_texts
from edge_sent.variants import QUANTIZE_CHOICES, VARIANT_FILES, VARIANT_TABLE, variant_help

BERT_TOKENIZER = Path(assets).parent / "bert-base-chinese" / "tokenizer.json"
LABELS = ["neg", "neu", "pos"]
MAX_LENGTH = 16
LONG, SHORT, MIDDLE = "很好" * 40, "差", "一般般吧还行"
CPU = "CPUExecutionProvider"


def _model(num_labels: int) -> onnx.ModelProto:
    """Masked mean of (token + type) embeddings -> linear -> softmax: outputs depend on every real token."""
    rng = np.random.default_rng(0)
    arrays = {"emb": rng.normal(size=(97, 8)), "types": rng.normal(size=(2, 8)), "w": rng.normal(size=(8, num_labels))}
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    inits += [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in (("v", 97), ("m1", [-1]), ("s", [1]))]
    node = helper.make_node
    nodes = [
        node("Mod", ["input_ids", "v"], ["ids"]),
        node("Gather", ["emb", "ids"], ["tok"]),
        node("Gather", ["types", "token_type_ids"], ["typ"]),
        node("Add", ["tok", "typ"], ["x"]),
        node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["m", "m1"], ["m3"]),
        node("Mul", ["x", "m3"], ["xm"]),
        node("ReduceSum", ["xm", "s"], ["sum"], keepdims=0),
        node("ReduceSum", ["m3", "s"], ["n"], keepdims=0),
        node("Div", ["sum", "n"], ["pooled"]),
        node("MatMul", ["pooled", "w"], ["logits"]),
        node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"]) for n in ("input_ids", "attention_mask")]
    ins.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["b", "s"]))
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", num_labels]) for n in ("logits", "probabilities")]
    graph = helper.make_graph(nodes, "tiny", ins, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


# format 1 as literals, not the contract's constants: bundles already written must stay readable
RECORD = {"format": "edge-sent/bundle", "format_version": 1, "labels": LABELS, "max_length": MAX_LENGTH}


def make_bundle(root: Path) -> Path:
    """fp32 and an fp16 entry (the same file: only the GPU rule tells them apart), the vendored tokenizer."""
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(_model(len(LABELS)), str(root / "model.onnx"))
    shutil.copy(BERT_TOKENIZER, root / "tokenizer.json")
    (root / "config.json").write_text('{"vocab_size": 21128}')
    fp32 = {"file": "model.onnx", "verified_on": "cpu", "verification_labels": [2, 0], "eval_accuracy": 0.5}
    fp32 |= {
        "vs_torch": {"max_abs_dlogit": 0.25},
        "vs_fp32": dict.fromkeys(("label_agreement", "max_abs_dprob", "mean_abs_dprob"), 1),
    }
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
    assert clf.max_length == MAX_LENGTH and clf.manifest.root == bundle and not clf.engine._io_binding
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
def test_create_session_options_fallback_and_unloadable_model(bundle: Path, tmp_path: Path) -> None:
    model = bundle / "model.onnx"
    options = session.create_session(model, "cpu", SessionConfig(threads=1)).get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level) == (1, 1, 3)
    message = f"^requested provider 'cuda' is not running this model; onnxruntime fell back to {CPU}$"
    with pytest.raises(EdgeSentError, match=message):
        session.create_session(model, "cuda", SessionConfig(strict=True))
    with pytest.warns(session.ProviderFallbackWarning, match=message):
        session.create_session(model, "cuda", SessionConfig(threads=1))
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
    hints = [
        {"device_type": "CPU", "load_config": f'{{"CPU": {{"INFERENCE_PRECISION_HINT": "{h}"}}}}'}
        for h in ("bf16", "f32")
    ]
    assert seen == [[("OpenVINOExecutionProvider", hint), CPU] for hint in hints]
    trt = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    assert provider_spec("tensorrt").session_providers("fp32") == trt


def test_choose_variant_and_the_variant_table() -> None:
    def manifest(*names: str) -> Manifest:
        return Manifest(root=Path("/b"), data={"variants": {n: {"file": f"{n}.onnx"} for n in names}})

    full = manifest("fp32", "int8", "fp16")
    providers = ("cpu", "cuda", "tensorrt", "openvino")
    assert [choose_variant(full, "auto", p) for p in providers] == ["int8", "fp16", "fp16", "fp32"]
    assert [choose_variant(manifest("fp32"), "auto", p) for p in ("cpu", "cuda")] == ["fp32", "fp32"]
    assert choose_variant(full, "fp16", "tensorrt") == "fp16" and choose_variant(full, "int8", "cuda") == "int8"
    assert choose_variant(manifest("fp32", "custom"), "custom", "cpu") == "custom"  # not in the table: no rule
    refused = (
        r"^the fp16 variant runs on CUDA only \(fp16 on CPU is slower than fp32\); use --variant fp32, int8 on cpu"
    )
    with pytest.raises(EdgeSentError, match=refused + ", or --provider cuda$"):
        choose_variant(full, "fp16", "cpu")
    with pytest.raises(EdgeSentError, match="use --variant fp32 on openvino"):
        choose_variant(manifest("fp16"), "fp16", "openvino")
    with pytest.raises(BundleError, match=r"^variant 'int4' is not in bundle /b \(it has: fp16, fp32, int8\)$"):
        choose_variant(full, "int4", "cpu")
    with pytest.raises(BundleError, match=r"\(it has: none\)$"):
        choose_variant(manifest(), "fp32", "cpu")
    assert variant_help() == "auto (cpu: int8, cuda/tensorrt: fp16; else fp32), fp32, int8, int8-static, fp16, int4."
    # file names are part of the bundle format: bundles already written must keep loading
    files = ["model.onnx", "model_quantized.onnx", "model_qdq.onnx", "model_fp16.onnx", "model_q4.onnx"]
    assert dict(zip(("fp32", "int8", "int8-static", "fp16", "int4"), files, strict=True)) == VARIANT_FILES
    assert QUANTIZE_CHOICES == ("int8", "int8-static", "fp16", "int4")
    assert [s.name for s in VARIANT_TABLE if s.needs_calibration] == ["int8-static"]


def _data(*labels: str) -> LabeledData:
    return LabeledData("d.tsv", ["t"] * len(labels), list(labels), 0)


def test_label_set_and_label_ids() -> None:
    assert label_set(_data("2", "10", "1", "2")) == ["1", "2", "10"]
    assert label_set(_data("-1", "1", "0")) == ["-1", "0", "1"]
    assert label_set(_data("pos", "neg", "10")) == ["10", "neg", "pos"]
    assert label_set(_data("X2", "X10")) == ["X10", "X2"]
    with pytest.raises(EdgeSentError, match=r"^d.tsv: the training set has a single class \('x'\); need at least 2"):
        label_set(_data("x", "x"))
    # a real label name maps to its own position; a position alias only to strings that are not names
    assert label_ids(_data("1", "2", "0"), ["1", "2"], aliases=[["0", "1"]]).tolist() == [0, 1, 0]
    assert label_ids(_data("0", "pos"), ["a", "b"], aliases=[["0", "1"], ["neg", "pos"]]).tolist() == [0, 1]
    assert label_ids(_data("b", "a"), ["a", "b"]).dtype == np.int64
    with pytest.raises(EdgeSentError, match=r"^d.tsv: label '7' does not occur in the bundle \(labels: a, b\)$"):
        label_ids(_data("a", "7"), ["a", "b"], known_from="the bundle")


def test_metrics() -> None:
    matrix = confusion(np.array([0, 0, 1]), np.array([1, 1, 1]), 2)
    assert matrix.tolist() == [[0, 2], [0, 1]]  # rows are true labels
    assert macro_f1(confusion(np.array([0, 1]), np.array([0, 1]), 3)) == pytest.approx(2 / 3)  # class 2 absent
    assert macro_f1(matrix) == pytest.approx((0 + 0.5) / 2)
    assert macro_f1(confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2)) == pytest.approx(0.5)
    report = classification_report(np.array([0, 1, 1, 1]), np.array([0, 1, 0, 1]), ["a", "b"])
    expected = {"n": 4, "accuracy": 0.75, "macro_f1": pytest.approx(0.7333333), "labels": ["a", "b"]}
    assert report == expected | {"confusion": [[1, 0], [1, 2]]}
    assert classification_report(np.array([], dtype=int), np.array([], dtype=int), ["a"])["accuracy"] == 0.0


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2, "[PAD]": 7}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


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
    lead = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 3, "a": 1}, unk_token="[UNK]"))  # no [PAD] either
    lead.post_processor = processors.TemplateProcessing(single="[UNK] $A", special_tokens=[("[UNK]", 3)])
    lead.save(str(word_tokenizer.with_name("lead.json")))
    lead_tokenizer = Tokenizer(word_tokenizer.with_name("lead.json"), 8)
    assert (lead_tokenizer.pad_id, lead_tokenizer.first_id, lead_tokenizer.last_id) == (0, 3, None)
    word_tokenizer.with_name("bad.json").write_text("{")
    with pytest.raises(EdgeSentError, match=r"^\S+bad.json: cannot load tokenizer"):
        Tokenizer(word_tokenizer.with_name("bad.json"), 8)


def test_check_texts() -> None:
    check_texts(["a", ""])
    for bad in ("abc", b"abc"):
        with pytest.raises(TypeError, match=r"^texts must be a list of strings, not a single string$"):
            check_texts(bad)
    with pytest.raises(TypeError, match=r"^texts\[1\] is int, expected str$"):
        check_texts(["a", 3, None])


def _rows(path: Path | str, **kw: str) -> list[tuple[int, str, str | None, str | None]]:
    return [(r.line, r.text, r.label, r.id) for r in read_records(path, **kw)]


def test_readers_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ("a.JSON", "a.ndjson", "a.csv", "a.tsv", "a.jsonl", "a.log")
    assert [detect_format(p) for p in paths] == ["jsonl", "jsonl", "csv", "tsv", "jsonl", "txt"]
    assert detect_format("a.txt", "csv") == "csv"
    with pytest.raises(EdgeSentError, match=r"^unknown file format 'xml' \(choose from txt, tsv, csv, jsonl\)$"):
        detect_format("a.txt", "xml")
    path = tmp_path / "d.jsonl"
    path.write_text('\ufeff{"text_a": "x", "label": 1, "k": 7}\n\n{"text_a": "y", "label": " b ", "k": "z"}\n')
    assert _rows(path, label_field="label", id_field="k") == [(1, "x", "1", "7"), (3, "y", "b", "z")]
    assert _rows(path) == [(1, "x", None, None), (3, "y", None, None)]
    bad = {
        "[1]": "1: expected a JSON object, got list",
        "{}": "1: no key 'text_a'; keys found: (none)",
        '{"text_a": "x", "label": true}': "1: label must be a string or an integer, got True",
        '{"text_a": "x", "label": " "}': "1: empty label",
    }
    for line, message in bad.items():
        path.write_text(line + "\n")
        with pytest.raises(EdgeSentError) as info:
            list(read_records(path, label_field="label"))
        assert str(info.value) == f"{path}:{message}"
    tsv = tmp_path / "d.tsv"
    tsv.write_text(' text_a \tlabel\tk\n"q\t 1 \ta\n\nb\t0\tc\nbad\n\t\td\n')
    opened: list[io.BufferedReader] = []
    monkeypatch.setattr(readers, "open", lambda *a: opened.append(open(*a)) or opened[-1], raising=False)  # noqa: SIM115
    skipped: list[str] = []
    rows = _rows(tsv, label_field="label", id_field="k", on_bad_row=lambda e: skipped.append(str(e)))
    assert rows == [(2, '"q', "1", "a"), (4, "b", "0", "c")] and opened and all(f.closed for f in opened)
    assert skipped == [f"{tsv}:5: malformed row: 1 fields, header has 3", f"{tsv}:6: empty label"]
    tsv.write_bytes(b"text_a\n\xff\nok\n")
    assert [r.text for r in read_records(tsv, on_bad_row=lambda e: skipped.append(str(e)))] == ["ok"]
    assert skipped[-1].startswith(f"{tsv}:2: invalid UTF-8")
    with pytest.raises(EdgeSentError, match=r"^\S+d.tsv: a .txt file has one text per line and no labels"):
        list(read_records(tmp_path / "d.tsv", fmt="txt", label_field="label"))
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


def test_line_numbers_after_a_skipped_invalid_utf8_line(tmp_path: Path) -> None:
    for name, content in (("d.tsv", b"text_a\n\xff\nok\n"), ("d.jsonl", b'\xff\n{"text_a": "ok"}\n')):
        (tmp_path / name).write_bytes(content)
        assert [r.line for r in read_records(tmp_path / name, on_bad_row=lambda e: None)] == [3 if "tsv" in name else 2]


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
        rf"^provider 'cuda' is not available in this onnxruntime build \(available: TensorrtExecutionProvider, {CPU}\)"
    )
    with pytest.raises(EdgeSentError, match=message + "; see the README on onnxruntime builds$"):
        session.resolve_provider("cuda")
    with pytest.raises(EdgeSentError, match=r"^provider 'openvino': onnxruntime-openvino is installed, but the CPU"):
        session.resolve_provider("openvino")


def test_physical_cores_count_cores_not_hyperthreads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"  # 2 sockets x 2 cores x 2 threads
    cpuinfo.write_text(
        "".join(f"physical id\t: {i % 2}\ncore id\t\t: {i // 2 % 2}\nflags\t: avx2\n\n" for i in range(8))
    )
    monkeypatch.setattr(session, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else tmp_path / "absent")
    for affinity, cores in ((8, 4), (3, 3), (1, 1)):
        monkeypatch.setattr(session.os, "sched_getaffinity", lambda pid, n=affinity: set(range(n)) if pid == 0 else {0})
        assert session.physical_cores() == cores and not session.cpu_has_bf16()
    monkeypatch.delattr(session.os, "sched_getaffinity")
    for count, cores in ((6, 4), (None, 1)):
        monkeypatch.setattr(session.os, "cpu_count", lambda c=count: c)
        assert session.physical_cores() == cores
    for flag in ("avx512_bf16", "amx_bf16"):
        cpuinfo.write_text(f"flags\t: avx2 {flag}\n")
        assert session.cpu_has_bf16() and session.physical_cores() == 1  # no core ids: the usable count
    cpuinfo.unlink()
    assert session.physical_cores() == 1 and not session.cpu_has_bf16()


def _error(call, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleError) as info:
        call(*args)
    return str(info.value)


def test_manifest_and_file_checks(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    manifest, path = read_manifest(root), root / "manifest.json"
    assert (manifest.labels, manifest.max_length, manifest.variant_file("fp32")) == (LABELS, MAX_LENGTH, "model.onnx")
    assert manifest.data_labels == ["0", "1", "2"] and manifest.random_weights and verify_bundle(root) == []
    check = manifest.variants["fp32"].verification
    assert (check.verified_on, check.labels, check.max_abs_dlogit, check.eval_accuracy) == ("cpu", (2, 0), 0.25, 0.5)
    assert check.vs_fp32 is not None and (check.vs_fp32.label_agreement, check.vs_fp32.mean_abs_dprob) == (1, 1)
    assert check.eval_vs_fp32 is None and manifest.variants["fp16"].verification.max_abs_dlogit is None
    assert check_file(manifest, "tokenizer.json") == root / "tokenizer.json"
    for name in ("../x", "", ".", ".."):
        assert _error(check_file, manifest, name) == f"{path}: file name {name!r} points outside the bundle"
    assert _error(check_file, manifest, "extra.bin") == f"{root / 'extra.bin'}: not listed in the manifest"
    (root / "config.json").write_text('{"vocab_size": 21128} ')
    assert (
        _error(check_file, manifest, "config.json") == f"{root}/config.json: altered (size 22 bytes, manifest says 21)"
    )
    assert verify_bundle(root) == [f"{root}/config.json: altered (size 22 bytes, manifest says 21)"]
    (root / "config.json").write_text('{"vocab_size": 21129}')
    assert (
        _error(check_file, manifest, "config.json")
        == f"{root}/config.json: altered (sha256 does not match the manifest)"
    )
    (root / "config.json").unlink()
    assert _error(check_file, manifest, "config.json") == f"{root / 'config.json'}: missing"
    data = json.loads(path.read_text())
    assert MANIFEST not in write_manifest(root, data)["files"]
    cases = [
        (
            {**data, "format_version": 2},
            "bundle format version 2 is newer than this edge-sent understands (1); upgrade edge-sent",
        ),
        (
            {**data, "format_version": 0},
            "bundle format version 0 is older than this edge-sent reads (1 to 1); re-export it with `edge-sent export`",
        ),
        ({**data, "format_version": "1"}, "no bundle format version (format_version is '1'); re-export the bundle"),
        ({**data, "format_version": True}, "no bundle format version (format_version is True); re-export the bundle"),
        ({**data, "format": "other"}, "unknown format 'other'"),
        ([1], "unknown format None"),
        ({k: v for k, v in data.items() if k != "variants"}, "manifest lacks 'variants'"),
        (
            {**data, "variants": {"fp32": "model.onnx"}},
            "malformed manifest (variant 'fp32' needs an object with a 'file')",
        ),
        ({**data, "files": {"x": "y"}}, "malformed manifest (a file entry must be an object, got str)"),
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


def test_bench_helpers(bundle: Path) -> None:
    feeds = bench.synthetic_feeds(2, 5, Tokenizer(BERT_TOKENIZER, 64), seed=1)
    ids = feeds["input_ids"]
    # the bundle's own framing ([CLS] 101 ... [SEP] 102 for bert-base-chinese) and vocabulary (21128)
    assert ids.shape == (2, 5) and ids.dtype == np.int64 and (ids[:, 0] == 101).all() and (ids[:, -1] == 102).all()
    assert ((ids[:, 1:-1] >= 21128 // 20) & (ids[:, 1:-1] < 21128)).all() and (feeds["attention_mask"] == 1).all()
    assert (feeds["token_type_ids"] == 0).all()
    stats = bench.percentiles([0.001, 0.002, 0.003, 0.004, 0.010])
    assert stats == pytest.approx({"p50_ms": 3.0, "p90_ms": 7.6, "p99_ms": 9.76, "runs": 5})
    calls: list[str] = []
    times = bench.rotated_blocks({"a": lambda f: calls.append("a"), "b": lambda f: calls.append("b")}, feeds, 3, 1, 0)
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    config = bench.BenchConfig(seq_lengths=(8, 64), runs=2, warmup=1, provider="cpu", threads=1, pause_s=0)
    result = bench.run_bench(str(bundle), config, texts=[SHORT, LONG])
    assert result["random_weights"] is True and result["batch_size"] == 1 and list(result["variants"]) == ["fp32"]
    fp32 = result["variants"]["fp32"]  # fp16 is in the bundle but does not run on CPU
    assert fp32["provider"] == CPU and fp32["file_bytes"] == (bundle / "model.onnx").stat().st_size
    assert list(fp32["latency"]) == ["8", "16"] and fp32["latency"]["16"]["runs"] == 2
    assert fp32["throughput"]["texts"] == 2 and fp32["throughput"]["batch_size"] == 32


def test_bench_feeds_follow_another_tokenizer(word_tokenizer: Path) -> None:
    """A bundle whose tokenizer is not bert-base-chinese's: ids stay inside its vocabulary, no [CLS]/[SEP] ids."""
    ids = bench.synthetic_feeds(3, 6, Tokenizer(word_tokenizer, 8), seed=0)["input_ids"]
    assert ids.max() < 8 and not np.isin(ids, [101, 102]).any()
