"""`auto` decided on the machine that runs the bundle: a short speed probe and a fidelity rerun, cached per host.

Speed: each candidate and the float path run side by side (rotated blocks of consecutive runs, p50) at two
shapes, one text and a batch of `PROBE_BATCH` texts, both at the bundle's typical length (the median token count
of its host-check texts). Fidelity: the candidate reruns the bundle's host-check texts here and is compared with the
fp32 probabilities the export recorded for them; measured lazily, fastest candidate first, only for candidates
that beat the float path. The rule is `edge_sent.fidelity.host_choice`; the cache `cache`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_sent.contract import TOKENIZER, Manifest
from edge_sent.errors import EdgeSentError
from edge_sent.fidelity import (
    MIN_AGREEMENT,
    Choice,
    HostChoice,
    HostMeasure,
    agreeing_needed,
    auto_choice,
    host_candidates,
    host_choice,
    recorded,
)
from edge_sent.host_check import read_host_check
from edge_sent.integrity import check_file
from edge_sent.metrics import agreement
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.host import cache as host_cache
from edge_sent.runtime.host.candidates import batch_dependence, engine_candidates, engine_versions, load_candidate
from edge_sent.runtime.host.timing import ProbeSettings, probe_batches, time_variants
from edge_sent.runtime.session import SessionConfig, physical_cores, resolve_precision
from edge_sent.tokenization import Tokenizer
from edge_sent.variants import float_path

PROBE_ENV = "EDGE_SENT_PROBE"  # "0": never probe, `auto` uses the export's recorded ranking


def probing_enabled(probe: bool | None = None) -> bool:
    """An explicit choice wins; else the environment (`EDGE_SENT_PROBE=0` turns probing off)."""
    if probe is not None:
        return probe
    return os.environ.get(PROBE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class HostResult:
    """What `auto` chose on this host, from which measurements, and what probing cost (0 when cached)."""

    choice: Choice
    measured: dict[str, HostMeasure]
    probe_s: float
    cache_file: Path | None
    probed: bool


def _stderr_note(message: str) -> None:
    sys.stderr.write(f"edge-sent: {message}\n")
    sys.stderr.flush()


def measure_agreement(
    engine: Engine, texts: list[str], reference: np.ndarray, batch_size: int, floor: float = 0.0
) -> dict[str, Any]:
    """The variant's answers on the host-check texts here against fp32's recorded ones, in length-sorted batches
    (the export's batching). Stops as soon as more labels differ than `floor` allows over all the texts (the
    variant can no longer reach it): then `complete` is False and `label_agreement` is the best it could reach."""
    encoded = engine.encode(texts)
    n = len(texts)
    allowed = n - agreeing_needed(floor, n)  # differing labels the floor allows (integers: the rule counts alike)
    probs = np.zeros_like(reference)
    seen = np.zeros(len(texts), dtype=bool)
    for batch in engine.tokenizer.batches(encoded, batch_size):
        probs[batch.index] = engine.run_batch(batch)[0]
        seen[batch.index] = True
        differ = int((probs[seen].argmax(axis=1) != reference[seen].argmax(axis=1)).sum())
        if differ > allowed and not seen.all():
            result = agreement(reference[seen], probs[seen])
            return result | {
                "label_agreement": 1.0 - differ / n,
                "n_texts": int(seen.sum()),
                "complete": False,
                "counts": (n - differ, n),
            }
    same = int((probs.argmax(axis=1) == reference.argmax(axis=1)).sum())
    return agreement(reference, probs) | {"complete": True, "counts": (same, n)}


class HostProbe:
    """One bundle on one host: loads what the rule asks for, measures it, keeps the cache up to date."""

    def __init__(
        self,
        manifest: Manifest,
        provider: str,
        config: SessionConfig,
        min_agreement: float = MIN_AGREEMENT,
        among: set[str] | None = None,
        settings: ProbeSettings | None = None,
        engines: bool = True,
        batch_independent: bool = False,
    ) -> None:
        """`engines`: other engines' candidates too (`engine_candidates`; the string-in graph runs on onnxruntime
        only); `batch_independent`: one of them is taken only if its answers do not depend on the batch (serve)."""
        self.manifest = manifest
        self.provider = provider
        threads = config.threads or physical_cores()
        self.config = replace(config, threads=threads)
        self.min_agreement = min_agreement
        self.among = among
        self.settings = settings or ProbeSettings()
        precision = resolve_precision(provider, config.precision)
        self.key = host_cache.profile_key(manifest, provider, precision, threads)
        self.extra = engine_candidates(manifest, provider, among) if engines else ()
        if self.extra:  # the other engines and their versions: a new one measures again
            self.key = {**self.key, "engines": engine_versions(self.extra)}
        self.batch_independent = batch_independent
        self._engines: dict[str, Engine] = {}
        self._check: tuple[list[str], np.ndarray, int] | None = None

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """Loaded only when something is measured: a load decided from the cache does not pay for it."""
        return Tokenizer(check_file(self.manifest, TOKENIZER), self.manifest.max_length)

    def engine(self, variant: str) -> Engine | None:
        """The session the probe already made for this variant (so that loading it again costs nothing)."""
        return self._engines.get(variant)

    def take(self, variant: str | None) -> Engine | None:
        """The probe's session for `variant` if it still holds one, every other session released first: the
        caller's next session never sits beside the probe's (None: release them all)."""
        engine = self._engines.pop(variant, None) if variant is not None else None
        self._engines.clear()
        return engine

    @cached_property
    def reference(self) -> str:
        """The float path the candidates are timed against (fp16 on CUDA where the bundle has it, else fp32)."""
        return next(n for n in float_path(self.provider) if n in self.manifest.variants)

    def _load(self, variant: str) -> Engine:
        if variant not in self._engines:  # one candidate's session at a time, beside the float path's
            for held in [n for n in self._engines if n != self.reference]:
                del self._engines[held]
            self._engines[variant] = load_candidate(variant, self.manifest, self.tokenizer, self.config)
        return self._engines[variant]

    def _host_check(self) -> tuple[list[str], np.ndarray, int] | None:
        """The host-check texts, fp32's recorded probabilities and the batch they were measured at (None: none)."""
        if self.manifest.host_check is None:
            return None
        if self._check is None:
            self._check = (*read_host_check(self.manifest), self.manifest.host_check.batch_size)
        return self._check

    def _note(self, message: str) -> None:
        (self.settings.notify or _stderr_note)(message)

    def measure_speed(self, candidates: list[str]) -> dict[str, HostMeasure]:
        """Each candidate side by side with the float path, one candidate's session at a time (never all of them
        at once: a device that holds one variant beside fp32 survives its first load), each pair with its own time
        budget (`ProbeSettings`). The table's fastest is timed last: the rule asks for its fidelity first, and its
        session is still there."""
        reference = self.reference
        check = self._host_check()
        typical = self.manifest.host_check.typical_length if self.manifest.host_check else 64
        batches = probe_batches(self.tokenizer, check[0] if check else [], min(typical, self.manifest.max_length))
        measured: dict[str, HostMeasure] = {}
        for name in reversed(candidates):
            ms = time_variants({reference: self._load(reference), name: self._load(name)}, batches, self.settings)
            measured[name] = HostMeasure(name, ms[name], {s: ms[reference][s] / ms[name][s] for s in ms[name]})
            measured.setdefault(reference, HostMeasure(reference, ms[reference], dict.fromkeys(ms[reference], 1.0)))
        return {name: measured[name] for name in (reference, *candidates) if name in measured}

    def measure_fidelity(self, measure: HostMeasure, floor: float = 0.0, every: bool = False) -> HostMeasure:
        """Agreement with fp32's recorded answers (unless already measured whole here); for another engine's
        candidate, its batch dependence too where serve needs it, or with `every` (tune)."""
        check = self._host_check()
        if check is None and measure.variant in self.extra:  # another engine: nothing recorded for it
            return replace(measure, agreement=0.0, agreement_source="none")
        if check is None:  # an older bundle: the export's figure is all there is
            was = recorded(self.manifest.variants[measure.variant], self.provider)
            if was is None:
                return replace(measure, agreement=0.0, agreement_source="none")
            return replace(measure, agreement=was.agreement, agreement_source="recorded")
        texts, reference, batch_size = check
        measured = measure
        if measure.agreement is None or measure.agreement_source != "host" or not measure.complete:
            result = measure_agreement(self._load(measure.variant), texts, reference, batch_size, floor)
            measured = replace(
                measure,
                agreement=result["label_agreement"],
                max_abs_dprob=result["max_abs_dprob"],
                n_texts=result["n_texts"],
                agreement_source="host",
                complete=result["complete"],
                counts=result.get("counts"),
            )
        wanted = every or self.batch_independent  # predict's auto does not need it: a first load skips its cost
        if measure.variant in self.extra and wanted and measured.batch_max_dprob is None:
            dprob, flips = batch_dependence(self._load(measure.variant), texts, batch_size)
            measured = replace(measured, batch_max_dprob=dprob, batch_label_flips=flips)
        return measured

    def _measured_whole(self, measure: HostMeasure) -> bool:
        """Agreement on every host-check text, and another engine's batch dependence (what `tune` shows)."""
        batch = measure.variant not in self.extra or measure.batch_max_dprob is not None
        batch = batch or self.manifest.host_check is None
        return measure.agreement is not None and measure.complete and batch

    def decide(self, refresh: bool = False, every: bool = False) -> HostResult:
        """Decide from the cache, measuring what is missing (all of it with `refresh`; every candidate's fidelity,
        not just the ones the rule needs, with `every`)."""
        candidates = [*host_candidates(self.manifest, self.provider, self.among), *self.extra]
        if not candidates:
            recorded_choice = auto_choice(self.manifest, self.provider, self.min_agreement, self.among)
            return HostResult(recorded_choice, {}, 0.0, None, False)
        measured = {} if refresh else host_cache.load_profile(self.key)
        probed = False
        started = self.settings.clock()
        missing = [n for n in candidates if n not in measured or not measured[n].speedups]
        if missing:  # only what the cache lacks (a server's batch-independent subset leaves the others there)
            self._note(
                f"first use of {self.manifest.root} on this host ({self.provider}): measuring the speed and "
                f"fidelity of {', '.join(missing)} against the float path (once; cached in "
                f"{host_cache.profile_path(self.key).parent})"
            )
            measured = measured | self.measure_speed(missing)
            probed = True
        pending = [n for n in candidates if every and not self._measured_whole(measured[n])]
        floor = 0.0 if every else self.min_agreement  # `tune` measures every text; `auto` stops once out of reach
        while True:
            for name in pending:
                measured[name] = self.measure_fidelity(measured[name], floor, every)
                probed = True
            choice: HostChoice = host_choice(
                self.manifest,
                self.provider,
                measured,
                self.min_agreement,
                self.among,
                self.extra,
                self.batch_independent,
            )
            if choice.needs is None:
                break
            pending = [choice.needs]
        spent = self.settings.clock() - started if probed else 0.0
        path = host_cache.save_profile(self.key, measured, spent) if probed else host_cache.profile_path(self.key)
        return HostResult(choice, measured, spent, path, probed)


def cached_result(
    manifest: Manifest,
    provider: str,
    config: SessionConfig,
    min_agreement: float = MIN_AGREEMENT,
    serving: bool = False,
) -> HostResult | None:
    """What the cache says for this host without measuring anything (`edge-sent info`); None when not probed.
    `serving`: what `serve` decides, among the batch-independent variants only."""
    among = {n for n in manifest.variants if manifest.batch_independent(n)} if serving else None
    try:
        probe = HostProbe(manifest, provider, config, min_agreement, among, batch_independent=serving)
    except EdgeSentError:
        return None
    candidates = [*host_candidates(manifest, provider, among), *probe.extra]
    measured = host_cache.load_profile(probe.key)
    if not candidates or any(n not in measured for n in candidates):
        return None
    choice = host_choice(manifest, provider, measured, min_agreement, among, probe.extra, serving)
    if choice.needs is not None:
        return None
    return HostResult(choice, measured, 0.0, host_cache.profile_path(probe.key), False)
