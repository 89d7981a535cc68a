"""`edge-sent eval` scores labels the way the export did: numeric labels that do not start at 0, display
names (`--label-names`) over numeric data labels, and labels given by name or by position."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_sent.export.run import ExportConfig, export_bundle
from edge_sent.train.run import TrainConfig, train
from tests.conftest import DATA, assert_user_error, run_cli


def _relabel(source: Path, dest: Path, mapping: dict[str, str], rows: int) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines()
    out = [lines[0]]
    for line in lines[1 : rows + 1]:
        label, text = line.split("\t", 1)
        out.append(f"{mapping[label]}\t{text}")
    dest.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def one_two(tmp_path_factory) -> dict[str, Path]:
    """random:tiny trained on ChnSentiCorp relabelled 0 → 1, 1 → 2; two bundles: raw labels and display names."""
    tmp = tmp_path_factory.mktemp("labels12")
    mapping = {"0": "1", "1": "2"}
    files = {
        "train": _relabel(DATA / "train.tsv", tmp / "train.tsv", mapping, 400),
        "test": _relabel(DATA / "test.tsv", tmp / "test.tsv", mapping, 200),
    }
    for name, label_names in (("raw", None), ("named", ("negative", "positive"))):
        run = tmp / f"run-{name}"
        train(TrainConfig(train=files["train"], out=run, encoder="random:tiny", max_length=64, label_names=label_names))
        export_bundle(ExportConfig(run_dir=run, out=tmp / name, quantize=(), eval=files["test"], quiet=True))
        files[name] = tmp / name
    # a bundle from before `data_labels` was recorded: eval must still map "1" and "2" by name
    shutil.copytree(tmp / "raw", tmp / "old")
    manifest = json.loads((tmp / "old" / "manifest.json").read_text())
    del manifest["data_labels"]
    (tmp / "old" / "manifest.json").write_text(json.dumps(manifest))
    files["old"] = tmp / "old"
    return files


def _eval(bundle: Path, data: Path) -> dict:
    proc = run_cli("eval", str(bundle), "--data", str(data), "--variant", "fp32", "--provider", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("bundle", ["raw", "named", "old"])
def test_eval_matches_the_export_on_labels_1_and_2(one_two, bundle):
    manifest = json.loads((one_two[bundle] / "manifest.json").read_text())
    assert manifest.get("data_labels", ["1", "2"]) == ["1", "2"]
    assert manifest["labels"] == (["1", "2"] if bundle != "named" else ["negative", "positive"])
    report = _eval(one_two[bundle], one_two["test"])
    assert report["n"] == 200
    # both true classes are present (rows of the confusion matrix): "1" and "2" did not collapse onto one id
    assert all(sum(row) > 0 for row in report["confusion"]), report["confusion"]
    assert report["accuracy"] == pytest.approx(manifest["variants"]["fp32"]["eval_accuracy"], abs=1e-9)


def test_eval_accepts_display_names_and_refuses_unknown_labels(one_two, tmp_path):
    manifest = json.loads((one_two["named"] / "manifest.json").read_text())
    expected = manifest["variants"]["fp32"]["eval_accuracy"]
    by_name = _relabel(one_two["test"], tmp_path / "names.tsv", {"1": "negative", "2": "positive"}, 200)
    assert _eval(one_two["named"], by_name)["accuracy"] == pytest.approx(expected, abs=1e-9)
    unknown = _relabel(one_two["test"], tmp_path / "unknown.tsv", {"1": "1", "2": "7"}, 20)
    proc = run_cli("eval", str(one_two["raw"]), "--data", str(unknown), "--variant", "fp32")
    assert_user_error(proc, "label '7' does not occur in the bundle's labels")
