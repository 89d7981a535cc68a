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

import numpy as np
import onnxruntime as ort
from edge_sent.runtime.session import SessionConfig, create_session, resolve_precision, resolve_provider
from edge_sent.runtime.tokenize import TextEncoder

from edge_sent.errors import EdgeSentError


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


def run_outputs(request: MeasureRequest) -> tuple[dict[str, np.ndarray], dict]:
    """The requested outputs for every text, in input order, plus what actually ran them."""
    provider = resolve_provider(request.provider)
    config = SessionConfig(provider=provider, threads=request.threads, strict=True, precision=request.precision)
    session = create_session(Path(request.model), provider, config)
    encoder = TextEncoder(Path(request.tokenizer), request.max_length)
    encoded = encoder.encode(request.texts)
    results: dict[str, np.ndarray] = {}
    for batch in encoder.batches(encoded, request.batch_size):
        for name, value in zip(request.outputs, session.run(list(request.outputs), batch.feeds()), strict=True):
            if name not in results:
                results[name] = np.zeros((len(encoded), *value.shape[1:]), dtype=np.float32)
            results[name][batch.index] = value.astype(np.float32)
    info = {
        "providers": session.get_providers(),
        "precision": resolve_precision(provider, request.precision),
        "onnxruntime": ort.__version__,
    }
    return results, info


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
    np.savez(request.out, **results)
    print(json.dumps(info | {"request": {k: v for k, v in asdict(request).items() if k != "texts"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
