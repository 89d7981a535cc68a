"""`auto` decided on the host: the rule (fake clock, fake fidelity), the cache and its keys, the fallbacks, and one
real probe on the tiny bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_sent.contract import read_manifest
from edge_sent.fidelity import MIN_SPEEDUP, HostMeasure, host_choice
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.host import cache as host_cache
from edge_sent.runtime.host import probe as host_probe
from edge_sent.runtime.host.probe import HostProbe, ProbeSettings
from edge_sent.runtime.session import SessionConfig

from .conftest import run_cli
from .test_fidelity import _agreement, _manifest

# per-text seconds of each file on two CPU classes (the AVX2 figures; the VNNI ordering of RESULTS.md)
AVX2 = {"model.onnx": 0.0755, "model_quantized.onnx": 0.0395, "model_int8_block.onnx": 0.1003}
VNNI = {"model.onnx": 0.0705, "model_quantized.onnx": 0.0253, "model_int8_block.onnx": 0.0510}


class FakeHost:
    """A fake clock that each engine run advances by its file's cost, and fake fidelity per variant."""

    def __init__(self, monkeypatch, costs: dict[str, float], agreements: dict[str, float]) -> None:
        self.now = 0.0
        self.runs: list[str] = []
        self.fidelity_runs: list[str] = []
        self.costs = costs
        real_run = Engine.run

        def run(engine, feeds, outputs=("probabilities",)):
            self.now += costs[engine.model_path.name] * len(feeds["input_ids"])
            self.runs.append(engine.model_path.name)
            return real_run(engine, feeds, outputs)

        def fidelity(engine, texts, reference, batch_size, floor=0.0):
            name = {"model_quantized.onnx": "int8", "model_int8_block.onnx": "int8-block"}[engine.model_path.name]
            self.fidelity_runs.append(name)
            return {"label_agreement": agreements[name], "max_abs_dprob": 0.1, "n_texts": len(texts), "complete": True}

        monkeypatch.setattr(Engine, "run", run)
        monkeypatch.setattr(host_probe, "measure_agreement", fidelity)

    def clock(self) -> float:
        return self.now

    def settings(self) -> ProbeSettings:
        return ProbeSettings(clock=self.clock, notify=lambda message: None)


@pytest.fixture()
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGE_SENT_CACHE", str(cache))
    monkeypatch.delenv("EDGE_SENT_PROBE", raising=False)
    return cache


def decide(bundle: Path, host: FakeHost, threads: int = 2, min_agreement: float = 0.98, **kw):
    manifest = read_manifest(bundle)
    config = SessionConfig(provider="cpu", threads=threads)
    return HostProbe(manifest, "cpu", config, min_agreement, settings=host.settings()).decide(**kw)


def test_on_avx2_auto_never_takes_a_variant_slower_than_fp32(bundle: Path, monkeypatch) -> None:
    host = FakeHost(monkeypatch, AVX2, {"int8": 0.95, "int8-block": 0.99})
    result = decide(bundle, host)
    assert result.probed and result.choice.variant == "fp32"
    block = result.measured["int8-block"]
    assert block.slowest == pytest.approx(AVX2["model.onnx"] / AVX2["model_int8_block.onnx"], rel=1e-6)
    assert "int8-block: 0.75× the float path" in result.choice.reason
    assert "int8: 95.0% agreement with fp32 on 200 texts (on this host) < 98%" in result.choice.reason
    assert host.fidelity_runs == ["int8"]  # int8-block is slower than fp32: its fidelity is never measured
    # faithful int8 on the same host: the fastest faithful one
    assert (
        decide(bundle, FakeHost(monkeypatch, AVX2, {"int8": 0.99, "int8-block": 0.99}), refresh=True).choice.variant
        == "int8"
    )


def test_on_vnni_the_fastest_faithful_variant_wins(bundle: Path, monkeypatch) -> None:
    host = FakeHost(monkeypatch, VNNI, {"int8": 0.91, "int8-block": 0.985})
    result = decide(bundle, host)
    assert result.choice.variant == "int8-block"
    assert host.fidelity_runs == ["int8", "int8-block"]  # fastest first, lazily
    assert "98.5% agreement with fp32 on 200 texts (on this host)" in result.choice.reason
    # a stricter floor later: decided from the cache, no new measurement
    again = FakeHost(monkeypatch, VNNI, {"int8": 0.0, "int8-block": 0.0})
    stricter = decide(bundle, again, min_agreement=0.99)
    assert stricter.choice.variant == "fp32" and not stricter.probed and again.runs == []


