"""`edge-sent eval`: a bundle on labelled data, and for `--report` every variant of it side by side.

`evaluate` scores one loaded variant: accuracy, per-label precision/recall/F1, the confusion matrix, texts/s, and
its calibration (reliability bins and ECE of the probabilities as exported, and of the same logits before the
bundle's temperature was divided in). `compare_variants` runs every variant of the bundle on the same texts in this
process: agreement with fp32 and the |Δprob| distribution, throughput, and batch-of-one latency measured
interleaved (each text goes through every variant before the next text), so the variants share the machine's state.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_sent import calibration
from edge_sent.contract import OUTPUT_NAMES
from edge_sent.errors import EdgeSentError
from edge_sent.metrics import agreement, classification_report, label_scores
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.host.cpu import cpu_flags

LATENCY_TEXTS = 48  # texts timed one at a time through every variant
DELTA_EDGES = np.concatenate([[0.0], 10.0 ** np.arange(-7, 1)])  # |Δprob| bins: 0, 1e-7, ..., 1


@dataclass(frozen=True)
class LoadOptions:
    """How each variant's session is made (the eval command's --provider, --precision and --threads)."""

    provider: str = "auto"
    precision: str = "auto"
    threads: int | None = None


@dataclass(frozen=True)
class Scored:
    """One variant's answers for every text, in input order."""

    logits: np.ndarray
    probs: np.ndarray
    truncated: int
    seconds: float


def score(clf: Classifier, texts: list[str], batch_size: int) -> Scored:
    start = time.perf_counter()
    out = clf.engine.run_texts(texts, batch_size, outputs=OUTPUT_NAMES)
    seconds = time.perf_counter() - start
    return Scored(out[OUTPUT_NAMES[0]], out[OUTPUT_NAMES[1]], int(out.truncated.sum()), seconds)


def _bins(probs: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    bins = calibration.reliability(probs, y_true)
    return {"ece": round(calibration.expected_error(bins), 5), "bins": [asdict(b) for b in bins]}


def calibration_record(clf: Classifier, scored: Scored, y_true: np.ndarray) -> dict[str, Any]:
    """Reliability of the exported probabilities ("after") and of the head's own ("before": the graph's logits are
    already calibrated, so the calibration is undone: × T for a temperature)."""
    chosen = calibration.LogitMap.from_json(clf.manifest.calibration(clf.variant))
    record: dict[str, Any] = {"temperature": clf.manifest.temperature(clf.variant), "method": chosen.method}
    record["described"] = chosen.describe()
    record["chosen_because"] = clf.manifest.calibration(clf.variant).get("chosen_because")
    record["after"] = _bins(scored.probs, y_true)
    if not chosen.is_identity:
        record["before"] = _bins(calibration.softmax(chosen.invert(scored.logits)), y_true)
    return record


def per_label(matrix: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    precision, recall, f1 = label_scores(matrix)
    support = matrix.sum(axis=1)
    return [
        {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    ]


def evaluate(clf: Classifier, texts: list[str], y_true: np.ndarray, batch_size: int) -> tuple[dict[str, Any], Scored]:
    scored = score(clf, texts, batch_size)
    report = classification_report(y_true, scored.probs.argmax(axis=1), clf.labels)
    report["per_label"] = per_label(np.asarray(report["confusion"]), clf.labels)
    report |= {
        "variant": clf.variant,
        "provider": clf.providers[0],
        "precision": clf.precision,
        "texts_per_s": len(texts) / scored.seconds if scored.seconds else 0.0,
        "seconds": scored.seconds,
        "truncated": scored.truncated,
        "max_length": clf.max_length,
        "random_weights": clf.manifest.random_weights,
        "calibration": calibration_record(clf, scored, y_true),
    }
    return report, scored


def _latencies(classifiers: dict[str, Classifier], texts: list[str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in classifiers}
    for text in texts[:LATENCY_TEXTS]:
        for name, clf in classifiers.items():
            start = time.perf_counter()
            clf.engine.run_texts([text], 1)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _delta_record(reference: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    delta = np.abs(reference - probs).max(axis=1)
    counts, _ = np.histogram(delta, bins=DELTA_EDGES)
    exact = int((delta == 0).sum())
    return {
        "quantiles": {f"p{q}": float(np.percentile(delta, q)) for q in (50, 90, 99)} | {"max": float(delta.max())},
        "zero": exact,
        "histogram": {"edges": DELTA_EDGES.tolist(), "counts": [int(counts[0]) - exact, *map(int, counts[1:])]},
    }


def _load(manifest_root: str, name: str, options: LoadOptions) -> Classifier | str:
    try:
        return Classifier.load(
            manifest_root,
            variant=name,
            provider=options.provider,
            precision=options.precision,
            threads=options.threads,
            probe=False,
        )
    except EdgeSentError as exc:
        return str(exc).splitlines()[0]


def compare_variants(
    clf: Classifier,
    scored_already: Scored,
    texts: list[str],
    y_true: np.ndarray,
    batch_size: int,
    options: LoadOptions,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every variant of the bundle on the same texts: what differs from fp32, and how fast, in this run.
    `scored_already`: `clf`'s own answers for `texts` (evaluate's), not computed again."""
    manifest = clf.manifest
    loaded: dict[str, Classifier] = {}
    skipped: dict[str, str] = {}
    for name in manifest.variants:
        got = clf if name == clf.variant else _load(str(manifest.root), name, options)
        if isinstance(got, str):
            skipped[name] = got
        else:
            loaded[name] = got
    if "fp32" not in loaded:
        raise EdgeSentError(f"--report needs the fp32 variant as the reference, and it did not load: {skipped['fp32']}")
    scored = {clf.variant: scored_already}
    for name, variant in loaded.items():
        if name in scored:
            continue
        if progress:
            progress(f"scoring {len(texts)} texts with {name}")
        scored[name] = score(variant, texts, batch_size)
    latencies = _latencies(loaded, texts)
    reference = scored["fp32"].probs
    rows: dict[str, Any] = {}
    for name, result in scored.items():
        ms = np.asarray(latencies[name])
        file = manifest.files.get(manifest.variant_file(name))
        rows[name] = {
            "accuracy": float((result.probs.argmax(axis=1) == y_true).mean()),
            "vs_fp32": agreement(reference, result.probs),
            "delta": _delta_record(reference, result.probs),
            "texts_per_s": len(texts) / result.seconds if result.seconds else 0.0,
            "latency_ms": {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)} | {"n": len(ms)},
            "bytes": file.bytes if file else None,
        }
    return {
        "variants": rows,
        "skipped": skipped,
        "batch_size": batch_size,
        "latency_texts": min(len(texts), LATENCY_TEXTS),
        "machine": {"onnxruntime": ort.__version__, "machine": platform.machine().lower(), "cpu_flags": cpu_flags()},
    }
