"""The contenders of the side-by-side benchmark. Each exposes `run(feeds)` on ready int64 inputs (latency
grid: identical tokens for all) and `classify(texts)` with its own padding habit (real corpus)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

from edge_sent.contract import TOKENIZER
from edge_sent.rundir import RunDir, read_run_meta
from edge_sent.runtime import Classifier
from edge_sent.tokenization import Tokenizer

# torch, transformers and optimum are imported inside the contenders that need them, so the torch-free
# ones (Optimum's saved graph, edge-sent on any provider) also run in the OpenVINO venv
# (benchmarks/openvino_provider.py)


def _pad_in_order(tok: Tokenizer, texts: list[str], batch: int, fixed: int | None):
    """Batches in input order, padded to the longest text of the batch or to a fixed length."""
    for b in tok.batches(tok.encode(texts), batch, order=np.arange(len(texts))):
        if fixed is not None and b.input_ids.shape[1] < fixed:
            extra = fixed - b.input_ids.shape[1]
            b = type(b)(
                *(np.pad(a, ((0, 0), (0, extra))) for a in (b.input_ids, b.attention_mask, b.token_type_ids)),
                b.index,
                b.truncated,
            )
        yield b


def _quantize_int8(exported, work: Path) -> tuple[str, str]:
    """Optimum's documented recipe on an exported ORTModel: O2 optimization, then avx512_vnni dynamic int8
    (without O2 when that fails in shape inference). Saves to work/q; returns the graph's file name, the recipe."""
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    exported.save_pretrained(work / "onnx")
    qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    recipe = "export + O2 + avx512_vnni dynamic int8"
    try:
        optimizer = ORTOptimizer.from_pretrained(exported)
        optimizer.optimize(save_dir=work / "o2", optimization_config=AutoOptimizationConfig.O2())
        quantizer = ORTQuantizer.from_pretrained(work / "o2", file_name="model_optimized.onnx")
        quantizer.quantize(save_dir=work / "q", quantization_config=qconfig)
    except Exception as exc:  # the documented O2-then-quantize recipe can fail in shape inference
        recipe = f"export + avx512_vnni dynamic int8 (O2 then quantize failed: {type(exc).__name__})"
        ORTQuantizer.from_pretrained(work / "onnx").quantize(save_dir=work / "q", quantization_config=qconfig)
    return next((work / "q").glob("*quantized.onnx")).name, recipe


