"""The bundle in JavaScript: transformers.js in Node.js (onnxruntime-node) and in headless Chromium
(onnxruntime-web, the page in examples/web) gives Python's labels on 200 ChnSentiCorp test texts.

Needs node, js/node_modules (`cd js && ONNXRUNTIME_NODE_INSTALL=skip PUPPETEER_SKIP_DOWNLOAD=1 npm ci`) and,
for the browser, Debian's chromium. Outside CI a missing tool skips these tests; in CI (CI set) it fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, ROOT, train_on_chnsenticorp

JS = ROOT / "js"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAX_LENGTH = 64  # below the 512 positions, so a tokenizer that does not truncate there gives other answers
N_TEXTS = 200
FP32_TOLERANCE = 1e-4


def require(present: bool, reason: str) -> None:
    """Skip when a tool is absent, except in CI, where these tests must run: fail there instead."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: these tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    require(NODE is not None, "node is not installed (apt-get install nodejs)")
    require(
        (JS / "node_modules" / "@huggingface" / "transformers").is_dir(),
        "js/node_modules is missing (cd js && ONNXRUNTIME_NODE_INSTALL=skip PUPPETEER_SKIP_DOWNLOAD=1 npm ci)",
    )
    assert NODE is not None
    return NODE


@pytest.fixture(scope="module")
def chromium(node: str) -> str:
    require(CHROMIUM is not None, "chromium is not installed (apt-get install chromium)")
    assert CHROMIUM is not None
    return CHROMIUM


@pytest.fixture(scope="module")
def js_bundle(tmp_path_factory) -> Path:
    """random:tiny at max length 64 with display names, every variant and the portable graph."""
    from edge_sent.export.run import ExportConfig, export_bundle

    base = tmp_path_factory.mktemp("js")
    train_on_chnsenticorp(
        base / "run", "random:tiny", limit=800, max_length=MAX_LENGTH, label_names=("negative", "positive")
    )
    quantize = ("int8", "int8-static", "fp16", "int4", "int8-block")
    export_bundle(ExportConfig(run_dir=base / "run", out=base / "bundle", quantize=quantize, portable=True, quiet=True))
    return base / "bundle"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from edge_sent.export.prepare import texts_from

    return texts_from(DATA / "test.tsv", "text_a", N_TEXTS)


