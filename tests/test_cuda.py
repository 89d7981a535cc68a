"""CUDA path (fp16 variant, IO binding). Skips with the reason when this onnxruntime build or machine
has no CUDA (CI never has a GPU)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edge_sent.runtime import Classifier

pytestmark = pytest.mark.cuda


def _cuda_usable() -> str | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime build without CUDAExecutionProvider (install the gpu extra on a GPU machine)"
    return None


@pytest.mark.skipif(_cuda_usable() is not None, reason=str(_cuda_usable()))
def test_fp16_on_cuda_matches_fp32(tiny_bundle):
    gpu = Classifier.load(tiny_bundle, provider="cuda", strict=True)
    assert gpu.variant == "fp16" and gpu.providers[0] == "CUDAExecutionProvider"
    cpu = Classifier.load(tiny_bundle, variant="fp32", provider="cpu")
    texts = ["很好", "太差了，再也不来", "房间一般，早餐丰富"] * 5
    a = np.array([[p.probabilities[lab] for lab in gpu.labels] for p in gpu.predict(texts)])
    b = np.array([[p.probabilities[lab] for lab in cpu.labels] for p in cpu.predict(texts)])
    recorded = gpu.manifest.variants["fp16"]["vs_fp32"]["max_abs_dprob"]  # fp16 measured on CPU at export
    assert np.abs(a - b).max() <= 2 * recorded + 0.01
