"""The string-in graph at run time: texts go into the graph, the tokenizer runs inside it (onnxruntime-extensions).

`StringEngine` has the `Engine` interface that `Classifier` uses (`run_texts`, `providers`, ...); token ids never
leave the graph, so `run_encoded` is refused. Needs the `strings` extra (onnxruntime-extensions); no torch.
NUL characters are passed as U+0001 (see NUL_STANDIN): the token ids are then those of `tokenizer.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.engine import DEFAULT_BATCH_SIZE, PROBABILITIES, Engine, Outputs
from edge_sent.runtime.session import SessionConfig
from edge_sent.tokenization import Encoded, Tokenizer, check_texts

TEXT = "text"
TRUNCATED = "truncated"
# onnxruntime's custom-operator API reads a string up to its first NUL, so the graph never sees what follows one;
# `tokenizers` removes NUL and U+0001 alike (control characters), so U+0001 stands in for it on the way in.
NUL_STANDIN = "\x01"


def extensions_library() -> str:
    """onnxruntime-extensions' custom-op library, or a one-line error saying how to install it."""
    try:
        import onnxruntime_extensions
    except ImportError:
        raise EdgeSentError(
            "the string-in graph needs onnxruntime-extensions (pip install 'edge-sent[strings]', "
            "or pip install onnxruntime-extensions)"
        ) from None
    return str(onnxruntime_extensions.get_library_path())


class StringEngine(Engine):
    """A string-in graph ready to run. `tokenizer` is the bundle's (its max length; the graph tokenizes itself)."""

    def __init__(self, model_path: Path, tokenizer: Tokenizer, config: SessionConfig = SessionConfig()) -> None:
        super().__init__(model_path, tokenizer, replace(config, custom_ops_library=extensions_library()))
        if TEXT not in {i.name for i in self.session.get_inputs()}:
            raise EdgeSentError(f"{model_path}: not a string-in graph (no {TEXT!r} input)")

    def run_encoded(
        self,
        encoded: Sequence[Encoded],
        batch_size: int = DEFAULT_BATCH_SIZE,
        outputs: Sequence[str] = (PROBABILITIES,),
        order: np.ndarray | None = None,
    ) -> Outputs:
        raise EdgeSentError("the string-in graph takes texts, not token ids: call run_texts")

    def run_texts(
        self,
        texts: Sequence[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
        outputs: Sequence[str] = (PROBABILITIES,),
        order: np.ndarray | None = None,
    ) -> Outputs:
        """Batches of `batch_size` texts (sorted by character length unless `order` is given) through the graph;
        outputs scattered back to the caller's order (numeric ones as float32, like `Engine`)."""
        check_texts(texts)
        if batch_size < 1:
            raise EdgeSentError(f"batch size must be at least 1, got {batch_size}")
        if order is None:
            order = np.argsort([len(t) for t in texts], kind="stable")
        values: dict[str, np.ndarray] = {}
        truncated = np.zeros(len(texts), dtype=bool)
        names = [*outputs, TRUNCATED]
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            feeds = {TEXT: np.asarray([texts[i].replace("\0", NUL_STANDIN) for i in index], dtype=object)}
            *results, cut = self.run(feeds, names)
            for name, value in zip(outputs, results, strict=True):
                if name not in values:
                    dtype = value.dtype if value.dtype.kind in "OUi" else np.dtype(np.float32)
                    values[name] = np.zeros((len(texts), *value.shape[1:]), dtype=dtype)
                values[name][index] = value
            truncated[index] = cut
        return Outputs(values, truncated)
