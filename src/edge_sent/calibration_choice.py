"""Which calibration map to fold into the graph, decided on the dev split alone.

A map fitted on the dev split always looks better on that split; whether it helps texts it has not seen is
measured by K-fold cross-validation on dev: fit on K - 1 folds, calibrate the held-out fold, and score the held-out
probabilities of all folds together (ECE and NLL), over a few shuffles. A map is applied only if it lowers the
held-out ECE *and* does not raise the held-out NLL against the raw softmax (the ECE alone rewards a map that
flattens every answer, and with a few hundred texts in 15 bins it is noisy); among those, the one with the lowest
held-out NLL wins (a proper score, and less noisy: it does not take vector scaling where one temperature does as
well). When no map passes, none is applied (T = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_sent import calibration
from edge_sent.calibration import LogitMap

CANDIDATES = ("none", "temperature", "vector")
FOLDS = 5
REPEATS = 4  # shuffles: a 250-text dev split gives noisy held-out ECEs
MIN_TEXTS = 4 * FOLDS  # fewer dev texts than this: no cross-validation, no calibration

FITS: dict[str, Callable[[np.ndarray, np.ndarray], LogitMap]] = {
    "none": lambda logits, labels: LogitMap(),
    "temperature": lambda logits, labels: LogitMap(
        "temperature", temperature=round(calibration.fit_temperature(logits, labels), 6)
    ),
    "vector": calibration.fit_vector,
}


@dataclass(frozen=True)
class Choice:
    chosen: LogitMap
    reason: str
    cross_validation: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> held-out ece, nll
    fitted: dict[str, LogitMap] = field(default_factory=dict)  # every candidate fitted on the whole dev split


def held_out(
    logits: np.ndarray, labels: np.ndarray, method: str, folds: int = FOLDS, repeats: int = REPEATS, seed: int = 0
) -> dict[str, float]:
    """`method`'s held-out ECE and NLL on dev: the mean over `repeats` shuffles of `folds`-fold cross-validation."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    eces, nlls = [], []
    for _ in range(repeats):
        order = rng.permutation(len(logits))
        calibrated = np.empty_like(logits)
        for fold in np.array_split(order, folds):
            rest = np.setdiff1d(order, fold)
            calibrated[fold] = FITS[method](logits[rest], labels[rest]).apply(logits[fold])
        eces.append(calibration.ece(calibration.softmax(calibrated), labels))
        nlls.append(calibration.nll(calibrated, labels))
    return {"ece": round(float(np.mean(eces)), 5), "nll": round(float(np.mean(nlls)), 5)}


def choose(
    logits: np.ndarray, labels: np.ndarray, candidates: tuple[str, ...] = CANDIDATES, force: str | None = None
) -> Choice:
    """Among the candidates that lower the cross-validated ECE without raising the cross-validated NLL against the
    raw softmax, the one with the lowest cross-validated NLL; `none` when no candidate does (or dev is too small
    to tell)."""
    if len(logits) < MIN_TEXTS:
        return Choice(LogitMap(), f"dev has {len(logits)} texts, fewer than {MIN_TEXTS} to cross-validate on")
    names = ["none", *(name for name in candidates if name != "none")]
    if force is not None and force not in names:
        raise ValueError(f"unknown calibration {force!r} (choose from {', '.join(names)})")
    scores = {name: held_out(logits, labels, name) for name in names}
    raw = scores["none"]
    helps = [n for n in names[1:] if scores[n]["ece"] < raw["ece"] and scores[n]["nll"] <= raw["nll"]]
    fitted = {name: FITS[name](logits, labels) for name in names}
    folds = f"{FOLDS}-fold cross-validation on dev, {REPEATS} shuffles"
    figures = "; ".join(
        f"{name} ECE {raw['ece']:.4f} → {scores[name]['ece']:.4f}, NLL {raw['nll']:.4f} → {scores[name]['nll']:.4f}"
        for name in names[1:]
    )
    if force is not None:
        return Choice(
            fitted[force], f"{force}: asked for, not the cross-validated choice ({figures}; {folds})", scores, fitted
        )
    if not helps:
        reason = f"T = 1 kept: no map lowers the held-out ECE without raising the held-out NLL ({figures}; {folds})"
        return Choice(LogitMap(), reason, scores, fitted)
    best = min(helps, key=lambda name: (scores[name]["nll"], names.index(name)))
    reason = f"{best}: the lowest held-out NLL of the maps that lower the held-out ECE ({figures}; {folds})"
    return Choice(fitted[best], reason, scores, fitted)
