"""The host probe's speed measurement: the inputs it times (one text and a batch at the bundle's typical length),
and each engine's p50 at each, side by side with the float path in rotated blocks of consecutive runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_sent.runtime.engine import Engine
from edge_sent.tokenization import Batch, Tokenizer

PROBE_BATCH = 8
SHAPES = ("1 text", f"{PROBE_BATCH} texts")


@dataclass(frozen=True)
class ProbeSettings:
    """How long the speed probe runs, per candidate and shape: the candidate and the float path in rotated blocks
    of `block` timed runs, each block after `warmup` untimed runs (an engine's first run at a new shape compiles
    it, OpenVINO's notably; its first run after another engine ran finds its threads cold or the other's still
    spinning), at least `min_runs` timed runs each, then more rounds while `budget_s` still holds one, up to
    `max_runs`. The budget is each candidate's own: a second engine's candidates do not shorten the others'."""

    budget_s: float = 0.5
    min_runs: int = 3
    max_runs: int = 18
    block: int = 3
    warmup: int = 1
    clock: Callable[[], float] = field(default=time.perf_counter, compare=False)
    notify: Callable[[str], None] | None = field(default=None, compare=False)  # None: a note on stderr


def probe_batches(tokenizer: Tokenizer, texts: list[str], typical: int) -> dict[str, Batch]:
    """The probe's inputs: the text nearest the typical length alone, and the PROBE_BATCH nearest it together."""
    encoded = tokenizer.encode(texts or ["很好" * max(1, typical // 2)])
    nearest = np.argsort([abs(len(e.ids) - typical) for e in encoded], kind="stable")
    return {
        SHAPES[0]: tokenizer.pad(encoded, nearest[:1]),
        SHAPES[1]: tokenizer.pad(encoded, np.resize(nearest[:PROBE_BATCH], PROBE_BATCH)),
    }


def time_variants(
    engines: dict[str, Engine], batches: dict[str, Batch], settings: ProbeSettings
) -> dict[str, dict[str, float]]:
    """p50 milliseconds of every engine at every shape, in blocks of consecutive runs (as a loaded engine runs:
    one after another) whose untimed head absorbs what the switch costs, rotated so that drift hits all alike."""
    names = list(engines)
    ms: dict[str, dict[str, float]] = {name: {} for name in names}
    clock = settings.clock
    for shape, batch in batches.items():
        feeds = batch.feeds()
        samples: dict[str, list[float]] = {name: [] for name in names}
        started, rounds, last_round = clock(), 0, 0.0
        while len(samples[names[0]]) < settings.min_runs or (  # then only a round the budget still holds
            len(samples[names[0]]) < settings.max_runs and clock() - started + last_round <= settings.budget_s
        ):
            round_started = clock()
            for name in names[rounds % len(names) :] + names[: rounds % len(names)]:
                for _ in range(settings.warmup):  # untimed: a new shape's compile, the switch from the other engine
                    engines[name].run(feeds)
                for _ in range(settings.block):
                    begun = clock()
                    engines[name].run(feeds)
                    samples[name].append(clock() - begun)
            rounds, last_round = rounds + 1, clock() - round_started
        for name in names:
            ms[name][shape] = float(np.median(samples[name])) * 1000
    return ms
