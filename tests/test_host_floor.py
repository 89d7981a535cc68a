"""`auto`'s agreement floor on the host: the fidelity rerun's early stop and the rule count the same labels, so
`HostProbe.decide` always ends (a partial result the rule reads as "measure it whole" made it rerun forever)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_sent.contract import Manifest
from edge_sent.fidelity import HostMeasure
from edge_sent.runtime.host import cache as host_cache
from edge_sent.runtime.host.probe import HostProbe, ProbeSettings
from edge_sent.runtime.session import SessionConfig

MAX_BATCHES = 2_000  # far more than any finite decision runs: past it, `decide` is looping


class Looping(Exception):
    pass


class FakeEngine:
    """Answers label 1 for the first `differ` texts and label 0 for the others (fp32 said 0 for all), the texts
    that differ in the first batch; counts the batches it runs and stops a runaway loop."""

    def __init__(self, n: int, differ: int, batch_size: int) -> None:
        self.n, self.differ, self.batch_size, self.batches = n, differ, batch_size, 0
        self.tokenizer = SimpleNamespace(batches=self._batches)

    def encode(self, texts: list[str]) -> list[str]:
        return texts

    def _batches(self, encoded: list[str], batch_size: int) -> Iterator[SimpleNamespace]:
        first = max(self.differ, 1)
        for index in (np.arange(first), np.arange(first, self.n)):
            if len(index):
                yield SimpleNamespace(index=index)

    def run_batch(self, batch: SimpleNamespace) -> list[np.ndarray]:
        self.batches += 1
        if self.batches > MAX_BATCHES:
            raise Looping(f"decide ran {self.batches} fidelity batches")
        probs = np.tile([0.9, 0.1], (len(batch.index), 1))
        probs[batch.index < self.differ] = [0.1, 0.9]
        return [probs]


def _probe(root: Path, floor: float) -> HostProbe:
    variants = {"fp32": {"file": "model.onnx"}, "int8": {"file": "model_quantized.onnx"}}
    (root / "manifest.json").write_text(json.dumps({"variants": variants}), encoding="utf-8")
    manifest = Manifest(root=root, data={"variants": variants})
    quiet = ProbeSettings(notify=lambda message: None)
    return HostProbe(manifest, "cpu", SessionConfig(provider="cpu", threads=1), floor, settings=quiet)


def _decide(probe: HostProbe, n: int, differ: int) -> tuple[str, HostMeasure]:
    """`decide` on fake engines: int8 twice as fast as fp32 at every shape, and `differ` of its `n` host-check
    labels differ from fp32's."""
    engine = FakeEngine(n, differ, 10)
    reference = np.tile([0.9, 0.1], (n, 1))
    probe._host_check = lambda: ([f"t{i}" for i in range(n)], reference, 10)  # type: ignore[method-assign]
    probe._load = lambda variant: engine  # type: ignore[method-assign,assignment,return-value]
    fast = {"1 text": 2.0, "8 texts": 2.0}
    probe.measure_speed = lambda candidates: {  # type: ignore[method-assign]
        name: HostMeasure(name, {"1 text": 1.0, "8 texts": 1.0}, fast) for name in ("fp32", *candidates)
    }
    result = probe.decide(refresh=True)
    return result.choice.variant, result.measured["int8"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_SENT_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("floor", "n", "differ", "taken"),
    [
        (0.9, 300, 30, True),  # exactly 90%: reaches 0.9 (the float early stop said it could not)
        (0.9, 300, 31, False),
        (0.8, 200, 40, True),  # 0.8 with n divisible by 5
        (0.8, 25, 5, True),
        (0.8, 25, 6, False),
        (0.98, 200, 4, True),
        (0.98, 200, 5, False),
    ],
)
def test_decide_ends_and_takes_a_variant_exactly_at_the_floor(
    tmp_path: Path, floor: float, n: int, differ: int, taken: bool
) -> None:
    probe = _probe(tmp_path, floor)
    variant, measured = _decide(probe, n, differ)
    assert variant == ("int8" if taken else "fp32")
    assert host_cache.load_profile(probe.key)["int8"].counts == measured.counts  # the counts are cached too
    if taken:
        assert measured.complete and measured.agreement == pytest.approx(1 - differ / n)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(floor=0.9, n=300, offset=0)
@example(floor=0.8, n=200, offset=0)
@given(
    floor=st.one_of(
        st.integers(0, 100).map(lambda k: k / 100), st.integers(0, 1000).map(lambda k: k / 1000), st.floats(0.0, 1.0)
    ),
    n=st.one_of(st.integers(1, 30).map(lambda k: 50 * k), st.integers(1, 1500)),
    offset=st.integers(-2, 2),
)
def test_the_early_stop_and_the_rule_agree_for_any_floor_and_count(
    tmp_path: Path, floor: float, n: int, offset: int
) -> None:
    """Whatever the floor and the count: `decide` ends, takes the variant exactly when its agreeing labels reach
    the floor (the floor read as the decimal the user wrote), and an early stop is always a refusal. The differing
    labels are drawn around the boundary, where float arithmetic and counting part ways."""
    boundary = n - math.ceil(Fraction(repr(floor)) * n)  # the most labels that may differ
    differ = min(n, max(0, boundary + offset))
    variant, measured = _decide(_probe(tmp_path, floor), n, differ)
    reaches = Fraction(n - differ, n) >= Fraction(repr(floor))
    assert variant == ("int8" if reaches else "fp32"), (floor, n, differ)
    if not measured.complete:
        assert not reaches
