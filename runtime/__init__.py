"""Torch-free runtime: onnxruntime, tokenizers, numpy and the standard library only."""

from edge_sent.runtime.classifier import Classifier, Prediction
from edge_sent.runtime.session import ProviderFallbackWarning

__all__ = ["Classifier", "Prediction", "ProviderFallbackWarning"]
