"""`auto` across engines: which OpenVINO candidates a host has, the rule with a fake clock (never slower than CPU
fp32; bf16 only where the CPU has it), serve's batch-independence rule, and the profile key's engine versions.
No OpenVINO needed: the OpenVINO candidates run the fp32 graph on onnxruntime at a cost the fake clock sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_sent.candidates import Candidate, parse_candidate
from edge_sent.contract import read_manifest
from edge_sent.fidelity import HostMeasure, host_choice
from edge_sent.integrity import check_graph
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.host import candidates as candidates_module
from edge_sent.runtime.host import probe as host_probe
from edge_sent.runtime.host.probe import HostProbe
from edge_sent.runtime.host.timing import ProbeSettings, time_variants
from edge_sent.runtime.session import SessionConfig

F32, BF16 = "fp32@openvino-fp32", "fp32@openvino-bf16"


class FakeHost:
    """Per-text seconds for each candidate on a fake clock; fake fidelity and batch dependence per candidate."""

    def __init__(self, monkeypatch, costs: dict[str, float], agreements: dict[str, float], batch=None) -> None:
        self.now = 0.0
        self.batch_checked: list[str] = []
        self.agreement_checked: list[str] = []
        self.runs: list[str] = []
        real_run = Engine.run

        def run(engine, feeds, outputs=("probabilities",)):
            self.now += costs[engine.candidate] * len(feeds["input_ids"])
            self.runs.append(engine.candidate)
            return real_run(engine, feeds, outputs)

        def load(name, manifest, tokenizer, config):
            path = check_graph(manifest, manifest.variant_file(parse_candidate(name).variant))
            engine = Engine(path, tokenizer, config)
            engine.candidate = name
            return engine

        def fidelity(engine, texts, reference, batch_size, floor=0.0):
            self.agreement_checked.append(engine.candidate)
            n = len(texts)
            agreeing = round(agreements[engine.candidate] * n)
            return {
                "label_agreement": agreeing / n,
                "max_abs_dprob": 0.01,
                "n_texts": n,
                "complete": True,
                "counts": (agreeing, n),
            }

        def dependence(engine, texts, batch_size):
            self.batch_checked.append(engine.candidate)
            return (batch or {}).get(engine.candidate, (0.0, 0))

        monkeypatch.setattr(Engine, "run", run)
        monkeypatch.setattr(host_probe, "load_candidate", load)
        monkeypatch.setattr(host_probe, "measure_agreement", fidelity)
        monkeypatch.setattr(host_probe, "batch_dependence", dependence)

    def settings(self) -> ProbeSettings:
        return ProbeSettings(clock=lambda: self.now, notify=lambda message: None)


@pytest.fixture()
def bundle(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGE_SENT_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def openvino_host(monkeypatch, bf16: bool, version: str = "2026.4.1") -> None:
    """This environment has the OpenVINO runtime; the CPU has bf16 or not."""
    monkeypatch.setattr(candidates_module, "runtime_available", lambda machine=None: True)
    monkeypatch.setattr(candidates_module, "runtime_version", lambda: version)
    monkeypatch.setattr(candidates_module, "cpu_has_bf16", lambda: bf16)


def decide(bundle: Path, host: FakeHost, batch_independent: bool = False, refresh: bool = True):
    manifest = read_manifest(bundle)
    config = SessionConfig(provider="cpu", threads=2)
    probe = HostProbe(manifest, "cpu", config, settings=host.settings(), batch_independent=batch_independent)
    return probe, probe.decide(refresh=refresh)


def test_the_candidates_follow_the_runtime_and_the_cpu(bundle: Path, monkeypatch) -> None:
    manifest = read_manifest(bundle)
    openvino_host(monkeypatch, bf16=False)
    assert candidates_module.engine_candidates(manifest, "cpu", None) == (F32,)  # no bf16 candidate without bf16
    openvino_host(monkeypatch, bf16=True)
    assert candidates_module.engine_candidates(manifest, "cpu", None) == (BF16, F32)
    assert candidates_module.engine_candidates(manifest, "cuda", None) == ()  # a GPU provider: its own path
    assert candidates_module.engine_candidates(manifest, "cpu", {"int8"}) == ()  # fp32 not among the allowed
    monkeypatch.setattr(candidates_module, "runtime_available", lambda machine=None: False)
    assert candidates_module.engine_candidates(manifest, "cpu", None) == ()  # not installed: nothing changes
    assert parse_candidate(BF16) == Candidate("fp32", "openvino", "bf16") and parse_candidate("int8").engine is None


@pytest.mark.parametrize(("f32_cost", "expected"), [(0.080, "fp32"), (0.0755, "fp32"), (0.050, F32)])
def test_without_bf16_openvino_f32_is_taken_only_where_it_measures_faster(bundle, monkeypatch, f32_cost, expected):
    """An AVX2 host (no bf16): the only OpenVINO candidate is f32, taken only if ≥ 1.05× CPU fp32; never slower."""
    openvino_host(monkeypatch, bf16=False)
    costs = {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003, F32: f32_cost}
    host = FakeHost(monkeypatch, costs, {"int8": 0.93, "int8-block": 0.99, F32: 1.0})
    _, result = decide(bundle, host)
    assert set(result.measured) == {"fp32", "int8", "int8-block", F32}
    assert result.choice.variant == expected, result.choice.reason


def test_on_a_bf16_cpu_bf16_wins_when_faster_and_faithful_else_f32_or_fp32(bundle, monkeypatch) -> None:
    openvino_host(monkeypatch, bf16=True)
    costs = {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003, F32: 0.07, BF16: 0.03}
    host = FakeHost(monkeypatch, costs, {"int8": 0.93, "int8-block": 0.99, F32: 1.0, BF16: 0.995})
    assert decide(bundle, host)[1].choice.variant == BF16
    host = FakeHost(monkeypatch, costs, {"int8": 0.93, "int8-block": 0.99, F32: 1.0, BF16: 0.95})
    result = decide(bundle, host)[1]
    assert result.choice.variant == F32  # bf16 below the floor: the next fastest faithful one


def test_serve_takes_an_engine_candidate_only_if_its_answers_do_not_depend_on_the_batch(bundle, monkeypatch):
    openvino_host(monkeypatch, bf16=True)
    costs = {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003, F32: 0.07, BF16: 0.03}
    fidelity = {"int8": 0.93, "int8-block": 0.99, F32: 1.0, BF16: 0.995}
    moved = {BF16: (3.9e-3, 0), F32: (2e-5, 0)}
    assert decide(bundle, FakeHost(monkeypatch, costs, fidelity, moved))[1].choice.variant == BF16  # predict
    _, served = decide(bundle, FakeHost(monkeypatch, costs, fidelity, moved), batch_independent=True)
    assert served.choice.variant == F32  # bf16 moved by 3.9e-3 between alone and batched
    flips = {BF16: (5e-4, 1), F32: (2e-5, 0)}  # small moves, but one label changes
    assert decide(bundle, FakeHost(monkeypatch, costs, fidelity, flips), True)[1].choice.variant == F32
    steady = {BF16: (5e-4, 0), F32: (2e-5, 0)}
    assert decide(bundle, FakeHost(monkeypatch, costs, fidelity, steady), True)[1].choice.variant == BF16


def test_a_batch_dependence_not_measured_is_measured_before_serve_takes_it(tiny_bundle: Path) -> None:
    manifest = read_manifest(tiny_bundle)
    measure = HostMeasure(BF16, {"1 text": 1.0}, {"1 text": 2.0}, agreement=1.0, n_texts=100, counts=(100, 100))
    choice = host_choice(manifest, "cpu", {BF16: measure}, among=set(), engines=(BF16,), batch_independent=True)
    assert choice.needs == BF16
    assert host_choice(manifest, "cpu", {BF16: measure}, among=set(), engines=(BF16,)).variant == BF16


def test_the_profile_key_holds_the_engine_version(bundle, monkeypatch) -> None:
    openvino_host(monkeypatch, bf16=False)
    costs = {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003, F32: 0.05}
    fidelity = {"int8": 0.93, "int8-block": 0.99, F32: 1.0}
    probe, first = decide(bundle, FakeHost(monkeypatch, costs, fidelity), refresh=False)
    assert first.probed and probe.key["engines"] == {"openvino": "2026.4.1"}
    assert not decide(bundle, FakeHost(monkeypatch, costs, fidelity), refresh=False)[1].probed  # cached
    openvino_host(monkeypatch, bf16=False, version="2027.0.0")
    assert decide(bundle, FakeHost(monkeypatch, costs, fidelity), refresh=False)[1].probed  # a new OpenVINO: again


class SwitchingEngine:
    """An engine on a fake clock whose first run at a shape compiles it and whose first run after another engine's
    costs extra (its threads cold, the other's spinning), as OpenVINO beside onnxruntime measured here."""

    def __init__(self, host: dict, name: str, per_text: float) -> None:
        self.host, self.name, self.per_text, self.shapes = host, name, per_text, set()

    def run(self, feeds: dict) -> list:
        shape = feeds["input_ids"].shape
        cost = self.per_text * shape[0]
        if shape not in self.shapes:
            cost += 0.5  # the first run at a new shape compiles it
        elif self.host["last"] != self.name:
            cost += 0.02  # the first run after the other engine's
        self.shapes.add(shape)
        self.host["now"] += cost
        self.host["last"] = self.name
        return []


class FakeBatch:
    def __init__(self, rows: int) -> None:
        self.rows = rows

    def feeds(self) -> dict:
        return {"input_ids": np.zeros((self.rows, 16), dtype=np.int64)}


def test_the_probe_times_each_engine_as_it_runs_alone_not_its_compile_nor_the_switch() -> None:
    """What a loaded engine costs run after run: a shape's compile and a switch between engines are not timed."""
    host = {"now": 0.0, "last": None}
    engines = {"fp32": SwitchingEngine(host, "fp32", 0.010), BF16: SwitchingEngine(host, BF16, 0.004)}
    settings = ProbeSettings(clock=lambda: host["now"], notify=lambda message: None)
    ms = time_variants(engines, {"1 text": FakeBatch(1), "8 texts": FakeBatch(8)}, settings)
    assert ms == {
        "fp32": {"1 text": pytest.approx(10.0), "8 texts": pytest.approx(80.0)},
        BF16: {"1 text": pytest.approx(4.0), "8 texts": pytest.approx(32.0)},
    }


def test_each_candidate_has_its_own_budget_and_the_plain_install_probes_no_longer(bundle, monkeypatch) -> None:
    """A fast host: OpenVINO's two candidates do not shorten the others' probe; a slow host's plain install (no
    OpenVINO) runs each engine 1 untimed + 3 timed times per shape and candidate, as it always did."""
    fast = {"fp32": 0.002, "int8": 0.001, "int8-block": 0.0025, F32: 0.0015, BF16: 0.0008}
    fidelity = {"int8": 0.93, "int8-block": 0.99, F32: 1.0, BF16: 0.995}
    monkeypatch.setattr(candidates_module, "runtime_available", lambda machine=None: False)
    plain = FakeHost(monkeypatch, fast, fidelity)
    decide(bundle, plain)
    plain_int8 = plain.runs.count("int8")  # (a later FakeHost's runs pass through this one's too)
    openvino_host(monkeypatch, bf16=True)
    both = FakeHost(monkeypatch, fast, fidelity)
    decide(bundle, both)
    assert both.runs.count(BF16) > 0 and both.runs.count("int8") == plain_int8
    monkeypatch.setattr(candidates_module, "runtime_available", lambda machine=None: False)
    slow = FakeHost(monkeypatch, {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003}, fidelity)
    decide(bundle, slow)
    assert slow.runs.count("int8") == slow.runs.count("int8-block") == 2 * (1 + 3)
    assert slow.runs.count("fp32") == 2 * 2 * (1 + 3)


def test_batch_dependence_is_measured_for_serve_and_tune_not_for_a_first_predict(bundle, monkeypatch) -> None:
    """Its cost (each text alone) is serve's: predict's first load skips it; serve later measures only that."""
    openvino_host(monkeypatch, bf16=True)
    costs = {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003, F32: 0.07, BF16: 0.03}
    fidelity = {"int8": 0.93, "int8-block": 0.99, F32: 1.0, BF16: 0.995}
    predict = FakeHost(monkeypatch, costs, fidelity, {BF16: (5e-4, 0)})
    assert decide(bundle, predict, refresh=False)[1].choice.variant == BF16 and predict.batch_checked == []
    serve = FakeHost(monkeypatch, costs, fidelity, {BF16: (5e-4, 0)})
    assert decide(bundle, serve, batch_independent=True, refresh=False)[1].choice.variant == BF16
    assert serve.batch_checked == [BF16] and serve.agreement_checked == []  # the cached agreement stands
    tune = FakeHost(monkeypatch, costs, fidelity, {BF16: (5e-4, 0)})
    manifest = read_manifest(bundle)
    probe = HostProbe(manifest, "cpu", SessionConfig(provider="cpu", threads=2), settings=tune.settings())
    measured = probe.decide(refresh=True, every=True).measured
    assert sorted(tune.batch_checked) == sorted([BF16, F32]) and measured[F32].batch_max_dprob is not None


def test_tune_and_info_show_the_engine_and_its_version(bundle, monkeypatch) -> None:
    """The chosen candidate's engine beside the variant: tune's and info's JSON and text, and each measured row."""
    from typer.testing import CliRunner

    from edge_sent.cli import app

    openvino_host(monkeypatch, bf16=True, version="2026.4.1")
    costs = {"fp32": 0.0755, "int8": 0.0395, "int8-block": 0.1003, F32: 0.07, BF16: 0.03}
    host = FakeHost(monkeypatch, costs, {"int8": 0.93, "int8-block": 0.99, F32: 1.0, BF16: 0.995})
    monkeypatch.setattr("edge_sent.runtime.host.verdict.ProbeSettings", lambda notify=None: host.settings())
    runner = CliRunner()
    tuned = runner.invoke(app, ["tune", str(bundle), "--provider", "cpu", "--json"])
    assert tuned.exit_code == 0, tuned.output
    report = json.loads(tuned.output)
    assert (report["variant"], report["engine"], report["engine_version"]) == (BF16, "openvino", "2026.4.1")
    assert {row["variant"]: row["engine"] for row in report["measured"]}["int8"] == "onnxruntime"
    text = " ".join(runner.invoke(app, ["tune", str(bundle), "--provider", "cpu"]).output.split())
    assert "engine: OpenVINO 2026.4.1, bf16" in text
    monkeypatch.setattr("edge_sent.runtime.session.resolve_provider", lambda provider: "cpu")
    info = json.loads(runner.invoke(app, ["info", str(bundle), "--json"]).output)
    assert (info["host"]["engine"], info["runs"]["engine"], info["runs"]["engine_version"]) == (
        "openvino",
        "openvino",
        "2026.4.1",
    )
    text = " ".join(runner.invoke(app, ["info", str(bundle)]).output.split())
    assert f"runs on this host (cpu): {BF16} on OpenVINO 2026.4.1, bf16, decided by" in text
    assert candidates_module.engine_fields("fp32", "openvino")["engine"] == "openvino"  # forced: its runtime
    assert candidates_module.engine_fields("fp32", "cpu")["engine"] == "onnxruntime"
