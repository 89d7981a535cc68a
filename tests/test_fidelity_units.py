"""`auto`'s rules in process (no bundle, no probe): what each record means, the exact reasons `info` and `export`
print, the integer floor, and the host rule's ranking, bounds and fallbacks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_sent.candidates import MAX_BATCH_DPROB
from edge_sent.contract import Manifest
from edge_sent.fidelity import (
    MIN_AGREEMENT,
    MIN_SPEEDUP,
    HostMeasure,
    Measured,
    agreeing_needed,
    auto_choice,
    below_floor,
    host_candidates,
    host_choice,
    recorded,
)

OV = "fp32@openvino-bf16"  # another engine's candidate


def _agr(value: float, n: int | None = None) -> dict:
    data: dict = {"label_agreement": value, "max_abs_dprob": 0.1, "mean_abs_dprob": 0.01}
    if n is not None:
        data["n_texts"] = n
    return data


def _manifest(**variants: dict) -> Manifest:
    data = {name.replace("_", "-"): {"file": f"{name}.onnx", **record} for name, record in variants.items()}
    return Manifest(root=Path("/b"), data={"variants": data})


def _fast(agreement: float | None = 0.99, slowest: float = 2.0, **kw) -> HostMeasure:
    return HostMeasure("x", {}, {"1 text": slowest, "8 texts": 3.0}, agreement, 0.0, kw.pop("n", 200), **kw)


def test_the_constants_are_the_documented_ones() -> None:
    assert MIN_AGREEMENT == 0.98 and MIN_SPEEDUP == 1.05


def test_recorded_prefers_the_eval_set_then_the_host_check_texts_then_the_verification_texts() -> None:
    m = _manifest(
        fp32={},
        int8={"vs_fp32": _agr(0.9), "host_check_vs_fp32": _agr(0.95, 300), "eval_vs_fp32": _agr(0.97)},
        int8_block={"vs_fp32": _agr(0.9), "host_check_vs_fp32": _agr(0.95, 300), "verified_on": "cuda"},
        int4={"vs_fp32": _agr(0.9)},
    )
    assert recorded(m.variants["int8"], "cpu") == Measured(0.97, "eval set", "cpu")
    assert recorded(m.variants["int8-block"], "cpu") == Measured(0.95, "300 host-check texts", "cuda")
    assert recorded(m.variants["int4"], "cpu") == Measured(0.9, "verification texts", "cpu")
    assert recorded(m.variants["fp32"], "cpu") is None
    # a variant no OpenVINO precision targets: its CPU record stands on openvino too
    assert recorded(m.variants["int4"], "openvino") == Measured(0.9, "verification texts", "cpu")


def test_recorded_on_openvino_counts_only_the_openvino_record() -> None:
    m = _manifest(
        fp32={"vs_fp32": _agr(1.0)},
        int8_static={"vs_fp32": _agr(0.9), "openvino": {"vs_fp32": _agr(0.96), "eval_vs_fp32": _agr(0.99)}},
        int4={"vs_fp32": _agr(0.9), "openvino": "not measured"},
    )
    assert recorded(m.variants["int8-static"], "openvino") == Measured(0.99, "eval set", "openvino")
    assert recorded(m.variants["int8-static"], "cpu") == Measured(0.9, "verification texts", "cpu")
    assert recorded(m.variants["fp32"], "openvino") is None  # nothing measured on OpenVINO
    ov_verify = _manifest(int8_static={"openvino": {"vs_fp32": _agr(0.96)}})
    assert recorded(ov_verify.variants["int8-static"], "openvino") == Measured(0.96, "verification texts", "openvino")
    assert recorded(m.variants["int4"], "openvino") == Measured(0.9, "verification texts", "cpu")


def test_auto_choice_says_exactly_why() -> None:
    at_floor = _manifest(fp32={}, int8={"vs_fp32": _agr(0.98)})
    choice = auto_choice(at_floor, "cpu")
    assert choice.variant == "int8"  # at the floor is enough
    assert choice.reason == ("fastest variant for cpu with ≥ 98% agreement with fp32 (98.0% on the verification texts)")
    two_below = _manifest(fp32={}, int8={"vs_fp32": _agr(0.5)}, int8_block={})
    choice = auto_choice(two_below, "cpu")
    assert choice.variant == "fp32"
    assert choice.reason == (
        "the faithful float path (int8: 50.0% agreement with fp32 < 98%; int8-block: no agreement measured on cpu)"
    )
    assert auto_choice(_manifest(fp32={}), "cpu").reason == (
        "the faithful float path (no faster variant for this provider in the bundle)"
    )


def test_auto_choice_falls_back_within_the_variants_it_may_use() -> None:
    m = _manifest(fp32={}, fp16={}, int8={"vs_fp32": _agr(0.5)}, int4={}, int8_block={"vs_fp32": _agr(0.99)})
    assert auto_choice(m, "cpu").variant == "int8-block"
    assert auto_choice(m, "cpu", among={"int8", "fp32"}).variant == "fp32"  # int8-block is not among them
    assert auto_choice(m, "cpu", among={"int8", "int4"}).variant == "int4"  # no fp32 allowed: the first by name
    assert auto_choice(m, "cpu", among=set()).variant == "fp32"  # nothing allowed: the reference
    assert auto_choice(m, "cuda").variant == "fp16"
    assert auto_choice(m, "cuda", among={"fp32", "int8"}).variant == "fp32"
    assert auto_choice(_manifest(int8={"vs_fp32": _agr(0.5)}), "cpu").variant == "fp32"  # no fp32 file: still fp32


def test_below_floor_warns_per_provider_and_never_about_the_reference() -> None:
    m = _manifest(
        fp32={"vs_fp32": _agr(0.5)},
        int8={"vs_fp32": _agr(0.98)},  # at the floor: no warning
        int4={},  # not measured: no warning
        int8_static={"vs_fp32": _agr(0.99), "openvino": {"vs_fp32": _agr(0.913)}},
    )
    assert below_floor(m) == [
        "warning: variant int8-static agrees with fp32 on 91.3% of labels (verification texts, openvino), below "
        "98%: `auto` will not choose it there; name it with --variant int8-static to use it anyway"
    ]
    both = _manifest(int8_static={"vs_fp32": _agr(0.5), "openvino": {"vs_fp32": _agr(0.5)}})
    assert [w.split("(")[1].split(")")[0] for w in below_floor(both)] == [
        "verification texts, cpu",
        "verification texts, openvino",
    ]


@pytest.mark.parametrize(
    ("floor", "n", "needed"),
    [(0.9, 300, 270), (0.98, 100, 98), (0.8, 5, 4), (0.9, 7, 7), (0.5, 3, 2), (0.0, 10, 0), (1.0, 10, 10)],
)
def test_agreeing_needed_counts_in_integers(floor: float, n: int, needed: int) -> None:
    assert agreeing_needed(floor, n) == needed


def test_host_measure_defaults_mean_measured_here_in_whole() -> None:
    m = HostMeasure("int8", {}, {})
    assert (m.agreement, m.max_abs_dprob, m.n_texts, m.agreement_source) == (None, None, 0, "host")
    assert m.complete is True and m.counts is None
    assert (m.batch_max_dprob, m.batch_label_flips) == (None, None)


def test_batch_independent_needs_both_measures_within_the_bound() -> None:
    def m(dprob: float | None, flips: int | None) -> bool:
        return HostMeasure(OV, {}, {}, batch_max_dprob=dprob, batch_label_flips=flips).batch_independent

    assert m(MAX_BATCH_DPROB, 0) is True
    assert m(0.0, 0) is True
    assert m(MAX_BATCH_DPROB * 1.01, 0) is False
    assert m(0.0, 1) is False
    assert m(None, 0) is False and m(0.0, None) is False and m(None, None) is False


def test_reaches_counts_labels_where_it_can() -> None:
    assert HostMeasure("x", {}, {}, counts=(270, 300)).reaches(0.9)
    assert not HostMeasure("x", {}, {}, counts=(269, 300)).reaches(0.9)
    # a profile cached without counts: rounded back to labels (0.8999999 of 300 is 270)
    assert _fast(0.8999999, n=300).reaches(0.9)
    assert not _fast(0.8966, n=300).reaches(0.9)
    assert not _fast(None, n=10).reaches(0.01)  # nothing measured counts as no agreement
    assert _fast(None, n=10).reaches(0.0)
    # the export's figure, a partial rerun or no count: compared as a fraction
    assert not _fast(0.8999999, n=300, agreement_source="recorded").reaches(0.9)
    assert not _fast(0.8999999, n=300, complete=False).reaches(0.9)
    assert not _fast(0.8999999, n=0).reaches(0.9)
    assert _fast(0.9, n=0).reaches(0.9)
    assert not _fast(None, n=0).reaches(0.0)


def test_slowest_and_typical_speedups() -> None:
    m = HostMeasure("x", {}, {"a": 2.0, "b": 8.0})
    assert m.slowest == 2.0 and m.typical == pytest.approx(4.0)
    assert HostMeasure("x", {}, {"a": 4.0, "b": 0.0}).typical == pytest.approx(4.0)  # unmeasured shapes left out
    assert HostMeasure("x", {}, {}).slowest == 0.0 and HostMeasure("x", {}, {}).typical == 0.0
    assert HostMeasure("x", {}, {"a": 0.0}).typical == 0.0
    assert math.isclose(HostMeasure("x", {}, {"a": 3.0}).typical, 3.0)


def test_host_candidates_follow_the_table_within_among() -> None:
    m = _manifest(fp32={}, int8={}, int8_block={}, int4={})
    assert host_candidates(m, "cpu") == ["int8", "int8-block"]
    assert host_candidates(m, "cpu", among={"int8-block", "fp32"}) == ["int8-block"]
    assert host_candidates(m, "cuda") == []


def test_host_choice_takes_the_fastest_faithful_and_says_so() -> None:
    m = _manifest(fp32={}, int8={}, int8_block={})
    measured = {"int8": _fast(slowest=2.0), "int8-block": _fast(slowest=2.5, agreement=0.985)}
    choice = host_choice(m, "cpu", measured)
    assert choice.variant == "int8-block" and choice.needs is None
    assert choice.reason == (
        "fastest faithful variant on this host: 2.50× the float path at its slowest shape, 98.5% agreement with "
        "fp32 on 200 texts (on this host)"
    )
    at_bound = {"int8": _fast(slowest=MIN_SPEEDUP, agreement=0.98, n=100)}
    assert host_choice(m, "cpu", at_bound).variant == "int8"
    recorded_only = {"int8": _fast(n=0, agreement_source="recorded")}
    assert host_choice(m, "cpu", recorded_only).reason.endswith(
        "99.0% agreement with fp32 on the recorded texts (recorded at export; no host-check texts to rerun)"
    )


def test_host_choice_passes_over_slow_unfaithful_and_unmeasured_and_says_why() -> None:
    m = _manifest(fp32={}, int8={"vs_fp32": _agr(1.0)}, int8_block={"vs_fp32": _agr(1.0)})
    slow = {"int8": _fast(slowest=1.04), "int8-block": _fast(slowest=2.0, agreement=0.97, n=100)}
    choice = host_choice(m, "cpu", slow)
    assert choice.variant == "fp32" and choice.needs is None
    assert choice.reason == (
        "the faithful float path (int8-block: 97.0% agreement with fp32 on 100 texts (on this host) < 98%; "
        "int8: 1.04× the float path at its slowest shape (needs ≥ 1.05×))"
    )
    unprobed = host_choice(m, "cpu", {"int8": HostMeasure("int8", {}, {})})
    assert unprobed.reason == (
        "the faithful float path (int8: not probed on this host; int8-block: not probed on this host)"
    )
    none = host_choice(m, "cpu", {"int8": _fast(agreement_source="none"), "int8-block": _fast(slowest=1.0)})
    assert none.reason.startswith(
        "the faithful float path (int8: no agreement with fp32 measured (neither recorded nor rerunnable here); "
    )
    assert host_choice(m, "cuda", {}).reason == (
        "the faithful float path (no faster variant for this provider in the bundle)"
    )


def test_host_choice_asks_for_what_it_needs() -> None:
    m = _manifest(fp32={}, int8={}, int8_block={})
    choice = host_choice(m, "cpu", {"int8": _fast(None), "int8-block": _fast(slowest=1.5)})
    assert (choice.variant, choice.reason, choice.needs) == ("fp32", "int8: agreement not measured yet", "int8")
    partial = {"int8": _fast(0.96, n=40, complete=False)}
    out_of_reach = host_choice(m, "cpu", partial)
    assert out_of_reach.needs is None and out_of_reach.reason == (
        "the faithful float path (int8: agreement with fp32 ≤ 96.0%, stopped after 40 texts (on this host): "
        "cannot reach 98%; int8-block: not probed on this host)"
    )
    counted = {"int8": _fast(0.97, n=64, complete=False, counts=(194, 200))}
    assert "int8: agreement with fp32 ≤ 97.0%, stopped after 64 of 200 texts (on this host): cannot reach 98%" in (
        host_choice(m, "cpu", counted).reason
    )
    within = host_choice(m, "cpu", partial, min_agreement=0.96)
    assert (within.variant, within.reason, within.needs) == ("fp32", "int8: agreement measured in part only", "int8")


def test_host_choice_with_another_engine_under_the_batch_rule() -> None:
    m = _manifest(fp32={}, int8={})
    flips = HostMeasure(OV, {}, {"1 text": 3.0}, 1.0, 0.0, 100, batch_max_dprob=2e-3, batch_label_flips=2)
    int8 = _fast(slowest=2.0)  # the int8 variant's batch dependence is not this rule's business
    assert host_choice(m, "cpu", {OV: flips, "int8": int8}, engines=(OV,)).variant == OV  # ranked first
    choice = host_choice(m, "cpu", {OV: flips, "int8": int8}, engines=(OV,), batch_independent=True)
    assert choice.variant == "int8"
    assert "fp32@openvino-bf16: its answers depend on the batch (2 labels change, max |Δp| 2.0e-03 > 1e-03" in (
        host_choice(m, "cpu", {OV: flips}, engines=(OV,), batch_independent=True).reason
    )
    unknown = HostMeasure(OV, {}, {"1 text": 3.0}, 1.0, 0.0, 100)
    asks = host_choice(m, "cpu", {OV: unknown}, engines=(OV,), batch_independent=True)
    assert (asks.variant, asks.reason, asks.needs) == ("fp32", f"{OV}: batch independence not measured yet", OV)
    steady = HostMeasure(OV, {}, {"1 text": 3.0}, 1.0, 0.0, 100, batch_max_dprob=1e-4, batch_label_flips=0)
    assert host_choice(m, "cpu", {OV: steady}, engines=(OV,), batch_independent=True).variant == OV


def test_host_choice_never_falls_back_to_a_candidate_it_passed_over() -> None:
    # recorded as faithful at export, but slow here: the fallback is the float path, not int8
    m = _manifest(fp32={}, fp16={}, int8={"vs_fp32": _agr(1.0)})
    assert host_choice(m, "cpu", {"int8": _fast(slowest=1.0)}).variant == "fp32"
    assert host_choice(m, "cpu", {}, among={"int8", "fp32"}).variant == "fp32"
    assert host_choice(m, "cuda", {}).variant == "fp16"
    # among narrows the candidates too
    only_block = _manifest(fp32={}, int8={}, int8_block={})
    fast = {"int8": _fast(slowest=3.0), "int8-block": _fast(slowest=2.0)}
    assert host_choice(only_block, "cpu", fast, among={"int8-block", "fp32"}).variant == "int8-block"


def test_the_records_cannot_be_changed_after_the_fact() -> None:
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        Measured(0.9, "eval set", "cpu").agreement = 1.0
    with pytest.raises(FrozenInstanceError):
        HostMeasure("int8", {}, {}).agreement = 1.0


def test_a_variant_the_table_does_not_know_is_read_from_its_cpu_record() -> None:
    m = _manifest(custom={"vs_fp32": _agr(0.99)})
    assert recorded(m.variants["custom"], "cpu") == Measured(0.99, "verification texts", "cpu")
    assert recorded(m.variants["custom"], "openvino") == Measured(0.99, "verification texts", "cpu")


def test_a_candidate_slow_at_one_shape_does_not_hide_the_next_one() -> None:
    m = _manifest(fp32={}, int8={}, int8_block={})
    spiky = HostMeasure("int8", {}, {"1 text": 1.0, "8 texts": 10.0}, 1.0, 0.0, 100)  # ranked first (typical 3.2)
    steady = HostMeasure("int8-block", {}, {"1 text": 2.0, "8 texts": 2.0}, 1.0, 0.0, 100)
    assert host_choice(m, "cpu", {"int8": spiky, "int8-block": steady}).variant == "int8-block"


def test_unprobed_candidates_are_listed_in_the_tables_order() -> None:
    m = _manifest(fp32={}, int8={}, int8_block={})
    choice = host_choice(m, "cpu", {"int8-block": HostMeasure("int8-block", {}, {})})
    assert (
        choice.reason == "the faithful float path (int8: not probed on this host; int8-block: not probed on this host)"
    )


def test_a_refitted_head_without_dev_is_uncalibrated_whatever_train_chose() -> None:
    """A variant whose head was refitted with no dev split has no calibration folded into its graph: its
    probabilities must not be read as the run's (T = 1.3 here), and a refit that chose its own T keeps it."""
    manifest = _manifest(fp32={}, int8={"refit": {"n_dev": 0}}, int8_block={"refit": {"temperature": 1.1}})
    manifest.data["calibration"] = {"method": "temperature", "temperature": 1.3}
    assert manifest.temperature("fp32") == 1.3
    assert manifest.temperature("int8") == 1.0 and manifest.calibration("int8")["method"] == "temperature"
    assert manifest.temperature("int8-block") == 1.1
