"""The OpenVINO runtime as a second engine: it reads the bundle's ONNX graph as it is (onnxruntime's contrib
operators included) and compiles it for the CPU, in f32 or in bf16 where the CPU has it.

The `openvino` package (the `openvino` extra) installs beside onnxruntime without replacing its module, so one
environment holds both engines. `OpenVINOEngine` has the `Engine` interface (`encode`, `run`, `run_texts`, ...):
same tokenizer, same batching loop, token ids in, the graph's named outputs out. Compiled models are kept in
OpenVINO's model cache under the edge-sent cache root, so a second load of a bundle skips the compile. Thread-safe:
one infer request per thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.engine import PROBABILITIES, Engine
from edge_sent.runtime.openvino_runtime import runtime_available
from edge_sent.runtime.session import SessionConfig, physical_cores, resolve_precision
from edge_sent.tokenization import Tokenizer
from edge_sent.user_cache import cache_root

ENGINE = "openvino"
HINTS = {"fp32": "f32", "bf16": "bf16"}  # edge-sent's precision names -> OpenVINO's INFERENCE_PRECISION_HINT


def model_cache_dir() -> Path | None:
    """OpenVINO's model cache folder under the edge-sent cache root; None when it cannot be made (no caching)."""
    folder = cache_root() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise EdgeSentError(
            "the OpenVINO engine needs the OpenVINO runtime: pip install 'edge-sent[openvino]' (see docs/openvino.md)"
        ) from None
    return openvino


class OpenVINOEngine(Engine):
    """A bundle graph compiled by the OpenVINO runtime for the CPU; the `Engine` interface."""

    engine = ENGINE

    def __init__(self, model_path: Path, tokenizer: Tokenizer, config: SessionConfig = SessionConfig()) -> None:
        if config.precision not in HINTS:
            raise EdgeSentError(f"the OpenVINO engine computes in {' or '.join(HINTS)}, not {config.precision!r}")
        ov = _import_openvino()
        self.provider = ENGINE
        self.precision = config.precision
        self.tokenizer = tokenizer
        self.model_path = Path(model_path)
        self.version = str(ov.get_version())
        properties: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[config.precision],
            "INFERENCE_NUM_THREADS": config.threads or physical_cores(),
        }
        cache = model_cache_dir()
        if cache is not None:
            properties["CACHE_DIR"] = str(cache)
        started = time.perf_counter()
        try:
            self._compiled = ov.Core().compile_model(str(self.model_path), "CPU", properties)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise EdgeSentError(f"{model_path}: OpenVINO cannot compile it ({str(exc).splitlines()[0]})") from None
        self.compile_s = time.perf_counter() - started  # a load from the model cache is much shorter
        self.output_names = tuple(port.get_any_name() for port in self._compiled.outputs)
        self._input_names = {port.get_any_name() for port in self._compiled.inputs}
        self._local = threading.local()
        self._io_binding = False

    @property
    def providers(self) -> list[str]:
        return [f"OpenVINO {self.version.split('-')[0]} (CPU, {HINTS[self.precision]})"]

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] = (PROBABILITIES,)) -> list[np.ndarray]:
        """One padded batch through the compiled model (one infer request per calling thread)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer({name: value for name, value in feeds.items() if name in self._input_names})
        return [np.array(results[self._compiled.output(name)], copy=True) for name in outputs]


def create_engine(model_path: Path, tokenizer: Tokenizer, config: SessionConfig) -> Engine:
    """The engine for a resolved provider: `openvino` runs on the OpenVINO runtime where it is installed, else on
    onnxruntime's OpenVINO execution provider (an onnxruntime-openvino build); every other provider on onnxruntime."""
    if config.provider == ENGINE and runtime_available():
        return OpenVINOEngine(
            model_path, tokenizer, replace(config, precision=resolve_precision(ENGINE, config.precision))
        )
    return Engine(model_path, tokenizer, config)
