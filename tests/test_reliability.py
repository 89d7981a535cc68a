"""Reliability: concurrent use, a soak run, SIGKILLed exports, tampered and untrusted bundles."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_sent.contract import TMP_PREFIX
from edge_sent.errors import BundleError
from edge_sent.integrity import file_entry, verify_bundle
from edge_sent.runtime import Classifier
from tests.conftest import DATA, ROOT, run_cli


def _mixed_texts(n: int, seed: int) -> list[str]:
    base = [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text().splitlines()[1:]]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base), n)
    return [base[i] * (1 + int(rng.integers(0, 3))) for i in picks]  # lengths from a few to >512 tokens


def test_eight_threads_share_one_classifier(tiny_bundle):
    clf = Classifier.load(tiny_bundle, variant="int8")  # the variant most sensitive to batch composition
    inputs = [_mixed_texts(2000, seed) for seed in range(8)]
    expected = [clf.predict(texts, batch_size=32) for texts in inputs]
    results: list = [None] * 8
    errors: list = []

    def work(i: int) -> None:
        try:
            results[i] = clf.predict(inputs[i], batch_size=32)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, expected, strict=True):
        assert got == want  # labels and probabilities exactly equal (frozen dataclasses compare by value)
    spread = np.std([p.probabilities[clf.labels[1]] for p in expected[0]])
    assert spread > 1e-3  # the outputs differ across texts: equality is not trivially true
    print("concurrency: 8 threads x 2000 texts = 16000 predictions, identical to the sequential run")


SOAK = """
import os, resource, json, sys
from edge_sent.runtime import Classifier
def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6
texts = [l.split('\\t', 1)[1] for l in open(sys.argv[2], encoding='utf-8').read().splitlines()[1:]]
clf = Classifier.load(sys.argv[1])
def stream(n):
    for i in range(n):
        yield texts[i % len(texts)]
for _ in clf.predict_iter(stream(5000)):
    pass
curve = [rss_mb()]
fds = len(os.listdir('/proc/self/fd'))
done = 0
for _ in clf.predict_iter(stream(50000), chunk_size=1000):
    done += 1
    if done % 5000 == 0:
        curve.append(rss_mb())
print(json.dumps({"curve_mb": curve, "fds_before": fds, "fds_after": len(os.listdir('/proc/self/fd')), "n": done}))
"""


@pytest.mark.slow
def test_soak_50000_predictions_memory_flat(tiny_bundle):
    proc = subprocess.run(
        [sys.executable, "-c", SOAK, str(tiny_bundle), str(DATA / "dev.tsv")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    curve = result["curve_mb"]
    print("soak RSS (MB) after warm-up, then every 5,000 predictions:", [round(x, 1) for x in curve])
    assert result["n"] == 50000
    assert max(curve[1:]) <= curve[0] * 1.05
    assert result["fds_after"] <= result["fds_before"]


def _export_proc(run_dir: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_sent",
            "export",
            str(run_dir),
            "--out",
            str(out),
            "--force",
            "--quantize",
            "int8,int8-static,int4",
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _state(out: Path) -> str:
    if not out.exists():
        return "nothing"
    problems = verify_bundle(out)
    assert problems == [], problems
    return "complete bundle"


@pytest.mark.parametrize(
    "moment",
    [
        "start",
        "traced",
        "variant:int8",
        "variant:int8-static",
        "variant:int4",
        "manifest",
        "before-rename",
        "between-renames",
        "file:model_quantized.onnx",
        "file:model_q4.onnx",
    ],
)
def test_sigkilled_export_leaves_nothing_or_a_complete_bundle(tiny_run, tmp_path, moment):
    out = tmp_path / "bundle"
    if moment == "between-renames":  # killing while replacing an existing bundle
        assert (
            subprocess.run(
                [sys.executable, "-m", "edge_sent", "export", str(tiny_run), "--out", str(out), "--quantize", "int8"],
                capture_output=True,
            ).returncode
            == 0
        )
    if moment.startswith("file:"):
        # a real SIGKILL from outside, as soon as the variant file starts to appear (mid-quantization)
        proc = _export_proc(tiny_run, out)
        target = moment[5:]
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if any(p.name == target for d in tmp_path.glob(f"{TMP_PREFIX}*") for p in d.iterdir()):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
    else:
        proc = _export_proc(tiny_run, out, {"EDGE_SENT_TEST_KILL_AT": moment})
        proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"export was not killed at {moment}"
    left = _state(out)  # a bundle at the target must verify
    print(f"killed at {moment}: left {left}")
    assert left == "nothing"  # every kill here lands before the final rename
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_sent",
            "export",
            str(tiny_run),
            "--out",
            str(out),
            "--force",
            "--quantize",
            "int8",
        ],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert verify_bundle(out) == []
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*")), "stale temporary directories left behind"


def _rewrite_manifest(bundle: Path, name: str) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = file_entry(bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _external(bundle: Path, location: str, list_it: bool) -> None:
    import onnx

    model = onnx.load(str(bundle / "model.onnx"))
    onnx.save(
        model,
        str(bundle / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    if location != "weights.bin":  # point the references elsewhere
        model = onnx.load(str(bundle / "model.onnx"), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(bundle / "model.onnx"))
    _rewrite_manifest(bundle, "model.onnx")
    if list_it:
        _rewrite_manifest(bundle, "weights.bin")


def test_external_data_must_stay_inside_and_be_listed(tiny_bundle, tmp_path):
    ok = tmp_path / "ok"
    shutil.copytree(tiny_bundle, ok)
    _external(ok, "weights.bin", list_it=True)
    assert Classifier.load(ok, variant="fp32").predict(["好"])  # listed, inside: accepted
    (ok / "weights.bin").write_bytes((ok / "weights.bin").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BundleError, match=r"weights\.bin: altered"):
        Classifier.load(ok, variant="fp32")
    unlisted = tmp_path / "unlisted"
    shutil.copytree(tiny_bundle, unlisted)
    _external(unlisted, "weights.bin", list_it=False)
    with pytest.raises(BundleError, match="that the manifest does not list"):
        Classifier.load(unlisted, variant="fp32")
    proc = run_cli("verify", str(unlisted))
    assert proc.returncode == 1 and "weights.bin' that the manifest does not list" in proc.stderr
    traversal = tmp_path / "traversal"
    shutil.copytree(tiny_bundle, traversal)
    _external(traversal, "../secret.bin", list_it=False)
    with pytest.raises(BundleError, match="outside the bundle"):
        Classifier.load(traversal, variant="fp32")
    proc = run_cli("predict", str(traversal), "好", "--variant", "fp32")
    assert proc.returncode == 2 and "outside the bundle" in proc.stderr


def test_no_pickle_anywhere():
    """Weights are safetensors/ONNX/npy; nothing deserialises pickles."""
    offenders = []
    for folder in ("edge_sent", "train", "export", "runtime", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if (
                "import pickle" in text
                or "allow_pickle=True" in text
                or ("torch.load(" in text and "weights_only=True" not in text)
            ):
                offenders.append(str(path))
    assert offenders == []
