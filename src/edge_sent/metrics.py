"""Classification metrics with numpy only (used by `train` reports and by `edge-sent eval`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows are true labels, columns predicted labels."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def label_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each label (0 where undefined) from a confusion matrix."""
    tp = np.diag(matrix).astype(np.float64)
    precision = np.divide(tp, matrix.sum(axis=0), out=np.zeros_like(tp), where=matrix.sum(axis=0) > 0)
    recall = np.divide(tp, matrix.sum(axis=1), out=np.zeros_like(tp), where=matrix.sum(axis=1) > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def macro_f1(matrix: np.ndarray) -> float:
    return float(label_scores(matrix)[2].mean())


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    matrix = confusion(y_true, y_pred, len(labels))
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "macro_f1": macro_f1(matrix),
        "labels": list(labels),
        "confusion": matrix.tolist(),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion: sound near 0 and 1, where agreement lives."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def agreement(reference_probs: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """A variant's answers against the reference's (fp32) on the same texts: label agreement with its count and
    Wilson interval, and the probability deltas."""
    delta = np.abs(reference_probs - probs)
    same = int((reference_probs.argmax(axis=1) == probs.argmax(axis=1)).sum())
    n = len(probs)
    low, high = wilson_interval(same, n)
    return {
        "label_agreement": same / n if n else 0.0,
        "max_abs_dprob": float(delta.max()) if n else 0.0,
        "mean_abs_dprob": float(delta.mean()) if n else 0.0,
        "n_texts": n,
        "ci95": [round(low, 4), round(high, 4)],
    }
