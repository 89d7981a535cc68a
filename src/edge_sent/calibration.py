"""Calibrated probabilities with numpy only: temperature scaling and the expected calibration error.

`train` fits one temperature T on the dev split's logits (the T that minimises their negative log-likelihood)
and `export` divides the graph's logits by T before its softmax, so every variant and every runtime gives
calibrated probabilities. Dividing by a positive T never changes which label is largest.
`eval --report` draws the reliability diagram from `reliability`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 15
T_RANGE = (0.01, 100.0)  # a head at chance wants T -> infinity (uniform answers): the search stops at the bound


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), np.asarray(labels, dtype=np.int64)]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The T in T_RANGE that minimises `nll`: a golden-section search on log T (NLL is convex in 1/T)."""
    if len(logits) == 0:
        raise ValueError("no logits to fit a temperature on")
    low, high = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((low + high) / 2)


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    n: int
    confidence: float  # mean top probability of the bin's texts (0 when empty)
    accuracy: float  # how many of them were right (0 when empty)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[Bin]:
    """Texts binned by their top probability into `bins` equal-width bins of (lower, upper]."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels, dtype=np.int64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lower, upper in itertools.pairwise(edges):
        inside = (confidence > lower) & (confidence <= upper)
        n = int(inside.sum())
        out.append(
            Bin(
                float(lower),
                float(upper),
                n,
                float(confidence[inside].mean()) if n else 0.0,
                float(correct[inside].mean()) if n else 0.0,
            )
        )
    return out


def expected_error(bins: list[Bin]) -> float:
    """The bins' |accuracy - confidence|, weighted by their share of the texts (0 for no texts)."""
    total = sum(b.n for b in bins)
    return float(sum(b.n / total * abs(b.accuracy - b.confidence) for b in bins)) if total else 0.0


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of `probs` in `bins` equal-width confidence bins."""
    return expected_error(reliability(probs, labels, bins))


def summary(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    """ECE and NLL of the same logits before (T = 1) and after dividing by `temperature`."""
    return {
        "n": len(logits),
        "ece_before": round(ece(softmax(logits), labels), 5),
        "ece_after": round(ece(softmax(np.asarray(logits) / temperature), labels), 5),
        "nll_before": round(nll(logits, labels), 5),
        "nll_after": round(nll(logits, labels, temperature), 5),
    }
