"""Quick latency/throughput measurement of one bundle (torch-free). The full comparison is in benchmarks/.

Variants run in rotated blocks with a pause between blocks (an idle onnxruntime thread pool keeps
spinning after a run and would tax whatever runs next), medians with p90/p99 after warm-up.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_sent import __version__
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE
from edge_sent.runtime.session import resolve_provider
from edge_sent.tokenization import Tokenizer
from edge_sent.variants import VARIANTS


@dataclass(frozen=True)
class BenchConfig:
    variants: tuple[str, ...] = ()
    seq_lengths: tuple[int, ...] = (16, 64, 128)
    batch_size: int = 1
    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    provider: str = "auto"
    precision: str = "auto"  # OpenVINO only
    pause_s: float = 0.2


def synthetic_feeds(batch: int, length: int, tokenizer: Tokenizer, seed: int = 0) -> dict[str, np.ndarray]:
    """`batch` texts of exactly `length` tokens: random ids from the upper 95% of the bundle's vocabulary
    (BERT vocabularies put special and unused tokens first), framed as the tokenizer frames a text."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(tokenizer.vocab_size // 20, tokenizer.vocab_size, size=(batch, length), dtype=np.int64)
    if tokenizer.first_id is not None:
        ids[:, 0] = tokenizer.first_id
    if tokenizer.last_id is not None:
        ids[:, -1] = tokenizer.last_id
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def percentiles(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000
    return {
        "p50_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "runs": len(ms),
    }


Runner = Callable[[dict[str, np.ndarray]], object]


def time_calls(run: Runner, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
    """Seconds of each of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        run(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - start)
    return times


def rotated_blocks(
    runners: dict[str, Runner], feeds: dict[str, np.ndarray], runs: int, warmup: int, pause_s: float
) -> dict[str, list[float]]:
    """At least `runs` timings per runner, in blocks rotated so that each runner goes first once,
    with a pause between blocks."""
    names = list(runners)
    per_block = -(-runs // len(names))
    times: dict[str, list[float]] = {name: [] for name in names}
    for offset in range(len(names)):
        for name in names[offset:] + names[:offset]:
            times[name] += time_calls(runners[name], feeds, per_block, warmup)
            time.sleep(pause_s)
    return times


def run_bench(bundle: str, config: BenchConfig, texts: list[str] | None = None) -> dict[str, Any]:
    from edge_sent.contract import read_manifest

    manifest = read_manifest(bundle)
    provider = resolve_provider(config.provider)
    names = config.variants or tuple(
        v for v in manifest.variants if v not in VARIANTS or VARIANTS[v].runs_on_provider(provider)
    )
    classifiers = {
        v: Classifier.load(
            bundle, variant=v, provider=config.provider, threads=config.threads, precision=config.precision
        )
        for v in names
    }
    tokenizer = next(iter(classifiers.values())).engine.tokenizer
    runners: dict[str, Runner] = {name: clf.run_feeds for name, clf in classifiers.items()}
    latency: dict[str, dict[str, list[float]]] = {v: {} for v in names}
    for length in config.seq_lengths:
        length = min(length, manifest.max_length)
        feeds = synthetic_feeds(config.batch_size, length, tokenizer)
        for name, times in rotated_blocks(runners, feeds, config.runs, config.warmup, config.pause_s).items():
            latency[name].setdefault(str(length), []).extend(times)
    result: dict[str, Any] = {
        "edge_sent_version": __version__,
        "bundle": str(bundle),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "random_weights": manifest.random_weights,
        "batch_size": config.batch_size,
        "threads": config.threads,
        "variants": {},
    }
    for name in names:
        entry: dict[str, Any] = {
            "file_bytes": manifest.files[manifest.variant_file(name)].bytes,
            "provider": classifiers[name].providers[0],
            "precision": classifiers[name].precision,
            "latency": {k: percentiles(v) for k, v in latency[name].items()},
        }
        if texts:
            start = time.perf_counter()
            classifiers[name].predict(texts, batch_size=DEFAULT_BATCH_SIZE)
            seconds = time.perf_counter() - start
            entry["throughput"] = {
                "texts": len(texts),
                "batch_size": DEFAULT_BATCH_SIZE,
                "texts_per_s": len(texts) / seconds,
            }
            time.sleep(config.pause_s)
        result["variants"][name] = entry
    return result
