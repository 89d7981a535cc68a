"""Calibrated probabilities: the temperature fit, ECE, and the temperature folded into every exported variant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_sent import calibration, calibration_choice
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


def _drawn(n: int, seed: int, scale=(1.0, 1.0), bias=(0.0, 0.0), outliers: float = 0.0):
    """Labels drawn from softmax(z), observed as z × scale + bias; `outliers`: that share of the texts is made
    confidently wrong (margin 25), as a few mislabelled or odd dev texts would be."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, 2))
    labels = (rng.random(n) < calibration.softmax(z)[:, 1]).astype(np.int64)
    observed = z * np.asarray(scale) + np.asarray(bias)
    odd = rng.choice(n, int(n * outliers), replace=False)
    observed[odd] = 0.0
    observed[odd, 1 - labels[odd]] = 25.0
    return observed, labels


def _held_out_ece(chosen: calibration.LogitMap, logits: np.ndarray, labels: np.ndarray) -> float:
    return calibration.ece(calibration.softmax(chosen.apply(logits)), labels)


def test_the_choice_keeps_t_1_when_the_fitted_temperature_hurts_held_out_texts():
    """A few confidently wrong dev texts dominate the NLL: the temperature fitted on dev (about 9) flattens every
    other answer, so on texts it has not seen the ECE rises. Cross-validation on dev sees that and keeps T = 1."""
    dev, dev_labels = _drawn(300, 1, outliers=0.03)
    test, test_labels = _drawn(5000, 2, outliers=0.03)
    fitted = calibration.LogitMap("temperature", temperature=calibration.fit_temperature(dev, dev_labels))
    assert _held_out_ece(fitted, test, test_labels) > _held_out_ece(calibration.LogitMap(), test, test_labels) + 0.1
    choice = calibration_choice.choose(dev, dev_labels)
    assert choice.chosen.is_identity and choice.chosen.in_graph is None, choice.reason
    assert choice.cross_validation["temperature"]["ece"] > choice.cross_validation["none"]["ece"]
    assert choice.reason.startswith("T = 1 kept"), choice.reason


def test_the_main_jobs_run_keeps_t_1():
    """The main job's head (random weights, 250 dev texts): the temperature fitted on dev, T = 0.833, raises the
    test ECE 0.059 -> 0.089. On held-out dev folds it lowers the ECE but raises the NLL: the choice keeps T = 1."""
    data = json.loads((Path(__file__).parent / "data" / "main_job_logits.json").read_text(encoding="utf-8"))
    dev, dev_labels = np.array(data["dev"]["logits"]), np.array(data["dev"]["labels"])
    test, test_labels = np.array(data["test"]["logits"]), np.array(data["test"]["labels"])
    fitted = calibration.LogitMap("temperature", temperature=calibration.fit_temperature(dev, dev_labels))
    assert fitted.temperature == pytest.approx(0.833, abs=0.002)
    assert _held_out_ece(fitted, test, test_labels) > _held_out_ece(calibration.LogitMap(), test, test_labels) + 0.02
    choice = calibration_choice.choose(dev, dev_labels)
    assert choice.chosen.is_identity, choice.reason
    scores = choice.cross_validation
    assert scores["temperature"]["ece"] < scores["none"]["ece"] and scores["temperature"]["nll"] > scores["none"]["nll"]


@pytest.mark.parametrize(
    ("scale", "bias", "method"), [((3.0, 3.0), (0.0, 0.0), "temperature"), ((1.0, 1.0), (2.0, 0.0), "vector")]
)
def test_the_choice_takes_the_map_that_lowers_the_held_out_ece(scale, bias, method):
    """Over-confident logits: one temperature fixes them, and vector scaling does no better. Logits shifted towards
    one label (a bias, as a head trained on skewed data has): no temperature undoes a shift, vector scaling does."""
    dev, dev_labels = _drawn(1200, 1, scale, bias)
    test, test_labels = _drawn(5000, 2, scale, bias)
    choice = calibration_choice.choose(dev, dev_labels)
    assert choice.chosen.method == method, choice.reason
    held_out = {name: _held_out_ece(m, test, test_labels) for name, m in choice.fitted.items()}
    assert held_out[method] == min(held_out.values()) and held_out[method] < held_out["none"] - 0.05, held_out


