"""Run a graph over texts and collect named outputs, on any provider: the export's measurements.

Torch-free, so the export can run it in a second interpreter that has another onnxruntime build (the
OpenVINO one) and record what *that* runtime produces, instead of pretending the CPU build measured it:

    python -m edge_sent.runtime.measure REQUEST.json   # writes the .npz the request names, prints a JSON line
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_sent.errors import EdgeSentError
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.session import SessionConfig
from edge_sent.tokenization import Tokenizer


@dataclass(frozen=True)
class MeasureRequest:
    model: str
    tokenizer: str
    max_length: int
    texts: list[str]
    outputs: tuple[str, ...] = ("probabilities",)
    provider: str = "cpu"
    precision: str = "auto"
    batch_size: int = 32
    threads: int | None = None
    out: str = ""


def run_outputs(request: MeasureRequest) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The requested outputs for every text, in input order, plus what actually ran them."""
    config = SessionConfig(provider=request.provider, threads=request.threads, strict=True, precision=request.precision)
    engine = Engine(Path(request.model), Tokenizer(Path(request.tokenizer), request.max_length), config)
    engine.require_outputs(*request.outputs)
    results = engine.run_texts(request.texts, request.batch_size, request.outputs)
    info = {"providers": engine.providers, "precision": engine.precision, "onnxruntime": ort.__version__}
    return results.values, info


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edge_sent.runtime.measure REQUEST.json", file=sys.stderr)
        return 2
    try:
        raw = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        raw["outputs"] = tuple(raw.get("outputs", ("probabilities",)))
        request = MeasureRequest(**raw)
        results, info = run_outputs(request)
    except EdgeSentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    np.savez(request.out, **results)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    print(json.dumps(info | {"request": {k: v for k, v in asdict(request).items() if k != "texts"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
