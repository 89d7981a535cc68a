"""Fit the linear head on cached features: cross-entropy, AdamW, mini-batches, early stopping on dev loss.

Features are centred and divided by ONE global scale while training (frozen random encoders give
nearly collapsed [CLS] vectors) and that affine map is folded back into the weights, so the result is a
plain `Linear(hidden, n)` applied to the raw pooled vector. A per-dimension standardisation was tried
and rejected: it up-weights low-variance dimensions, where quantization noise then dominates (on the
real MiniLM encoder dynamic int8 agreed with fp32 on only ~50% of labels with it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    patience: int = 3
    seed: int = 0


@dataclass(frozen=True)
class HeadResult:
    head: nn.Linear
    epochs_run: int
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_labels: int,
    config: HeadConfig,
    x_dev: np.ndarray | None = None,
    y_dev: np.ndarray | None = None,
) -> HeadResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    mean = x_train.mean(axis=0)
    std = np.full(x_train.shape[1], float((x_train - mean).std()) + 1e-6, dtype=np.float64)
    xt = torch.from_numpy(((x_train - mean) / std).astype(np.float32))
    yt = torch.from_numpy(y_train.astype(np.int64))
    has_dev = x_dev is not None and y_dev is not None and len(x_dev) > 0
    if has_dev:
        assert x_dev is not None and y_dev is not None
        xd = torch.from_numpy(((x_dev - mean) / std).astype(np.float32))
        yd = torch.from_numpy(y_dev.astype(np.int64))
    model = nn.Linear(xt.shape[1], num_labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_state, best_loss, best_epoch, bad, history = None, float("inf"), 0, 0, []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
        model.eval()
        row = {"epoch": epoch, "train_loss": _loss(model, xt, yt)}
        monitored = row["train_loss"]
        if has_dev:
            row["dev_loss"] = monitored = _loss(model, xd, yd)
        history.append(row)
        if monitored < best_loss - 1e-6:
            best_state, best_loss, best_epoch, bad = copy.deepcopy(model.state_dict()), monitored, epoch, 0
        else:
            bad += 1
            if has_dev and bad >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    head = nn.Linear(xt.shape[1], num_labels)
    with torch.no_grad():
        scale = torch.from_numpy((1.0 / std).astype(np.float32))
        shift = torch.from_numpy(mean.astype(np.float32))
        head.weight.copy_(model.weight * scale)
        head.bias.copy_(model.bias - (model.weight * scale) @ shift)
    return HeadResult(head.eval(), epoch, best_epoch, history)


def predict_head(head: nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x.astype(np.float32))).numpy()
