"""Calibrated probabilities: the temperature fit, ECE, and the temperature folded into every exported variant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_sent import calibration
from edge_sent.labeled import DataConfig, load_labeled
from tests.conftest import DATA, run_cli


def _sampled(temperature_of_logits: float, n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z): z is calibrated; z × t is over- (t > 1) or under-confident (t < 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, 2))
    p = calibration.softmax(z)
    labels = (rng.random(n) < p[:, 1]).astype(np.int64)
    return z * temperature_of_logits, labels


@pytest.mark.parametrize("t", [3.0, 0.5])
def test_the_fit_recovers_the_temperature_and_lowers_ece(t):
    logits, labels = _sampled(t)
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(t, rel=0.08)
    before = calibration.ece(calibration.softmax(logits), labels)
    after = calibration.ece(calibration.softmax(logits / fitted), labels)
    assert before > 0.05 and after < 0.02
    assert calibration.nll(logits, labels, fitted) < calibration.nll(logits, labels)


def test_ece_and_the_reliability_bins_by_hand():
    probs = np.array([[0.91, 0.09], [0.19, 0.81], [0.29, 0.71], [0.61, 0.39], [0.90, 0.10]])
    labels = np.array([0, 0, 1, 1, 1])  # right, wrong, right, wrong, wrong
    bins = calibration.reliability(probs, labels)
    assert len(bins) == 15 and sum(b.n for b in bins) == 5
    top = next(b for b in bins if b.n == 2)  # 0.90 and 0.91 share (13/15, 14/15]
    assert top.confidence == pytest.approx(0.905) and top.accuracy == 0.5
    # (2 × |0.5 - 0.905| + |0 - 0.81| + |1 - 0.71| + |0 - 0.61|) / 5
    assert calibration.ece(probs, labels) == pytest.approx((2 * 0.405 + 0.81 + 0.29 + 0.61) / 5)


def test_train_records_the_fit_and_no_calibrate_keeps_the_raw_softmax(tiny_run, tmp_path):
    report = json.loads((tiny_run / "report.json").read_text(encoding="utf-8"))
    record = report["calibration"]
    assert record["fitted_on"] == "dev" and record["bins"] == 15 and record["temperature"] != 1.0
    assert record["dev"]["nll_after"] <= record["dev"]["nll_before"]
    meta = json.loads((tiny_run / "head.json").read_text(encoding="utf-8"))
    assert meta["calibration"]["temperature"] == record["temperature"]
    proc = run_cli(
        "train", "--train", str(DATA / "train.tsv"), "--dev", str(DATA / "dev.tsv"), "--encoder", "random:tiny",
        "--limit", "200", "--no-calibrate", "--out", str(tmp_path / "run"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)["calibration"]
    assert record["temperature"] == 1.0 and record["skipped"] == "--no-calibrate"
    assert record["dev"]["ece_before"] == record["dev"]["ece_after"]


def test_a_temperature_at_its_bound_is_reported(tmp_path):
    """A head at chance on dev wants T -> infinity: the fit stops at the bound and the report says why."""
    from edge_sent.train.run import fit_calibration

    rng = np.random.default_rng(0)
    logits = {"dev": rng.normal(0, 3, (200, 2))}
    record = fit_calibration(logits, {"dev": rng.integers(0, 2, 200)}, calibrate=True)
    assert record["temperature"] == pytest.approx(calibration.T_RANGE[1], rel=1e-3) and "bound" in record["warning"]
    fine, labels = _sampled(2.0)
    assert "warning" not in fit_calibration({"dev": fine}, {"dev": labels}, calibrate=True)


def _run_with_temperature(tiny_run: Path, out: Path, temperature: float) -> Path:
    shutil.copytree(tiny_run, out)
    meta = json.loads((out / "head.json").read_text(encoding="utf-8"))
    meta["calibration"] = {"method": "temperature", "temperature": temperature, "fitted_on": "dev"}
    (out / "head.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def _export(run: Path, out: Path) -> Path:
    from edge_sent.export.run import ExportConfig, export_bundle

    export_bundle(
        ExportConfig(run_dir=run, out=out, quantize=("int8",), verify_size=32, host_check_size=32, quiet=True)
    )
    return out


def test_the_temperature_divides_every_variants_logits_and_never_changes_a_label(tiny_run, tmp_path):
    from edge_sent.runtime import Classifier

    raw = _export(_run_with_temperature(tiny_run, tmp_path / "run1", 1.0), tmp_path / "raw")
    hot = _export(_run_with_temperature(tiny_run, tmp_path / "run3", 3.0), tmp_path / "hot")
    manifest = json.loads((hot / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["calibration"]["temperature"] == 3.0 and manifest["calibration"]["applied"]
    assert json.loads((raw / "manifest.json").read_text(encoding="utf-8"))["calibration"]["applied"] is None
    texts = load_labeled(DATA / "test.tsv", DataConfig()).texts
    for variant in ("fp32", "int8"):
        before = Classifier.load(raw, variant=variant, probe=False)
        after = Classifier.load(hot, variant=variant, probe=False)
        assert after.manifest.temperature(variant) == 3.0 and before.manifest.temperature(variant) == 1.0
        p_raw = np.array([list(p.probabilities.values()) for p in before.predict(texts)])
        p_hot = np.array([list(p.probabilities.values()) for p in after.predict(texts)])
        assert np.ptp(p_raw[:, 1]) > 0.2, "the test texts need answers that differ"
        assert np.abs(p_hot - p_raw).max() > 0.05, f"{variant}: the temperature changed nothing"
        assert (p_hot.argmax(axis=1) == p_raw.argmax(axis=1)).all(), f"{variant}: a label changed"
        if variant == "fp32":  # softmax(z / 3) from the raw graph's own probabilities (log p = z + c)
            expected = calibration.softmax(np.log(p_raw) / 3.0)
            assert np.abs(p_hot - expected).max() < 1e-4
