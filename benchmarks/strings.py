"""Extra latency of the string-in graph (tokenizer inside onnxruntime) over the token-id graph (tokenized in Python).

Both sides in one process, on one text of exactly `--seq` tokens ([CLS] and [SEP] included), interleaved run by
run so that machine noise falls on both alike; the median of `--runs` runs each:

* `token-id graph`: what `Classifier` does — the `tokenizers` library in Python, then `session.run`;
* `string-in graph`: `session.run` on the text (onnxruntime-extensions tokenizes inside the graph).

Each also through the runtime's engines (`Engine.run_texts` / `StringEngine.run_texts`, what `Classifier.predict`
calls). Needs a bundle exported with `--with-tokenizer` and the `strings` extra; run it under the shared CPU lock:

    flock /tmp/cpu.lock .venv/bin/python benchmarks/strings.py --bundle B --variant int8 --out benchmarks/strings.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from edge_sent.contract import TOKENIZER, read_manifest
from edge_sent.readers import read_records
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.session import SessionConfig
from edge_sent.runtime.strings import StringEngine
from edge_sent.tokenization import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recorded import portable_path

DATA = Path(__file__).resolve().parents[1] / "data" / "chnsenticorp" / "dev.tsv"


def text_of(tokenizer: Tokenizer, seq: int) -> str:
    """A ChnSentiCorp dev text cut to exactly `seq` tokens (one character is one token in Chinese text)."""
    for record in read_records(DATA, text_field="text_a"):
        if len(tokenizer.encode([record.text])[0].ids) < seq:
            continue
        text = record.text
        while len(tokenizer.encode([text])[0].ids) > seq:
            text = text[:-1]
        if len(tokenizer.encode([text])[0].ids) == seq:
            return text
    raise SystemExit(f"no dev text reaches {seq} tokens")


def interleaved(runs: int, warmup: int, **sides: Callable[[], object]) -> dict[str, float]:
    """Median seconds per side, the sides taking turns run by run."""
    for _ in range(warmup):
        for run in sides.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, run in sides.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    manifest = read_manifest(args.bundle)
    tokenizer = Tokenizer(args.bundle / TOKENIZER, manifest.max_length)
    config = SessionConfig(provider="cpu", threads=args.threads, strict=True)
    token_engine = Engine(args.bundle / manifest.variant_file(args.variant), tokenizer, config)
    string_engine = StringEngine(args.bundle / manifest.string_file(args.variant), tokenizer, config)
    text = text_of(tokenizer, args.seq)
    texts = [text]
    text_feed = {"text": np.asarray(texts, dtype=object)}
    index = np.zeros(1, dtype=np.int64)

    def token_raw() -> object:
        return token_engine.session.run(["probabilities"], tokenizer.pad(tokenizer.encode(texts), index).feeds())

    def string_raw() -> object:
        return string_engine.session.run(["probabilities"], text_feed)

    a = token_engine.run_texts(texts, 1)["probabilities"]
    b = string_engine.run_texts(texts, 1)["probabilities"]
    assert np.array_equal(a, b), (a, b)
    medians = interleaved(
        args.runs,
        args.warmup,
        token_raw=token_raw,
        string_raw=string_raw,
        token_engine=lambda: token_engine.run_texts(texts, 1),
        string_engine=lambda: string_engine.run_texts(texts, 1),
        tokenize_only=lambda: tokenizer.pad(tokenizer.encode(texts), index).feeds(),
    )
    result = {
        "bundle": portable_path(args.bundle),
        "encoder": manifest.data["encoder"]["spec"],
        "variant": args.variant,
        "seq": args.seq,
        "runs": args.runs,
        "threads": args.threads or "physical cores",
        "onnxruntime": metadata.version("onnxruntime"),
        "onnxruntime_extensions": metadata.version("onnxruntime-extensions"),
        "machine": platform.processor() or platform.machine(),
        "median_ms": {name: round(value * 1e3, 3) for name, value in medians.items()},
        "extra_raw": medians["string_raw"] / medians["token_raw"] - 1,
        "extra_engine": medians["string_engine"] / medians["token_engine"] - 1,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