def test_the_cache_is_keyed_and_a_second_load_measures_nothing(bundle: Path, monkeypatch, fresh_cache) -> None:
    first = FakeHost(monkeypatch, VNNI, {"int8": 0.99, "int8-block": 0.99})
    assert decide(bundle, first).probed and first.runs
    second = FakeHost(monkeypatch, VNNI, {"int8": 0.99, "int8-block": 0.99})
    result = decide(bundle, second)
    assert not result.probed and result.probe_s == 0 and second.runs == [] and result.choice.variant == "int8"
    # each part of the key invalidates: threads, onnxruntime version, CPU flags, the bundle's content
    assert decide(bundle, FakeHost(monkeypatch, VNNI, {"int8": 0.99, "int8-block": 0.99}), threads=1).probed
    changes = [
        lambda: monkeypatch.setattr(host_cache.ort, "__version__", "0.0.1-test"),
        lambda: monkeypatch.setattr(host_cache, "cpu_fingerprint", lambda: {"machine": "x86_64", "isa": ["avx2"]}),
        lambda: (bundle / "manifest.json").write_text(
            json.dumps(json.loads((bundle / "manifest.json").read_text()) | {"note": "re-exported"})
        ),
    ]
    for change in changes:
        change()
        host = FakeHost(monkeypatch, VNNI, {"int8": 0.99, "int8-block": 0.99})
        assert decide(bundle, host).probed, change
    assert len(list((fresh_cache / "host").glob("*.json"))) == 5


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: "{not json",
        lambda data: json.dumps(data | {"key": data["key"] | {"threads": 99}}),  # another host's record
        lambda data: json.dumps(data | {"variants": {"int8": data["variants"]["int8"] | {"agreement": 1.5}}}),
        lambda data: json.dumps(data | {"variants": {"int8": data["variants"]["int8-block"]}}),
        lambda data: json.dumps(data | {"variants": {"int8": data["variants"]["int8"] | {"speedups": {"x": -1}}}}),
    ],
)
def test_a_corrupt_cache_is_ignored_never_trusted(bundle: Path, monkeypatch, corrupt) -> None:
    host = FakeHost(monkeypatch, AVX2, {"int8": 0.9, "int8-block": 0.9})
    result = decide(bundle, host)
    assert result.choice.variant == "fp32" and result.cache_file is not None
    data = json.loads(result.cache_file.read_text())
    result.cache_file.write_text(corrupt(data))
    lying = FakeHost(monkeypatch, VNNI, {"int8": 0.99, "int8-block": 0.99})
    again = decide(bundle, lying)
    assert again.probed and again.choice.variant == "int8"  # measured afresh, not read from the bad file
    assert json.loads(again.cache_file.read_text())["key"] == data["key"]  # and rewritten whole


def test_the_rule_never_takes_an_unprobed_or_unmeasured_variant() -> None:
    manifest = _manifest(fp32={}, int8={"vs_fp32": _agreement(0.99)}, **{"int8-block": {}})
    fast = {"1 text": 2.0, "8 texts": 2.0}
    assert host_choice(manifest, "cpu", {}).variant == "fp32"
    measured = {"int8": HostMeasure("int8", {}, fast)}
    assert host_choice(manifest, "cpu", measured).needs == "int8"  # asks for fidelity before deciding
    borderline = {"int8": HostMeasure("int8", {}, {"1 text": 3.0, "8 texts": MIN_SPEEDUP - 0.01}, 1.0, 0.0, 200)}
    assert host_choice(manifest, "cpu", borderline).variant == "fp32"  # slower at one shape is enough to refuse
    partial = {"int8": HostMeasure("int8", {}, fast, 0.96, 0.5, 40, "host", complete=False)}
    assert (
        "agreement with fp32 ≤ 96.0%, stopped after 40 texts" in host_choice(manifest, "cpu", partial).reason
    )  # out of reach of 98%
    assert host_choice(manifest, "cpu", partial, min_agreement=0.9).needs == "int8"  # within reach of 90%: measure
    none = {"int8": HostMeasure("int8", {}, fast, 0.0, None, 0, "none")}
    assert "no agreement with fp32 measured" in host_choice(manifest, "cpu", none).reason
    assert host_choice(manifest, "cuda", {}).variant == "fp32"  # no CPU candidates on CUDA: the float path


def test_a_bundle_without_host_check_texts_uses_the_recorded_agreement(bundle: Path, monkeypatch) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    del data["host_check"]
    (bundle / "manifest.json").write_text(json.dumps(data))
    host = FakeHost(monkeypatch, VNNI, {"int8": 1.0, "int8-block": 1.0})
    result = decide(bundle, host, min_agreement=0.5)
    assert host.fidelity_runs == []
    recorded_int8 = data["variants"]["int8"]["eval_vs_fp32"]["label_agreement"]
    assert result.measured["int8"].agreement == pytest.approx(recorded_int8)
    assert "recorded at export" in result.choice.reason


