"""Every variant's answers on given texts, on whatever CPU this interpreter runs on.

The device matrix (`benchmarks/devices.py`) runs this same script on each platform (x86 natively, x86 without
AVX-512 and aarch64 under emulation) and compares the answers; torch-free, so it runs where only the runtime
is installed:

    python benchmarks/answers.py BUNDLE TEXTS.txt OUT.json [--ort DIR] [--batch-size N]

TEXTS.txt: one text a line. Graphs: every variant of the bundle the CPU provider runs, each variant's string-in
graph (`strings:<variant>`) when the bundle has them, and every `.ort` file in DIR (`ort:<file>`). A graph that
cannot load or run here is recorded with its one-line error, not skipped silently.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_sent.contract import TOKENIZER, read_manifest
from edge_sent.errors import EdgeSentError
from edge_sent.runtime.classifier import Classifier
from edge_sent.runtime.engine import Engine
from edge_sent.runtime.host.cpu import cpu_fingerprint, cpu_flags
from edge_sent.runtime.session import SessionConfig
from edge_sent.tokenization import Tokenizer
from edge_sent.variants import VARIANTS


def graph_answers(
    bundle: Path, texts: list[str], ort_dir: Path | None, batch_size: int = 1, threads: int | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every graph's probabilities for the texts; `batch_size` > 1 batches them length-sorted (deterministic, so
    two platforms given the same texts and batch size batch them the same way, batch-dependent variants too)."""
    manifest = read_manifest(bundle)
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    jobs: list[tuple[str, Any]] = []
    for name in manifest.variants:
        spec = VARIANTS.get(name)
        if spec is None or spec.runs_on_provider("cpu"):
            jobs.append(
                (name, lambda n=name: Classifier.load(bundle, variant=n, provider="cpu", threads=threads, probe=False))
            )
    for name in manifest.string_files:
        jobs.append(
            (
                f"strings:{name}",
                lambda n=name: Classifier.load(bundle, variant=n, provider="cpu", threads=threads, strings=True),
            )
        )
    tokenizer = Tokenizer(bundle / TOKENIZER, manifest.max_length)
    for path in sorted(ort_dir.glob("*.ort")) if ort_dir else []:
        config = SessionConfig(provider="cpu", threads=threads)
        jobs.append((f"ort:{path.name}", lambda p=path, c=config: Engine(p, tokenizer, c)))
    for name, load in jobs:
        started = time.perf_counter()
        try:
            loaded = load()
            engine = loaded.engine if isinstance(loaded, Classifier) else loaded
            probs = engine.run_texts(texts, batch_size)["probabilities"].tolist()
        except (EdgeSentError, RuntimeError, ValueError) as exc:  # onnxruntime's own errors derive from these
            errors[name] = str(exc).splitlines()[0][:300]
            continue
        answers[name] = {"probabilities": probs, "seconds": round(time.perf_counter() - started, 2)}
    return answers, errors


def platform_record() -> dict[str, Any]:
    return {
        "machine": platform.machine().lower(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "cpu_flags": cpu_flags(),  # the CPU this process runs on: the emulated one under qemu-user
        "cpu_source": cpu_fingerprint()["source"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("texts", type=Path, help="one text a line")
    parser.add_argument("out", type=Path, help="the JSON answers file to write")
    parser.add_argument("--ort", type=Path, help="a folder of .ort files (ORT format) to run too")
    parser.add_argument("--batch-size", type=int, default=1, help="1: one text at a time (default)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: physical cores)")
    args = parser.parse_args(argv)
    try:
        texts = [line for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
        answers, errors = graph_answers(args.bundle, texts, args.ort, args.batch_size, args.threads)
    except (OSError, EdgeSentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = {"platform": platform_record(), "n_texts": len(texts), "batch_size": args.batch_size}
    record |= {"answers": answers, "errors": errors}
    tmp = args.out.with_name(args.out.name + ".part")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