def test_a_logit_map_folds_into_a_head_inverts_and_round_trips_through_json():
    rng = np.random.default_rng(0)
    x, weight, bias = rng.normal(size=(20, 8)), rng.normal(size=(3, 8)), rng.normal(size=3)
    for chosen in (
        calibration.LogitMap(),
        calibration.LogitMap("temperature", temperature=2.5),
        calibration.LogitMap("vector", scale=(0.5, 2.0, 1.5), bias=(0.1, -0.3, 0.2)),
    ):
        logits = x @ weight.T + bias
        folded_w, folded_b = chosen.fold(weight, bias)
        assert np.allclose(x @ folded_w.T + folded_b, chosen.apply(logits))
        assert np.allclose(chosen.invert(chosen.apply(logits)), logits)
        assert calibration.LogitMap.from_json(chosen.to_json()) == chosen
    # records written before vector scaling: a temperature, or T = 1.0 when nothing was fitted
    assert calibration.LogitMap.from_json({"method": "temperature", "temperature": 1.0}).is_identity
    assert calibration.LogitMap.from_json({"method": "temperature", "temperature": 1.4}).temperature == 1.4


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
    assert record["fitted_on"] == "dev" and record["bins"] == 15 and record["chosen_because"]
    assert set(record["cross_validation"]) == {"none", "temperature", "vector"}
    # the tests' tiny run asks for a temperature (TrainConfig.calibration); the figures of every map are still there
    assert record["method"] == "temperature" and record["chosen_because"].startswith("temperature: asked for")
    assert record["dev"]["nll_after"] <= record["dev"]["nll_before"]
    meta = json.loads((tiny_run / "head.json").read_text(encoding="utf-8"))
    assert meta["calibration"] == record
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


def _run_calibrated(tiny_run: Path, out: Path, chosen: calibration.LogitMap) -> Path:
    shutil.copytree(tiny_run, out)
    meta = json.loads((out / "head.json").read_text(encoding="utf-8"))
    meta["calibration"] = chosen.to_json() | {"fitted_on": "dev"}
    (out / "head.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def _export(run: Path, out: Path) -> Path:
    from edge_sent.export.run import ExportConfig, export_bundle

    export_bundle(
        ExportConfig(run_dir=run, out=out, quantize=("int8",), verify_size=32, host_check_size=32, quiet=True)
    )
    return out


VECTOR = calibration.LogitMap("vector", scale=(0.4, 1.7), bias=(0.3, -0.2))


def test_the_chosen_map_is_in_every_variants_graph(tiny_run, tmp_path):
    """The temperature divides every variant's logits and never changes a label; vector scaling is Mul + Add in
    the graph: the exported probabilities are numpy's softmax(logits × scale + bias) of the raw graph's logits."""
    from edge_sent.runtime import Classifier

    raw = _export(_run_calibrated(tiny_run, tmp_path / "run1", calibration.LogitMap()), tmp_path / "raw")
    hot = _export(
        _run_calibrated(tiny_run, tmp_path / "run3", calibration.LogitMap("temperature", 3.0)), tmp_path / "hot"
    )
    vec = _export(_run_calibrated(tiny_run, tmp_path / "runv", VECTOR), tmp_path / "vec")
    manifest = json.loads((hot / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["calibration"]["temperature"] == 3.0 and manifest["calibration"]["applied"]
    assert json.loads((raw / "manifest.json").read_text(encoding="utf-8"))["calibration"]["applied"] is None
    assert "scale + bias" in json.loads((vec / "manifest.json").read_text(encoding="utf-8"))["calibration"]["applied"]
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
        vector = Classifier.load(vec, variant=variant, probe=False)
        assert calibration.LogitMap.from_json(vector.manifest.calibration(variant)) == VECTOR
        raw_logits = before.engine.run_texts(texts, 32, outputs=("logits",))["logits"]
        p_vec = np.array([list(p.probabilities.values()) for p in vector.predict(texts)])
        expected = calibration.softmax(VECTOR.apply(raw_logits))
        assert np.abs(p_vec - expected).max() < 1e-4, f"{variant}: the graph's vector scaling differs from numpy's"
