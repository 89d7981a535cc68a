"""Output rows → `[{"label", "score"}, ...]`, best first (TEI's and the Inference API's answer shape)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_sent.runtime.engine import PROBABILITIES

LOGITS = "logits"


def ranked(labels: Sequence[str], scores: np.ndarray, top_k: int | None = None) -> list[dict[str, str | float]]:
    """Every label with its score, highest score first (ties keep the label order), cut to `top_k`."""
    values = [float(s) for s in scores]
    order = sorted(range(len(labels)), key=lambda i: -values[i])
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": values[i]} for i in order]


def transformed(function: str | None, rows: dict[str, np.ndarray]) -> np.ndarray:
    """The Inference API's `function_to_apply`: softmax (default: the graph's probabilities), sigmoid of the
    logits, or the logits themselves (none)."""
    if function in (None, "softmax"):
        return rows[PROBABILITIES]
    logits = rows[LOGITS]
    if function == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))
    return logits


def output_for(function: str | None) -> str:
    """The graph output a `function_to_apply` needs."""
    return PROBABILITIES if function in (None, "softmax") else LOGITS
