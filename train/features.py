"""[CLS] (or mean) feature extraction: the frozen encoder runs once per distinct text, stored per text.

A run looks up every distinct text in the feature store (train/feature_store.py: one SQLite database in
the cache dir) under a namespace of (encoder identity and revision, tokenizer file hash, max length,
pooling), encodes only the texts the store lacks, and writes their vectors batch by batch (one
transaction per encoder batch, so a killed run keeps what it finished). `--limit`, new rows, other
splits and other head settings reuse what is there. A stored vector equals a fresh computation up to
float32 rounding: batches are padded to their longest text, so a text encoded next to other texts may
differ in the last bits.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_sent.contract import sha256_file
from edge_sent.progress import progress_bar
from edge_sent.tokenization import Batch, Encoded, Tokenizer
from edge_sent.train.encoders import LoadedEncoder
from edge_sent.train.feature_store import FeatureStore, text_key
from edge_sent.train.model import PooledEncoder
from edge_sent.user_cache import cache_root

NAMESPACE_FORMAT = "edge-sent features v1 float32"

OnBatch = Callable[[np.ndarray, np.ndarray], None]  # (positions in the encoded list, their vectors)


@dataclass(frozen=True)
class Features:
    texts: list[str]  # distinct texts, in order of first appearance
    vectors: np.ndarray  # (len(texts), hidden) float32
    encoded: int  # distinct texts the encoder ran on
    reused: int  # distinct texts read from the store
    rejected: int  # store rows that failed their check (recomputed, never used)
    store: Path | None  # the store's database file; None with --no-cache
    seconds: float
    truncated: int  # distinct texts cut by max_length

    def rows(self, texts: list[str]) -> np.ndarray:
        position = {t: i for i, t in enumerate(self.texts)}
        return self.vectors[[position[t] for t in texts]]

    def cache_report(self) -> dict[str, object]:
        """report.json's `feature_cache`: texts encoded vs reused, rows rejected, the store."""
        store = str(self.store) if self.store else None
        return {"encoded": self.encoded, "reused": self.reused, "rejected": self.rejected, "store": store}


def default_cache_dir() -> Path:
    return cache_root() / "features"


def namespace(encoder: LoadedEncoder, max_length: int, pooling: str) -> bytes:
    """What a stored vector depends on besides its text: encoder, tokenizer, max length, pooling."""
    header = {
        "format": NAMESPACE_FORMAT,
        "identity": encoder.identity,
        "revision": encoder.revision,
        "tokenizer": sha256_file(encoder.tokenizer_file),
        "max_length": max_length,
        "pooling": pooling,
    }
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).digest()


def run_encoder(model: PooledEncoder, batch: Batch) -> np.ndarray:
    """The single place the encoder runs (tests count calls here)."""
    feeds = {name: torch.from_numpy(value) for name, value in batch.feeds().items()}
    return model(**feeds).float().numpy()


def encode_texts(
    model: PooledEncoder,
    tokenizer: Tokenizer,
    encoded: list[Encoded],
    batch_size: int = 32,
    progress: bool = True,
    on_batch: OnBatch | None = None,
) -> np.ndarray:
    """Vectors of `encoded` (in its order); `on_batch` sees each batch as soon as it is computed."""
    vectors: np.ndarray | None = None
    with progress_bar(progress) as bar, torch.inference_mode():
        task = bar.add_task("encoding texts", total=len(encoded))
        for batch in tokenizer.batches(encoded, batch_size):
            out = run_encoder(model, batch)
            if vectors is None:
                vectors = np.zeros((len(encoded), out.shape[1]), dtype=np.float32)
            vectors[batch.index] = out
            if on_batch is not None:
                on_batch(batch.index, out)
            bar.advance(task, len(batch.index))
    assert vectors is not None
    return vectors


def _encode_missing(
    encoder: LoadedEncoder,
    pooling: str,
    tokenizer: Tokenizer,
    todo: list[Encoded],
    batch_size: int,
    progress: bool,
    on_batch: OnBatch | None,
) -> np.ndarray:
    if not todo:
        return np.zeros((0, encoder.hidden_size), dtype=np.float32)
    model = PooledEncoder(encoder.model, pooling).eval()
    return encode_texts(model, tokenizer, todo, batch_size, progress, on_batch)


def extract_features(
    encoder: LoadedEncoder,
    texts: list[str],
    *,
    max_length: int,
    pooling: str,
    cache_dir: Path | None,
    batch_size: int = 32,
    progress: bool = True,
) -> Features:
    """Vectors of the distinct `texts`: read from the store in `cache_dir` where it holds them, the rest
    encoded (and stored). `cache_dir=None`: no store, every distinct text is encoded."""
    distinct = list(dict.fromkeys(texts))
    tokenizer = Tokenizer(encoder.tokenizer_file, max_length)
    encoded = tokenizer.encode(distinct)
    truncated = sum(e.truncated for e in encoded)
    start = time.perf_counter()
    if cache_dir is None:
        vectors = _encode_missing(encoder, pooling, tokenizer, encoded, batch_size, progress, None)
        return Features(distinct, vectors, len(distinct), 0, 0, None, time.perf_counter() - start, truncated)
    space = namespace(encoder, max_length, pooling)
    keys = [text_key(space, text) for text in distinct]
    vectors = np.zeros((len(distinct), encoder.hidden_size), dtype=np.float32)
    with FeatureStore(cache_dir) as store:
        lookup = store.get(keys, encoder.hidden_size)
        for i, vector in lookup.found.items():
            vectors[i] = vector
        missing = [i for i in range(len(distinct)) if i not in lookup.found]

        def write(index: np.ndarray, out: np.ndarray) -> None:  # one transaction per encoder batch
            store.put([keys[missing[j]] for j in index], out)

        todo = [encoded[i] for i in missing]
        vectors[missing] = _encode_missing(encoder, pooling, tokenizer, todo, batch_size, progress, write)
    reused = len(distinct) - len(missing)
    seconds = time.perf_counter() - start
    return Features(distinct, vectors, len(missing), reused, lookup.rejected, store.path, seconds, truncated)