def python_answers(bundle: Path, variant: str, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Classifier's labels and probabilities, one text at a time (as the JavaScript side runs them); for a
    file name, that graph in a plain onnxruntime session with the bundle's tokenizer."""
    from edge_sent.runtime import Classifier

    if variant.endswith(".onnx"):
        return graph_answers(bundle, variant, texts)
    clf = Classifier.load(bundle, variant=variant, provider="cpu")
    predictions = clf.predict(texts, batch_size=1)
    return [p.label for p in predictions], np.array(
        [[p.probabilities[label] for label in clf.labels] for p in predictions]
    )


def graph_answers(bundle: Path, file: str, texts: list[str]) -> tuple[list[str], np.ndarray]:
    import onnxruntime as ort

    from edge_sent.contract import read_manifest
    from edge_sent.tokenization import Tokenizer

    manifest = read_manifest(bundle)
    tokenizer = Tokenizer(bundle / "tokenizer.json", manifest.max_length)
    session = ort.InferenceSession(str(bundle / file), providers=["CPUExecutionProvider"])
    encoded = tokenizer.encode(texts)
    probs = np.concatenate(
        [session.run(["probabilities"], tokenizer.pad(encoded, np.array([i])).feeds())[0] for i in range(len(texts))]
    )
    return [manifest.labels[i] for i in probs.argmax(axis=1)], probs


def node_answers(node: str, bundle: Path, variant: str, texts: list[str]) -> dict:
    proc = subprocess.run(
        [node, str(JS / "classify.mjs"), str(bundle), variant],
        input="\n".join(texts),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bundle_carries_what_transformers_js_reads(js_bundle):
    """tokenizer_config.json (without it transformers.js fails: `this.tokenizer is not a function`), with the
    bundle's max length; config.json's labels are the display names."""
    tokenizer_config = json.loads((js_bundle / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == MAX_LENGTH
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer"
    config = json.loads((js_bundle / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    manifest = json.loads((js_bundle / "manifest.json").read_text())
    assert "tokenizer_config.json" in manifest["files"]


def _truncated(bundle: Path, texts: list[str]) -> int:
    from edge_sent.runtime import Classifier

    return sum(p.truncated for p in Classifier.load(bundle, variant="fp32", provider="cpu").predict(texts))


# variant in Node.js -> the Python variant it must agree with, and the probability tolerance
NODE_CASES = {
    "fp32": ("fp32", FP32_TOLERANCE),
    "portable": ("fp32", FP32_TOLERANCE),  # the standard-ops graph of the same weights
    "int8": ("int8", 1e-4),
    "int8-static": ("int8-static", 1e-4),
    "int4": ("int4", 1e-4),
    "int8-block": ("int8-block", 1e-4),
    # Classifier refuses fp16 on CPU (slower than fp32), but onnxruntime's CPU provider runs the graph
    "fp16": ("model_fp16.onnx", 1e-4),
}


@pytest.mark.parametrize("variant", list(NODE_CASES))
def test_node_gives_pythons_labels(node, js_bundle, texts, variant):
    reference, tolerance = NODE_CASES[variant]
    labels, probs = python_answers(js_bundle, reference, texts)
    assert np.ptp(probs[:, 1]) > 0.05 and _truncated(js_bundle, texts) > 20  # answers differ; truncation is exercised
    got = node_answers(node, js_bundle, variant, texts)
    assert got["labels"] == ["negative", "positive"]
    assert [p["label"] for p in got["predictions"]] == labels
    dprob = np.abs(np.array([p["probabilities"] for p in got["predictions"]]) - probs).max()
    assert dprob <= tolerance, f"{variant}: max |dprob| {dprob:.2e} vs Python's {reference}"


def test_node_bad_bundle_is_a_one_line_error(node, tmp_path):
    proc = subprocess.run([node, str(JS / "classify.mjs"), str(tmp_path)], input="x", capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "not a bundle" in proc.stderr


class Server:
    """examples/web/serve.py on 127.0.0.1, a free port; always stopped."""

    def __init__(self, bundle: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "web" / "serve.py"), str(bundle), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if match is None:
            self.stop()
            raise AssertionError(
                f"the server did not start: {line} {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        self.url = match.group(0)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(js_bundle):
    srv = Server(js_bundle)
    try:
        yield srv
    finally:
        srv.stop()


def browser_answers(node: str, chromium: str, url: str, texts: list[str], screenshot: Path | None = None) -> dict:
    args = [node, str(JS / "browser.mjs"), url, chromium] + ([str(screenshot)] if screenshot else [])
    proc = subprocess.run(args, input="\n".join(texts), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


# variant asked of the page -> the graph it must end up with, the Python answers it must agree with, tolerance
BROWSER_CASES = {
    "int8": ("model_quantized.onnx", "int8", 1e-4),
    "fp32": ("model.onnx", "fp32", 1e-4),
    "int8-static": ("model_qdq.onnx", "int8-static", 1e-4),
    "fp16": ("model_fp16.onnx", "model_fp16.onnx", 1e-3),  # WebAssembly's fp16 kernels: 6.5e-5 measured
    "int4": ("model_portable.onnx", "fp32", 1e-4),  # GatherBlockQuantized is not in onnxruntime-web: portable instead
}


@pytest.mark.parametrize("variant", list(BROWSER_CASES))
def test_browser_page_gives_pythons_labels(node, chromium, server, js_bundle, texts, variant, tmp_path):
    model_file, reference, tolerance = BROWSER_CASES[variant]
    labels, probs = python_answers(js_bundle, reference, texts)
    got = browser_answers(node, chromium, f"{server.url}?variant={variant}", texts, tmp_path / "page.png")
    assert got["model_file"] == model_file, got
    assert bool(got["fallback"]) == (variant == "int4"), got["fallback"]
    assert [p["label"] for p in got["predictions"]] == labels
    best = probs.max(axis=1)
    assert np.abs(np.array([p["probability"] for p in got["predictions"]]) - best).max() <= tolerance
    assert got["first_answer_ms"] > 0 and all(p["ms"] > 0 for p in got["predictions"])
    assert (tmp_path / "page.png").stat().st_size > 10_000