def optimum_classifier_dir(run_dir: Path, workdir: Path) -> tuple[Path, str]:
    """The run as a Hugging Face `BertForSequenceClassification` (the run's encoder and head), exported by
    Optimum as `ORTModelForSequenceClassification` and quantized int8 by `_quantize_int8`: a directory that
    `ORTModelForSequenceClassification.from_pretrained` and a transformers pipeline (or infinity) load as is.
    The class adds BERT's pooler before the head; it is set to identity weights, so the scores are
    softmax(head(tanh(CLS))) instead of the run's softmax(head(CLS)): same graph cost, slightly other scores.
    Returns the directory (graph + config + tokenizer) and the recipe."""
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from edge_sent.train.encoders import load_encoder

    meta = read_run_meta(run_dir)
    encoder = load_encoder(meta.encoder.spec)
    weights = load_file(str(RunDir(run_dir).head_weights))
    labels = dict(enumerate(meta.labels))
    config = BertConfig(
        **{**encoder.model.config.to_dict(), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    )
    model = BertForSequenceClassification(config).eval()
    missing = model.bert.load_state_dict(encoder.model.state_dict(), strict=False).missing_keys
    assert all(key.startswith("pooler.") for key in missing), missing
    with torch.no_grad():
        model.bert.pooler.dense.weight.copy_(torch.eye(config.hidden_size))
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.copy_(torch.from_numpy(weights["weight"]))
        model.classifier.bias.copy_(torch.from_numpy(weights["bias"]))
    hf_dir = workdir / "hf"
    model.save_pretrained(hf_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(encoder.tokenizer_file),
        model_max_length=meta.max_length,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(hf_dir)
    exported = ORTModelForSequenceClassification.from_pretrained(hf_dir, export=True)
    qfile, recipe = _quantize_int8(exported, workdir)
    target = workdir / "q"
    tokenizer.save_pretrained(target)
    config.save_pretrained(target)
    return target / qfile, recipe


class TorchEager:
    """(a)/(b) the tutorial recipe: PyTorch eager fp32, frozen encoder + head under no_grad."""

    def __init__(self, run_dir: Path, threads: int, fixed_length: int | None, name: str):
        import torch

        from edge_sent.train.encoders import load_encoder
        from edge_sent.train.model import SentimentModel

        meta = read_run_meta(run_dir)
        encoder = load_encoder(meta.encoder.spec)
        weights = load_file(str(RunDir(run_dir).head_weights))
        head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        head.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        self.model = SentimentModel(encoder.model, meta.pooling, head).eval()
        self.tok = Tokenizer(encoder.tokenizer_file, meta.max_length)
        self.threads, self.fixed, self.name = threads, fixed_length, name

    def run(self, feeds):
        import torch

        torch.set_num_threads(self.threads)
        with torch.no_grad():
            return self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[1].numpy()

    def classify(self, texts, batch=32):
        return np.concatenate([self.run(b.feeds()) for b in _pad_in_order(self.tok, texts, batch, self.fixed)])


class _OptimumHead:
    """Optimum's feature-extraction output -> the run's head on its [CLS] row, batches padded in input order."""

    def __init__(self, run_dir: Path, tokenizer_file: Path, session) -> None:
        head = load_file(str(RunDir(run_dir).head_weights))
        self.w, self.b = head["weight"].T, head["bias"]
        self.tok = Tokenizer(tokenizer_file, read_run_meta(run_dir).max_length)
        self.session = session
        self.inputs = {i.name for i in session.get_inputs()}
        self.name = "(c) Optimum int8"

    def run(self, feeds):
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
        logits = hidden[:, 0] @ self.w + self.b
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def classify(self, texts, batch=32):
        return np.concatenate([self.run(b.feeds()) for b in _pad_in_order(self.tok, texts, batch, None)])


class OptimumInt8(_OptimumHead):
    """(c) Optimum as documented: feature-extraction export, O2 optimization, avx512_vnni dynamic int8;
    the head applied on the [CLS] row of its output; batches in input order, padded to the longest."""

    def __init__(self, run_dir: Path, threads: int, workdir: Path | None = None):
        from optimum.onnxruntime import ORTModelForFeatureExtraction

        from edge_sent.train.encoders import load_encoder

        encoder = load_encoder(read_run_meta(run_dir).encoder.spec)
        work = Path(workdir or tempfile.mkdtemp(prefix="optimum-"))
        hf_dir = self.hf_dir = work / "hf"
        encoder.model.save_pretrained(hf_dir)
        (hf_dir / TOKENIZER).write_bytes(encoder.tokenizer_file.read_bytes())
        exported = ORTModelForFeatureExtraction.from_pretrained(hf_dir, export=True)
        qfile, self.recipe = _quantize_int8(exported, work)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.model = ORTModelForFeatureExtraction.from_pretrained(work / "q", file_name=qfile, session_options=options)
        self.session = self.model.model if hasattr(self.model, "model") else self.model.session
        self.file_bytes = (work / "q" / qfile).stat().st_size
        self.graph = work / "q" / qfile
        super().__init__(run_dir, encoder.tokenizer_file, self.session)


class OptimumGraph(_OptimumHead):
    """(c) from a graph OptimumInt8 saved, in a plain session: runs in a venv without optimum or torch."""

    def __init__(self, graph: Path, run_dir: Path, tokenizer_file: Path, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        super().__init__(run_dir, tokenizer_file, session)
        self.file_bytes = graph.stat().st_size


class EdgeSent:
    """(d) edge-sent: a bundle variant through the runtime (length-sorted batches)."""

    def __init__(self, bundle: Path, variant: str, threads: int, provider: str = "cpu", precision: str = "auto"):
        self.clf = Classifier.load(
            bundle, variant=variant, provider=provider, threads=threads, strict=True, precision=precision
        )
        self.name = f"edge-sent {variant}" + ("" if provider == "cpu" else f" ({provider} {self.clf.precision})")
        self.file_bytes = self.clf.manifest.files[self.clf.manifest.variant_file(variant)].bytes

    def run(self, feeds):
        return self.clf.run_feeds(feeds)

    def classify(self, texts, batch=32):
        preds = self.clf.predict(texts, batch_size=batch)
        return np.asarray([[p.probabilities[lab] for lab in self.clf.labels] for p in preds])
