"""[CLS] (or mean) feature extraction: the frozen encoder runs once per distinct text, cached on disk.

The cache key covers the encoder identity (weights hash, revision), the tokenizer file's hash, max
length, pooling and the texts; an entry is a `.npy` plus a `.json` holding its sha256, both written
atomically (temp file + rename). A corrupt or truncated entry fails its check and is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_sent.contract import sha256_file
from edge_sent.progress import progress_bar
from edge_sent.tokenization import Batch, Encoded, Tokenizer
from edge_sent.train.encoders import LoadedEncoder
from edge_sent.train.model import PooledEncoder


@dataclass(frozen=True)
class Features:
    texts: list[str]  # distinct texts, in order of first appearance
    vectors: np.ndarray  # (len(texts), hidden) float32
    cache: str  # "hit" | "miss"
    seconds: float
    truncated: int  # distinct texts cut by max_length
    key: str

    def rows(self, texts: list[str]) -> np.ndarray:
        position = {t: i for i, t in enumerate(self.texts)}
        return self.vectors[[position[t] for t in texts]]


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("EDGE_SENT_CACHE", user_cache_dir("edge-sent"))) / "features"


def cache_key(encoder: LoadedEncoder, max_length: int, pooling: str, texts: list[str]) -> str:
    digest = hashlib.sha256()
    header = {
        "identity": encoder.identity,
        "revision": encoder.revision,
        "tokenizer": sha256_file(encoder.tokenizer_file),
        "max_length": max_length,
        "pooling": pooling,
        "n": len(texts),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cached(cache_dir: Path, key: str, n: int) -> np.ndarray | None:
    """The cached vectors, or None when the entry is absent, corrupt or truncated."""
    data, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    try:
        info = json.loads(meta.read_text())
        if sha256_file(data) != info["sha256"]:
            return None
        vectors = np.load(data, allow_pickle=False)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    if vectors.ndim != 2 or vectors.shape[0] != n:
        return None
    return vectors


def store_cached(cache_dir: Path, key: str, vectors: np.ndarray) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = cache_dir / f"{key}.npy"
    _atomic_write(data, lambda h: np.save(h, vectors, allow_pickle=False))
    meta = json.dumps({"sha256": sha256_file(data), "shape": list(vectors.shape)}).encode()
    _atomic_write(cache_dir / f"{key}.json", lambda h: h.write(meta))


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
) -> np.ndarray:
    vectors: np.ndarray | None = None
    with progress_bar(progress) as bar, torch.inference_mode():
        task = bar.add_task("encoding texts", total=len(encoded))
        for batch in tokenizer.batches(encoded, batch_size):
            out = run_encoder(model, batch)
            if vectors is None:
                vectors = np.zeros((len(encoded), out.shape[1]), dtype=np.float32)
            vectors[batch.index] = out
            bar.advance(task, len(batch.index))
    assert vectors is not None
    return vectors


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
    distinct = list(dict.fromkeys(texts))
    tokenizer = Tokenizer(encoder.tokenizer_file, max_length)
    encoded = tokenizer.encode(distinct)
    truncated = sum(e.truncated for e in encoded)
    key = cache_key(encoder, max_length, pooling, distinct)
    start = time.perf_counter()
    cached = load_cached(cache_dir, key, len(distinct)) if cache_dir else None
    if cached is not None:
        return Features(distinct, cached, "hit", time.perf_counter() - start, truncated, key)
    model = PooledEncoder(encoder.model, pooling).eval()
    vectors = encode_texts(model, tokenizer, encoded, batch_size, progress)
    if cache_dir:
        store_cached(cache_dir, key, vectors)
    return Features(distinct, vectors, "miss", time.perf_counter() - start, truncated, key)
