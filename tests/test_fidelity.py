"""`auto` chooses by recorded fidelity, says why, and its CPU choice answers a text the same in any batch."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from edge_sent.contract import Manifest
from edge_sent.fidelity import auto_choice, below_floor, recorded
from edge_sent.runtime.classifier import Classifier
from edge_sent.variants import VARIANTS

from .conftest import bundle_where_auto_takes_int8, run_cli


def _agreement(value: float) -> dict:
    return {"label_agreement": value, "max_abs_dprob": 0.1, "mean_abs_dprob": 0.01}


def _manifest(**variants: dict) -> Manifest:
    data = {name: {"file": f"{name}.onnx", **record} for name, record in variants.items()}
    return Manifest(root=Path("/b"), data={"variants": data})


def test_auto_takes_the_fastest_variant_at_or_above_the_floor_else_the_float_path() -> None:
    faithful = _manifest(fp32={}, int8={"vs_fp32": _agreement(0.985)})
    unfaithful = _manifest(fp32={}, int8={"vs_fp32": _agreement(0.975)})
    assert auto_choice(faithful, "cpu").variant == "int8"
    assert "98.5% on the verification texts" in auto_choice(faithful, "cpu").reason
    choice = auto_choice(unfaithful, "cpu")
    assert choice.variant == "fp32" and "int8: 97.5% agreement with fp32 < 98%" in choice.reason
    assert auto_choice(unfaithful, "cpu", min_agreement=0.97).variant == "int8"
    # int8 below the floor, int8-block (slower, batch-independent) at it: auto takes int8-block
    both_cpu = _manifest(fp32={}, int8={"vs_fp32": _agreement(0.91)}, **{"int8-block": {"vs_fp32": _agreement(0.98)}})
    assert auto_choice(both_cpu, "cpu").variant == "int8-block"
    assert auto_choice(both_cpu, "cpu", min_agreement=0.99).variant == "fp32"
    # the eval set (more texts) wins over the verification texts
    both = _manifest(fp32={}, int8={"vs_fp32": _agreement(1.0), "eval_vs_fp32": _agreement(0.9)})
    assert auto_choice(both, "cpu").variant == "fp32" and recorded(both.variants["int8"], "cpu").texts == "eval set"
    # nothing measured (an old bundle, or the CPU could not run it): never taken by auto
    assert auto_choice(_manifest(fp32={}, int8={}), "cpu").variant == "fp32"
    assert "int8: no agreement measured on cpu" in auto_choice(_manifest(fp32={}, int8={}), "cpu").reason


def test_float_path_on_cuda_and_openvino_measurements_count_only_on_openvino() -> None:
    m = _manifest(fp32={}, fp16={}, int8={"vs_fp32": _agreement(0.99)})
    assert auto_choice(m, "cuda").variant == "fp16"  # the float path there, measured or not
    assert auto_choice(_manifest(fp32={}), "cuda").variant == "fp32"
    targets = [s.name for s in VARIANTS.values() if s.openvino_precision and s.name != "fp32"]
    name = targets[0]
    cpu_only = _manifest(fp32={}, **{name: {"vs_fp32": _agreement(0.99)}})
    assert recorded(cpu_only.variants[name], "openvino") is None  # the CPU's figure says nothing of OpenVINO
    on_ov = _manifest(fp32={}, **{name: {"vs_fp32": _agreement(0.9), "openvino": {"vs_fp32": _agreement(0.99)}}})
    assert recorded(on_ov.variants[name], "openvino").agreement == 0.99
    assert recorded(on_ov.variants[name], "cpu").agreement == 0.9


def test_export_warns_about_every_variant_below_the_floor() -> None:
    m = _manifest(fp32={}, int8={"vs_fp32": _agreement(0.913)}, int4={"vs_fp32": _agreement(0.99)})
    (warning,) = below_floor(m)
    assert warning.startswith("warning: variant int8 agrees with fp32 on 91.3% of labels (verification texts")
    assert "--variant int8" in warning
    assert below_floor(m, min_agreement=0.9) == []


def test_tiny_bundle_auto_falls_back_to_fp32_and_info_says_why(tiny_bundle: Path) -> None:
    recorded_int8 = Manifest(root=tiny_bundle, data=json.loads((tiny_bundle / "manifest.json").read_text()))
    agreement = recorded(recorded_int8.variants["int8"], "cpu").agreement
    assert agreement < 0.98  # random weights: dynamic int8 is near chance here
    assert recorded_int8.variants["int8"].record["batch_independent"] is False
    assert recorded_int8.variants["fp32"].record["batch_independent"] is True
    assert Classifier.load(tiny_bundle, provider="cpu", probe=False).variant == "fp32"
    assert Classifier.load(tiny_bundle, provider="cpu", min_agreement=0.0, probe=False).variant == "int8"
    proc = run_cli("info", str(tiny_bundle), "--json")
    assert proc.returncode == 0, proc.stderr
    auto = json.loads(proc.stdout)["auto"]
    assert auto["cpu"]["variant"] == "fp32" and f"int8: {agreement:.1%} agreement" in auto["cpu"]["reason"]
    text = run_cli("info", str(tiny_bundle), "--min-agreement", "0").stdout
    assert re.search(r"recorded ranking(?:'s| on cpu:) int8\b", " ".join(text.split())), text
    data = str(Path("data/chnsenticorp/dev.tsv"))
    lowered = run_cli(
        "eval", str(tiny_bundle), "--data", data, "--provider", "cpu", "--min-agreement", "0", "--no-probe", "--json"
    )
    assert lowered.returncode == 0, lowered.stderr
    assert json.loads(lowered.stdout)["variant"] == "int8"


def _batch_spread(clf: Classifier, texts: list[str], long_texts: list[str]) -> float:
    """Largest probability change of a text between running alone, in a batch of similar lengths, and in a
    batch padded to much longer texts."""
    alone = np.array([[clf.predict([t], batch_size=1)[0].probabilities[lab] for lab in clf.labels] for t in texts])
    similar = np.array([[p.probabilities[lab] for lab in clf.labels] for p in clf.predict(texts, batch_size=16)])
    mixed_preds = clf.engine.run_texts(texts + long_texts, 64, order=np.arange(len(texts) + len(long_texts)))
    mixed = mixed_preds["probabilities"][: len(texts)]
    return float(max(np.abs(similar - alone).max(), np.abs(mixed - alone).max()))


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    from edge_sent.readers import read_records

    texts = [r.text for r in read_records(Path("data/chnsenticorp/dev.tsv")) if r.text.strip()]
    short = sorted(texts, key=len)[100:132]
    return short, sorted(texts, key=len)[-16:]


def test_auto_for_a_server_answers_the_same_in_any_batch(tiny_bundle: Path, corpus, tmp_path: Path) -> None:
    """On a bundle where the recorded ranking's `auto` takes int8 (batch-dependent), `auto` for a server
    (`batch_independent=True`, what `serve` loads) takes int8-block, whose answers do not move with the batch."""
    short, long_texts = corpus
    bundle = bundle_where_auto_takes_int8(tiny_bundle, tmp_path / "b")
    offline = Classifier.load(bundle, provider="cpu", probe=False)
    assert offline.variant == "int8" and not offline.manifest.batch_independent("int8")
    served = Classifier.load(bundle, provider="cpu", probe=False, batch_independent=True)
    assert served.variant == "int8-block" and served.manifest.batch_independent(served.variant)
    assert _batch_spread(served, short, long_texts) <= 1e-3
    # the check can fail: per-tensor dynamic int8 moves with its batch (why a server's `auto` does not take it)
    assert _batch_spread(offline, short, long_texts) > 1e-3


def _host_profile(bundle: Path, int8: dict) -> None:
    """The host cache `info` reads, written as this host's probe would write it: fp32 the float path, int8 faster
    with the given fidelity, int8-block slower than fp32 (EDGE_SENT_CACHE set by the caller)."""
    from edge_sent.contract import read_manifest
    from edge_sent.fidelity import HostMeasure
    from edge_sent.runtime.host import cache as host_cache
    from edge_sent.runtime.host.probe import HostProbe
    from edge_sent.runtime.host.timing import SHAPES
    from edge_sent.runtime.session import SessionConfig

    manifest = read_manifest(bundle)

    def measure(name: str, ms: float, **fidelity) -> HostMeasure:
        return HostMeasure(
            name, {s: ms * (i + 1) for i, s in enumerate(SHAPES)}, dict.fromkeys(SHAPES, 10.0 / ms), **fidelity
        )

    measured = {"fp32": measure("fp32", 10.0), "int8": measure("int8", 6.0, **int8)}
    measured["int8-block"] = measure("int8-block", 12.5)
    host_cache.save_profile(HostProbe(manifest, "cpu", SessionConfig(provider="cpu")).key, measured, 1.0)


@pytest.fixture
def short_cache(monkeypatch):
    """A host cache under a short path (the `cached in PATH` line stays under 100 columns)."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="es")
    monkeypatch.setenv("EDGE_SENT_CACHE", folder)
    monkeypatch.delenv("EDGE_SENT_PROBE", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    yield Path(folder)
    shutil.rmtree(folder)


def test_info_shows_a_stopped_rerun_as_a_bound_and_says_which_auto_runs(tiny_bundle: Path, tmp_path, short_cache):
    """The recorded ranking takes int8; on this host int8's rerun stopped after 64 of 200 texts (at most 194 can
    agree: < 98%) and int8-block is slower than fp32, so fp32 runs. `info` says so once, with int8's figure as a bound,
    and says why the recorded ranking's int8 does not run."""
    bundle = bundle_where_auto_takes_int8(tiny_bundle, tmp_path / "b")
    partial = {"agreement": 0.97, "max_abs_dprob": 0.4, "n_texts": 64, "complete": False, "counts": (194, 200)}
    _host_profile(bundle, partial)
    out = run_cli("info", str(bundle), env={"COLUMNS": "100"}).stdout
    flat = " ".join(out.split())
    assert "int8: ≤ 97.0%, stopped after 64 of 200 texts: cannot reach 98%" in flat
    assert "97.0% of" not in flat  # the bound never reads as a measurement
    runs = [line for line in out.splitlines() if line.lstrip().startswith("runs on this host")]
    assert len(runs) == 1 and "runs on this host (cpu): fp32 on onnxruntime " in runs[0]  # the engine and version
    assert ", decided by measurements on this host" in runs[0]
    assert "recorded ranking on cpu: int8 (not what runs here: the export's figures decide only with --no-probe" in flat
    info = json.loads(run_cli("info", str(bundle), "--json").stdout)
    assert (info["runs"]["variant"], info["runs"]["decided_by"]) == ("fp32", "this host")
    assert info["auto"]["cpu"]["variant"] == "int8"
    off = " ".join(run_cli("info", str(bundle), env={"EDGE_SENT_PROBE": "0"}).stdout.split())
    assert "runs on this host (cpu): int8 on onnxruntime " in off and ", from the recorded ranking" in off
    assert "(probing is off here" in off
    tune = run_cli("tune", str(bundle), env={"COLUMNS": "100"}).stdout  # measured whole: a figure, not a bound
    assert "stopped after" not in tune and "int8: " in tune and "% of 200" in tune


def test_info_fits_100_columns_and_prints_no_trailing_spaces_in_a_pipe(tiny_bundle: Path, short_cache) -> None:
    """At COLUMNS=100 no cell is cut ("model_qua…", "88.4%–94.…") and no line is wider; in a pipe (no COLUMNS) the
    same, and no line ends in spaces; the export's table shows one agreement figure per variant: the one its
    recorded ranking compares with the floor."""
    import subprocess
    import sys

    _host_profile(tiny_bundle, {"agreement": 0.6, "max_abs_dprob": 0.5, "n_texts": 200, "counts": (120, 200)})
    command = [sys.executable, "-m", "edge_sent", "info", str(tiny_bundle)]
    for env in ({"COLUMNS": "100"}, {}):
        proc = subprocess.run(command, capture_output=True, text=True, env=os.environ | env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert "…" not in proc.stdout and "model_quantized.onnx" in proc.stdout
        assert [line for line in lines if len(line) > 100 or line != line.rstrip()] == [], env
        assert "  int8: 60.0% of 200; max |Δprob| 0.500" in lines
    manifest = Manifest(root=tiny_bundle, data=json.loads((tiny_bundle / "manifest.json").read_text()))
    entry = manifest.variants["int8-block"]
    used = recorded(entry, "cpu").agreement
    (row,) = [line for line in lines if line.startswith("int8-block ") and "%" in line]
    assert f"{used:.1%}" in row and row.count("%") == 2  # the figure and its interval, nothing else
    assert f"{used:.1%} agreement with fp32" in proc.stdout  # the recorded ranking's reason: the same figure
