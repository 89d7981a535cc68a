"""The torch model as trained: frozen encoder -> pooling ([CLS] row or masked mean) -> linear head."""

from __future__ import annotations

import torch
from torch import nn

from edge_sent.calibration import LogitMap


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class PooledEncoder(nn.Module):
    """Encoder + pooling: what feature extraction runs, once per distinct text."""

    def __init__(self, encoder: nn.Module, pooling: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return pool(out.last_hidden_state, attention_mask, self.pooling)


class SentimentModel(nn.Module):
    """Encoder + pooling + head in one module: what export traces into ONE graph.

    `calibration` (train's choice) maps the logits before the softmax: a temperature is a Div node (the argmax is
    unchanged), vector scaling Mul and Add nodes; so the logits and probabilities of every variant and runtime are
    the calibrated ones."""

    def __init__(self, encoder: nn.Module, pooling: str, head: nn.Linear, calibration: LogitMap | None = None) -> None:
        super().__init__()
        calibration = calibration or LogitMap()
        if calibration.method == "temperature" and not calibration.temperature > 0:
            raise ValueError(f"temperature must be positive, got {calibration.temperature}")
        self.features = PooledEncoder(encoder, pooling)
        self.head = head
        self.temperature = calibration.temperature if calibration.method == "temperature" else 1.0
        vector = calibration.method == "vector"
        self.register_buffer("calibration_scale", torch.tensor(calibration.scale) if vector else None)
        self.register_buffer("calibration_bias", torch.tensor(calibration.bias) if vector else None)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(self.features(input_ids, attention_mask, token_type_ids))
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.calibration_scale is not None and self.calibration_bias is not None:
            logits = logits * self.calibration_scale + self.calibration_bias
        return logits, torch.softmax(logits, dim=-1)
