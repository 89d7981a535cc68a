"""The one inference engine: an onnxruntime session (created in one place, with one set of options), its
provider and precision, and the bundle's tokenizer.

Public steps, so that callers can split the work (a server tokenizes on arrival and runs batches later):
`encode(texts)` → token ids; `run(feeds, outputs)` → one batch through the graph; `run_texts` is the one
batching loop (length-sorted, padded per batch, results scattered back to input order) used by
`Classifier`, the export's verification, the OpenVINO measurement and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_sent.errors import BundleError
from edge_sent.providers import provider_spec
from edge_sent.runtime.session import SessionConfig, create_session, resolve_precision, resolve_provider
from edge_sent.tokenization import Batch, Encoded, Tokenizer

PROBABILITIES = "probabilities"
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Outputs:
    """Named outputs for every text, in the caller's order, and which texts the max length cut."""

    values: dict[str, np.ndarray]
    truncated: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


class Engine:
    """A graph ready to run: session + provider + precision + tokenizer. Thread-safe after construction."""

    engine = "onnxruntime"  # which runtime computes (OpenVINOEngine: "openvino")

    def __init__(self, model_path: Path, tokenizer: Tokenizer, config: SessionConfig = SessionConfig()) -> None:
        self.provider = resolve_provider(config.provider)
        self.precision = resolve_precision(self.provider, config.precision)
        self.session: ort.InferenceSession = create_session(Path(model_path), self.provider, config)
        self.tokenizer = tokenizer
        self.model_path = Path(model_path)
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        spec = provider_spec(self.provider)
        self._io_binding = spec.gpu and spec.ort_name in self.session.get_providers()  # not after a CPU fallback

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def require_outputs(self, *names: str) -> None:
        missing = [n for n in names if n not in self.output_names]
        if missing:
            raise BundleError(f"{self.model_path}: the graph has no {missing[0]!r} output")

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        return self.tokenizer.encode(texts)

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] = (PROBABILITIES,)) -> list[np.ndarray]:
        """One padded batch through the graph (IO binding on GPU providers)."""
        if not self._io_binding:
            return list(self.session.run(list(outputs), feeds))
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def run_batch(self, batch: Batch, outputs: Sequence[str] = (PROBABILITIES,)) -> list[np.ndarray]:
        return self.run(batch.feeds(), outputs)

    def run_encoded(
        self,
        encoded: Sequence[Encoded],
        batch_size: int = DEFAULT_BATCH_SIZE,
        outputs: Sequence[str] = (PROBABILITIES,),
        order: np.ndarray | None = None,
    ) -> Outputs:
        """The batching loop: batches of `batch_size` (length-sorted unless `order` is given), each padded to
        its longest text; every output scattered back to the caller's order as float32."""
        values: dict[str, np.ndarray] = {}
        truncated = np.zeros(len(encoded), dtype=bool)
        for batch in self.tokenizer.batches(encoded, batch_size, order):
            for name, value in zip(outputs, self.run_batch(batch, outputs), strict=True):
                if name not in values:
                    values[name] = np.zeros((len(encoded), *value.shape[1:]), dtype=np.float32)
                values[name][batch.index] = value
            truncated[batch.index] = batch.truncated
        return Outputs(values, truncated)

    def run_texts(
        self,
        texts: Sequence[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        outputs: Sequence[str] = (PROBABILITIES,),
        order: np.ndarray | None = None,
    ) -> Outputs:
        return self.run_encoded(self.encode(texts), batch_size, outputs, order)
