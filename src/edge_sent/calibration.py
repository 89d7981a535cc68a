"""Calibrated probabilities with numpy only: the expected calibration error, and the maps that train may fold into
the graph before its softmax.

`train` cross-validates the candidate maps on the dev split (`choose`, in `calibration_choice`): none, one
temperature T (logits / T; never changes which label is largest) and vector scaling (logits × scale + bias per
label, which can move the decision threshold). `export` puts the chosen map into the graph, so every variant and
every runtime gives the calibrated probabilities. `eval --report` draws the reliability diagram from `reliability`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 15
T_RANGE = (0.01, 100.0)  # a head at chance wants T -> infinity (uniform answers): the search stops at the bound
VECTOR_RIDGE = 1e-3


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


def fit_vector(logits: np.ndarray, labels: np.ndarray, ridge: float = VECTOR_RIDGE, iterations: int = 50) -> LogitMap:
    """Vector scaling: the per-label scale a and bias b that minimise `nll` of logits × a + b, plus
    ridge / 2 × (|a - 1|² + |b|²) (it fixes the common shift of b, and keeps a small dev split from overfitting).
    The objective is convex in (a, b): damped Newton steps."""
    if len(logits) == 0:
        raise ValueError("no logits to fit a vector scaling on")
    z = np.asarray(logits, dtype=np.float64)
    n, k = z.shape
    onehot = np.eye(k)[np.asarray(labels, dtype=np.int64)]
    theta = np.concatenate([np.ones(k), np.zeros(k)])

    def objective(t: np.ndarray) -> float:
        return nll(z * t[:k] + t[k:], labels) + ridge / 2 * float(((t[:k] - 1) ** 2).sum() + (t[k:] ** 2).sum())

    current = objective(theta)
    for _ in range(iterations):
        p = softmax(z * theta[:k] + theta[k:])
        r = p - onehot
        grad = np.concatenate([(r * z).mean(axis=0), r.mean(axis=0)]) + ridge * (theta - np.repeat([1.0, 0.0], k))
        w = p[:, :, None] * (np.eye(k)[None] - p[:, None, :])  # d softmax / d logits, per text
        h_ab = np.einsum("ik,ikl->kl", z, w) / n
        hessian = np.block([[np.einsum("ik,ikl,il->kl", z, w, z) / n, h_ab], [h_ab.T, w.mean(axis=0)]])
        step = np.linalg.solve(hessian + ridge * np.eye(2 * k), grad)
        t, trial, value = 1.0, theta - step, objective(theta - step)
        while value > current and t > 1e-6:
            t /= 2
            trial = theta - t * step
            value = objective(trial)
        if value > current:
            break
        theta, improved, current = trial, current - value, value
        if improved < 1e-12:
            break
    return LogitMap("vector", scale=tuple(float(v) for v in theta[:k]), bias=tuple(float(v) for v in theta[k:]))


@dataclass(frozen=True)
class LogitMap:
    """What the graph does to the head's logits before its softmax. `temperature`: logits / T (a Div node; never
    changes a label); `vector`: logits × scale + bias, one scale and one bias per label (Mul and Add nodes; can move
    the decision threshold); `none`: nothing."""

    method: str = "none"
    temperature: float = 1.0
    scale: tuple[float, ...] = ()
    bias: tuple[float, ...] = ()

    @property
    def is_identity(self) -> bool:
        return self.method not in ("temperature", "vector") or (self.method == "temperature" and self.temperature == 1)

    @property
    def in_graph(self) -> str | None:
        """How the exported graph applies it (the manifest's `calibration.applied`); None for the identity."""
        if self.is_identity:
            return None
        if self.method == "vector":
            return "logits × scale + bias (one per label) in the graph, before the softmax"
        return "logits / temperature in the graph, before the softmax"

    def describe(self) -> str:
        if self.method == "vector":
            scale, bias = ", ".join(f"{v:.3f}" for v in self.scale), ", ".join(f"{v:+.3f}" for v in self.bias)
            return f"vector scaling: logits × ({scale}) + ({bias})"
        return "none (T = 1)" if self.is_identity else f"temperature: logits / {self.temperature:.4f}"

    def apply(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "vector":
            return z * np.asarray(self.scale) + np.asarray(self.bias)
        return z / self.temperature if self.method == "temperature" else z

    def invert(self, logits: np.ndarray) -> np.ndarray:
        """The head's own logits from the calibrated ones (what `eval --report` draws as "before")."""
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "vector":
            return (z - np.asarray(self.bias)) / np.asarray(self.scale)
        return z * self.temperature if self.method == "temperature" else z

    def fold(self, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The linear head (x @ weight.T + bias) whose logits are this map applied to the given head's."""
        if self.method == "vector":
            scale = np.asarray(self.scale, dtype=weight.dtype)
            return weight * scale[:, None], bias * scale + np.asarray(self.bias, dtype=bias.dtype)
        t = self.temperature if self.method == "temperature" else 1.0
        return weight / t, bias / t

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"method": self.method, "temperature": self.temperature}
        if self.method == "vector":
            record |= {"scale": list(self.scale), "bias": list(self.bias)}
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any] | None) -> LogitMap:
        """The map a calibration record describes (train's, the manifest's, a refit's); records written before
        vector scaling existed say `method: temperature` (T = 1.0 when nothing was fitted)."""
        record = record or {}
        method = record.get("method")
        if method == "vector":
            return cls("vector", scale=tuple(map(float, record["scale"])), bias=tuple(map(float, record["bias"])))
        if method == "temperature" or record.get("temperature") not in (None, 1.0):
            return cls("temperature", temperature=float(record.get("temperature") or 1.0))
        return cls()


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


def ece_if_calibrated(probs: np.ndarray, draws: int = 100, seed: int = 0) -> float:
    """The ECE these probabilities would show if they were perfectly calibrated: the mean over `draws` label sets
    drawn from the probabilities themselves. A finite sample's ECE is never 0 (about 0.027 for 1,200 texts of a
    binary head, 0.05 for 250): an ECE near this figure is as calibrated as the texts can tell."""
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(axis=1)
    errors = []
    for _ in range(draws):
        drawn = (rng.random((len(probs), 1)) > cumulative).sum(axis=1).clip(0, probs.shape[1] - 1)
        errors.append(ece(probs, drawn))
    return float(np.mean(errors)) if errors else 0.0


def summary(logits: np.ndarray, labels: np.ndarray, chosen: LogitMap) -> dict[str, Any]:
    """ECE and NLL of the same logits before (the raw softmax) and after the `chosen` map (and the accuracy, which
    vector scaling can change)."""
    after = chosen.apply(logits)
    record = {
        "n": len(logits),
        "ece_before": round(ece(softmax(logits), labels), 5),
        "ece_after": round(ece(softmax(after), labels), 5),
        "nll_before": round(nll(logits, labels), 5),
        "nll_after": round(nll(after, labels), 5),
        "ece_if_calibrated": round(ece_if_calibrated(softmax(after)), 5),
    }
    if chosen.method == "vector":
        record["accuracy_before"] = round(float((np.argmax(logits, axis=1) == labels).mean()), 5)
        record["accuracy_after"] = round(float((after.argmax(axis=1) == labels).mean()), 5)
    return record
