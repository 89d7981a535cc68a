"""The device matrix: the same bundle's answers on x86 (native, and without AVX-512 under qemu), aarch64 (a Debian
arm64 root under qemu-user), Node.js and the browser; its record in the manifest and `info`'s flag.

The emulated run needs root, qemu-user-static and `scripts/arm64-root.sh` (CI builds it); outside CI a missing
piece skips it, in CI (CI set) it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli
from tests.test_js import require

sys.path.insert(0, str(ROOT / "benchmarks"))
import devices

ARM64_ROOT = Path(os.environ.get("EDGE_SENT_ARM64_ROOT", ROOT / ".emu" / "arm64"))


def test_compare_counts_labels_and_probability_moves() -> None:
    ref = {"probabilities": [[0.9, 0.1], [0.4, 0.6], [0.51, 0.49]]}
    other = {"probabilities": [[0.8, 0.2], [0.4, 0.6], [0.49, 0.51]]}
    row = devices.compare(ref, other, ["neg", "pos"])
    assert row["labels_identical"] == pytest.approx(2 / 3) and row["max_abs_dprob"] == pytest.approx(0.1)
    page = {"labels": ["neg", "pos", "neg"], "label_probability": [0.9, 0.61, 0.51]}  # the browser's shape
    row = devices.compare(ref, page, ["neg", "pos"])
    assert row["labels_identical"] == 1.0 and row["max_abs_dprob"] == pytest.approx(0.01)


def test_the_record_in_the_manifest_flags_a_moving_variant_in_info(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    report = {
        "reference": "x86-64 AVX-512 VNNI",
        "n_texts": 200,
        "rows": [
            {"graph": "fp32", "platform": "aarch64", "labels_identical": 1.0, "max_abs_dprob": 2e-5, "n_texts": 200},
            {"graph": "int8", "platform": "aarch64", "labels_identical": 0.975, "max_abs_dprob": 0.75, "n_texts": 200},
            {"graph": "ort:model_quantized.ort", "platform": "aarch64", "labels_identical": 0.9, "max_abs_dprob": 1},
        ],
    }
    devices.record_in_manifest(bundle, report)
    assert run_cli("verify", str(bundle)).returncode == 0  # the files still match: only the record was added
    info = json.loads(run_cli("info", str(bundle), "--json").stdout)
    assert set(info["platforms"]["variants"]) == {"fp32", "int8"}  # graphs that are not variants stay out
    assert list(info["moves_across_platforms"]) == ["int8"]
    assert "aarch64 97.5% of labels identical" in info["moves_across_platforms"]["int8"]
    text = run_cli("info", str(bundle)).stdout
    assert "variant int8's answers move across platforms" in " ".join(text.split())


def test_answers_module_runs_every_graph_and_reports_failures(tiny_bundle: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(devices.read_texts(12)) + "\n", encoding="utf-8")
    ort_dir = tmp_path / "ort"
    ort_dir.mkdir()
    (ort_dir / "broken.ort").write_bytes(b"not an ort file")
    out = tmp_path / "answers.json"
    command = [sys.executable, str(devices.ANSWERS), str(tiny_bundle), str(texts), str(out)]
    proc = subprocess.run([*command, "--ort", str(ort_dir), "--batch-size", "4"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert set(record["answers"]) == {"fp32", "int8", "int8-block", "int8-static", "int4"}  # fp16: CUDA only
    assert "ort:broken.ort" in record["errors"]
    fp32 = np.asarray(record["answers"]["fp32"]["probabilities"])
    assert fp32.shape == (12, 2) and np.ptp(fp32[:, 1]) > 0.01


@pytest.mark.slow
def test_device_matrix_on_emulated_cpus_node_and_the_browser(tmp_path: Path) -> None:
    """Every platform runs; fp32 (and its string-in graph) gives the same labels everywhere; the table is written."""
    require(shutil.which("qemu-x86_64-static") is not None, "qemu-user-static is not installed")
    require((ARM64_ROOT / ".emu-complete").is_file(), f"no arm64 root at {ARM64_ROOT} (scripts/arm64-root.sh)")
    from tests.conftest import train_on_chnsenticorp

    run = tmp_path / "run"
    train_on_chnsenticorp(run, "random:tiny", limit=400, max_length=64)
    bundle = tmp_path / "bundle"
    export = ["export", str(run), "--out", str(bundle), "--quantize", "int8,int8-block,int8-static,int4"]
    proc = run_cli(*export, "--with-tokenizer", "--tokenizer-variants", "fp32,int8")
    assert proc.returncode == 0, proc.stderr
    out = Path(os.environ.get("EDGE_SENT_DEVICE_TABLE_OUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    args = [str(bundle), "--n", "120", "--arm64-root", str(ARM64_ROOT), "--record"]
    args += ["--platforms", "haswell,arm64,node,browser"]  # CI time: the Cortex-A72 column is in DEVICES.md
    assert devices.main([*args, "--json", str(out / "devices.json"), "--md", str(out / "DEVICES.md")]) == 0
    report = json.loads((out / "devices.json").read_text())
    platforms = set(report["platforms"])
    expected = {"aarch64", "Node.js", "browser"}
    if report["reference"].startswith("x86-64 AVX-512"):
        expected.add("x86-64 AVX2 (Haswell)")
    assert expected <= platforms, report["not_run"]
    rows = {(r["graph"], r["platform"]): r for r in report["rows"]}
    assert report["reference_errors"] == {}
    for platform in platforms - {report["reference"]}:
        fp32 = rows[("fp32", platform)]
        assert fp32["labels_identical"] == 1.0 and fp32["max_abs_dprob"] < 1e-3, (platform, fp32)
    for graph in ("strings:fp32", "strings:int8", "ort:model_quantized.ort", "int8", "int8-block", "int4"):
        assert "labels_identical" in rows[(graph, "aarch64")], rows.get((graph, "aarch64"))
    assert rows[("strings:fp32", "aarch64")]["labels_identical"] == 1.0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["platforms"]["variants"]["fp32"]) == platforms - {report["reference"]}


def test_reduce_range_builds_7_bit_int8_weights_and_says_so(tiny_run: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from edge_sent.export.run import ExportConfig, export_bundle

    def weight_range(bundle: Path, file: str) -> int:
        model = onnx.load(str(bundle / file))
        ints = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        return max(int(np.abs(w.astype(np.int32)).max()) for w in ints if w.size > 1000)

    built = {}
    for reduce_range in (False, True):
        out = tmp_path / f"rr-{reduce_range}"
        config = ExportConfig(run_dir=tiny_run, out=out, quantize=("int8",), reduce_range=reduce_range, quiet=True)
        manifest = export_bundle(config)
        assert manifest["variants"]["int8"]["reduce_range"] is reduce_range
        built[reduce_range] = weight_range(out, "model_quantized.onnx")
    assert built[False] > 64 and built[True] <= 64  # 7-bit weights: |w| ≤ 64
