"""The OpenVINO runtime engine on the tiny bundle (needs the `openvino` extra; skipped without it): parity with
onnxruntime's CPU fp32, bf16 really computed in bf16, OpenVINO's model cache reused, thread safety, and a load whose
host profile chose an OpenVINO candidate running on it."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge_sent.contract import TOKENIZER, read_manifest
from edge_sent.fidelity import HostMeasure
from edge_sent.integrity import check_file
from edge_sent.runtime import Classifier
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.host import cache as host_cache
from edge_sent.runtime.host.probe import HostProbe
from edge_sent.runtime.openvino_engine import OpenVINOEngine
from edge_sent.runtime.session import SessionConfig, cpu_has_bf16
from edge_sent.tokenization import Tokenizer

from .conftest import DATA

pytest.importorskip("openvino")

TEXTS = [line.split("\t", 1)[1] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:41]]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGE_SENT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def engines(bundle: Path, precision: str) -> tuple[Engine, OpenVINOEngine]:
    manifest = read_manifest(bundle)
    tokenizer = Tokenizer(check_file(manifest, TOKENIZER), manifest.max_length)
    cpu = Engine(bundle / "model.onnx", tokenizer, SessionConfig(provider="cpu"))
    ov = OpenVINOEngine(bundle / "model.onnx", tokenizer, SessionConfig(provider="openvino", precision=precision))
    return cpu, ov


def test_f32_matches_the_cpu_path_and_bf16_computes_in_bf16(tiny_bundle: Path, cache: Path) -> None:
    cpu, f32 = engines(tiny_bundle, "fp32")
    reference = cpu.run_texts(TEXTS)["probabilities"]
    assert np.ptp(reference[:, 0]) > 1e-3  # answers that differ across texts
    assert np.abs(f32.run_texts(TEXTS)["probabilities"] - reference).max() < 1e-4
    assert f32.engine == "openvino" and "f32" in f32.providers[0]
    if not cpu_has_bf16():
        pytest.skip("this CPU has no AVX-512 BF16/AMX: the bf16 hint computes in f32 here")
    _, bf16 = engines(tiny_bundle, "bf16")
    assert np.abs(bf16.run_texts(TEXTS)["probabilities"] - reference).max() > 1e-3  # the hint reached OpenVINO


def test_a_second_load_reads_the_model_cache(tiny_bundle: Path, cache: Path) -> None:
    engines(tiny_bundle, "fp32")
    blobs = {p: p.stat().st_mtime_ns for p in (cache / "openvino").rglob("*.blob")}
    assert blobs, "the first compile wrote nothing to OpenVINO's model cache"
    engines(tiny_bundle, "fp32")
    assert {p: p.stat().st_mtime_ns for p in (cache / "openvino").rglob("*.blob")} == blobs  # reused, not rewritten


def test_threads_share_one_engine(tiny_bundle: Path, cache: Path) -> None:
    _, ov = engines(tiny_bundle, "fp32")
    alone = ov.run_texts(TEXTS, batch_size=8)["probabilities"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ov.run_texts(TEXTS, batch_size=8)["probabilities"], range(8)))
    for result in results:
        np.testing.assert_array_equal(result, alone)


def test_provider_openvino_runs_on_the_runtime(tiny_bundle: Path, cache: Path) -> None:
    clf = Classifier.load(tiny_bundle, variant="fp32", provider="openvino", precision="fp32")
    cpu = Classifier.load(tiny_bundle, variant="fp32", provider="cpu")
    assert isinstance(clf.engine, OpenVINOEngine) and clf.provider == "openvino" and clf.precision == "fp32"
    assert [p.label for p in clf.predict(TEXTS)] == [p.label for p in cpu.predict(TEXTS)]


def test_auto_loads_the_openvino_candidate_its_profile_chose(tiny_bundle: Path, tmp_path: Path, cache: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    probe = HostProbe(read_manifest(bundle), "cpu", SessionConfig(provider="cpu"))
    assert "fp32@openvino-fp32" in probe.extra
    fast = {"1 text": 2.0, "8 texts": 2.0}
    measured = {name: HostMeasure(name, {}, {"1 text": 0.5, "8 texts": 0.5}, agreement=0.5) for name in probe.extra}
    measured["fp32"] = HostMeasure("fp32", {}, {"1 text": 1.0, "8 texts": 1.0})
    measured["fp32@openvino-fp32"] = HostMeasure(
        "fp32@openvino-fp32", {}, fast, agreement=1.0, n_texts=100, counts=(100, 100)
    )
    for name in ("int8", "int8-block"):
        measured[name] = HostMeasure(name, {}, {"1 text": 0.5, "8 texts": 0.5})
    host_cache.save_profile(probe.key, measured, 1.0)
    clf = Classifier.load(bundle)
    assert clf.variant == "fp32" and isinstance(clf.engine, OpenVINOEngine) and clf.precision == "fp32", clf.why
