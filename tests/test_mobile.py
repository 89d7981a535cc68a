"""ORT format for onnxruntime mobile: the README's conversion command turns the int8 graph into a `.ort` file
that gives the same outputs as the `.onnx` it came from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_sent.contract import OUTPUT_NAMES, TOKENIZER, read_manifest
from edge_sent.export.prepare import texts_from
from edge_sent.tokenization import Tokenizer
from tests.conftest import DATA

VARIANT_FILE = "model_quantized.onnx"  # int8: the smallest graph the CPU runs, what a phone wants


def convert(model: Path, out: Path) -> Path:
    """The README's command (mobile: ARM target, optimizations fixed at conversion)."""
    command = ["-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(model), "--output_dir", str(out)]
    proc = subprocess.run(
        [sys.executable, *command, "--optimization_style", "Fixed", "--target_platform", "arm"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / model.with_suffix(".ort").name


def outputs(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(list(OUTPUT_NAMES), feeds)


def test_ort_format_gives_the_same_outputs(tiny_bundle, tmp_path):
    manifest = read_manifest(tiny_bundle)
    converted = convert(tiny_bundle / VARIANT_FILE, tmp_path)
    assert converted.read_bytes()[4:8] == b"ORTM"  # the ORT flatbuffer, not a copy of the ONNX protobuf
    assert "QAttention" in (tmp_path / "model_quantized.required_operators.config").read_text()
    tokenizer = Tokenizer(tiny_bundle / TOKENIZER, manifest.max_length)
    texts = texts_from(DATA / "test.tsv", "text_a", 64)
    batch = tokenizer.pad(tokenizer.encode(texts), np.arange(len(texts)))
    feeds = batch.feeds()
    logits, probs = outputs(tiny_bundle / VARIANT_FILE, feeds)
    ort_logits, ort_probs = outputs(converted, feeds)
    assert np.ptp(probs[:, 1]) > 0.05  # the texts get different answers
    np.testing.assert_array_equal(ort_probs.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(ort_logits, logits, atol=1e-5)
    np.testing.assert_allclose(ort_probs, probs, atol=1e-6)