def test_real_probe_on_the_tiny_bundle(bundle: Path, fresh_cache: Path, monkeypatch) -> None:
    clf = Classifier.load(bundle, provider="cpu")
    (profile,) = (fresh_cache / "host").glob("*.json")
    measured = host_cache.load_profile(json.loads(profile.read_text())["key"])
    assert set(measured) == {"fp32", "int8", "int8-block"} and all(m.ms for m in measured.values())
    assert host_choice(read_manifest(bundle), "cpu", measured).variant == clf.variant  # the rule, on real figures
    if clf.variant != "fp32":
        assert measured[clf.variant].slowest >= MIN_SPEEDUP and measured[clf.variant].agreement >= 0.98
    # the host's agreement is measured against the recorded fp32 probabilities: fp32 itself reproduces them
    from edge_sent.host_check import read_host_check

    texts, reference = read_host_check(read_manifest(bundle))
    fp32 = Classifier.load(bundle, variant="fp32", provider="cpu")
    assert np.ptp(reference[:, 1]) > 0.05  # the texts get different answers
    np.testing.assert_allclose(fp32.engine.run_texts(texts, 32)["probabilities"], reference, atol=1e-5)
    # --no-probe / EDGE_SENT_PROBE=0: the recorded ranking, nothing measured
    shutil.rmtree(fresh_cache / "host")
    monkeypatch.setenv("EDGE_SENT_PROBE", "0")
    recorded_choice = Classifier.load(bundle, provider="cpu", min_agreement=0.0)
    assert recorded_choice.variant == "int8" and "recorded ranking" in recorded_choice.why
    assert not (fresh_cache / "host").exists()


def test_cli_notes_the_first_probe_tune_measures_all_info_shows_the_host(bundle: Path, fresh_cache: Path) -> None:
    env = {"EDGE_SENT_CACHE": str(fresh_cache)}
    first = run_cli("predict", str(bundle), "房间很干净", "--provider", "cpu", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert "first use of" in first.stderr and "on this host" in first.stderr
    second = run_cli("predict", str(bundle), "房间很干净", "--provider", "cpu", "--json", env=env)
    assert second.returncode == 0 and "first use of" not in second.stderr
    tuned = run_cli("tune", str(bundle), "--provider", "cpu", "--json", env=env)
    assert tuned.returncode == 0, tuned.stderr
    report = json.loads(tuned.stdout)
    rows = {row["variant"]: row for row in report["measured"]}
    assert rows["int8"]["agreement_with_fp32"] is not None and rows["int8-block"]["agreement_with_fp32"] is not None
    assert report["probe_s"] > 0 and Path(report["cache_file"]).is_file()
    info = json.loads(run_cli("info", str(bundle), "--json", env=env).stdout)
    assert info["host"]["variant"] == report["variant"] and info["host"]["reason"] == report["reason"]
    text = run_cli("info", str(bundle), env=env).stdout
    flat = " ".join(text.split())
    assert report["engine"] == info["host"]["engine"] == "onnxruntime" and report["engine_version"]
    runs = f"runs on this host (cpu): {report['variant']} on onnxruntime {report['engine_version']}, decided by"
    assert "measured on this host" in text and runs in flat
    shutil.rmtree(fresh_cache / "host")
    assert "not measured yet" in run_cli("info", str(bundle), env=env).stdout


def test_serve_probes_at_startup_before_it_is_healthy(bundle: Path, fresh_cache: Path, tmp_path: Path) -> None:
    import requests

    from .test_serve import running

    with running(bundle, tmp_path, env={"EDGE_SENT_CACHE": str(fresh_cache)}) as server:
        assert list((fresh_cache / "host").glob("*.json"))  # measured before /health said 200
        info = requests.get(server.url + "/info", timeout=30).json()
        assert "first use of" in server.output()
    manifest = read_manifest(bundle)
    (profile,) = (fresh_cache / "host").glob("*.json")
    measured = host_cache.load_profile(json.loads(profile.read_text())["key"])
    among = {name for name in manifest.variants if manifest.batch_independent(name)}  # a server's `auto`
    assert info["variant"] == host_choice(manifest, "cpu", measured, among=among).variant
    assert info["variant_reason"] == host_choice(manifest, "cpu", measured, among=among).reason
    assert info["engine"] == "onnxruntime" and info["engine_version"]


def test_host_fidelity_reproduces_the_export_and_stops_once_out_of_reach(bundle: Path) -> None:
    from edge_sent.host_check import read_host_check

    manifest = read_manifest(bundle)
    texts, reference = read_host_check(manifest)
    int8 = Classifier.load(bundle, variant="int8", provider="cpu").engine
    whole = host_probe.measure_agreement(int8, texts, reference, manifest.host_check.batch_size)
    recorded_here = manifest.variants["int8"].verification.host_check_vs_fp32
    assert whole["complete"] and whole["n_texts"] == len(texts) == 200
    assert whole["label_agreement"] == recorded_here.label_agreement  # same machine, same batches: same answers
    early = host_probe.measure_agreement(int8, texts, reference, manifest.host_check.batch_size, floor=0.98)
    assert not early["complete"] and early["n_texts"] < len(texts)
    assert whole["label_agreement"] <= early["label_agreement"] < 0.98  # an upper bound, already below the floor
