"""The bundle's host-check file: texts and fp32's probabilities for each, as the export computed them.

`auto` reruns the quantized variants on these texts on the machine that runs the bundle and compares their
answers with fp32's recorded ones (`edge_sent.runtime.host.probe`); the export writes the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_sent.contract import Manifest
from edge_sent.errors import BundleError
from edge_sent.integrity import check_file


def read_host_check(manifest: Manifest) -> tuple[list[str], np.ndarray]:
    """The host-check texts and their fp32 probabilities (the file checked against its sha256 first)."""
    record = manifest.host_check
    if record is None:
        raise BundleError(f"bundle {manifest.root} has no host-check texts (exported before edge-sent recorded them)")
    path = check_file(manifest, record.file)
    texts, probs = [], []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(str(row["text"]))
            probs.append([float(p) for p in row["fp32"]])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: malformed ({exc})") from None
    if len(texts) != record.n_texts or any(len(p) != len(manifest.labels) for p in probs):
        raise BundleError(f"{path}: does not match the manifest (texts or labels)")
    return texts, np.asarray(probs, dtype=np.float32)


def write_host_check(path: Path, texts: list[str], probs: np.ndarray) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for text, row in zip(texts, probs.astype(np.float32), strict=True):
            handle.write(json.dumps({"text": text, "fp32": [float(p) for p in row]}, ensure_ascii=False) + "\n")
