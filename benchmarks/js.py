"""The bundle in Node.js (transformers.js + onnxruntime-node) and in headless Chromium (the examples/web page,
onnxruntime-web WebAssembly) beside Python's Classifier, on the same texts, one text at a time:

    flock /tmp/cpu.lock .venv/bin/python benchmarks/js.py BUNDLE --variants int8,fp32 --n 100 --out benchmarks/js.json

Per runtime and variant: time to first answer (Python: load + first text, from a fresh process's start of
loading; Node.js: load + first text; browser: navigation start to the page's first answer, the page's own
mark), the median / p90 per-text latency over the texts after the first, and label agreement with Python.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_sent.export.prepare import texts_from  # noqa: E402
from edge_sent.runtime import Classifier  # noqa: E402
from tests.test_js import Server  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from recorded import portable_path  # noqa: E402

BROWSER_VARIANT = {"int8": "int8", "fp32": "fp32", "portable": "portable"}


def stats(ms: list[float]) -> dict:
    rest = np.asarray(ms[1:])
    return {"median_ms": round(float(np.median(rest)), 2), "p90_ms": round(float(np.percentile(rest, 90)), 2)}


Answers = tuple[list[str], list[float]]  # labels, and the probability of each label given


def python_row(bundle: Path, variant: str, texts: list[str]) -> tuple[dict, Answers]:
    started = time.perf_counter()
    clf = Classifier.load(bundle, variant="fp32" if variant == "portable" else variant, provider="cpu")
    ms, labels, probs = [], [], []
    for i, text in enumerate(texts):
        t0 = time.perf_counter()
        prediction = clf.predict([text], batch_size=1)[0]
        ms.append((time.perf_counter() - t0) * 1000)
        labels.append(prediction.label)
        probs.append(prediction.probabilities[prediction.label])
        if i == 0:
            first = (time.perf_counter() - started) * 1000
    return {"first_answer_ms": round(first, 1), **stats(ms)}, (labels, probs)


def node_row(bundle: Path, variant: str, texts: list[str]) -> tuple[dict, Answers]:
    proc = subprocess.run(
        ["node", str(ROOT / "js" / "classify.mjs"), str(bundle), variant],
        input="\n".join(texts),
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(proc.stdout)
    ms = [p["ms"] for p in got["predictions"]]
    labels = [p["label"] for p in got["predictions"]]
    probs = [p["probabilities"][got["labels"].index(p["label"])] for p in got["predictions"]]
    return {"first_answer_ms": round(got["load_ms"] + ms[0], 1), **stats(ms)}, (labels, probs)


def browser_row(bundle: Path, variant: str, texts: list[str], chromium: str, shot: Path | None) -> tuple[dict, Answers]:
    server = Server(bundle)
    try:
        args = ["node", str(ROOT / "js" / "browser.mjs"), f"{server.url}?variant={variant}", chromium]
        proc = subprocess.run(
            args + ([str(shot)] if shot else []), input="\n".join(texts), capture_output=True, text=True
        )
    finally:
        server.stop()
    got = json.loads(proc.stdout)
    if got.get("error"):
        raise SystemExit(f"browser: {got['error']}")
    ms = [p["ms"] for p in got["predictions"]]
    row = {
        "first_answer_ms": round(got["first_answer_ms"], 1),
        "page_load_ms": round(got["load_ms"], 1),
        **stats(ms),
        "model_file": got["model_file"],
    }
    return row, ([p["label"] for p in got["predictions"]], [p["probability"] for p in got["predictions"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--variants", default="int8,fp32")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--screenshot", type=Path, help="a PNG of the page after the last text")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    texts = texts_from(ROOT / "data" / "chnsenticorp" / "test.tsv", "text_a", args.n)
    rows = []
    for variant in args.variants.split(","):
        py, reference = python_row(args.bundle, variant, texts)
        results = {"python": (py, reference), "node": node_row(args.bundle, variant, texts)}
        if chromium and variant in BROWSER_VARIANT:
            results["browser"] = browser_row(args.bundle, variant, texts, chromium, args.screenshot)
        for runtime, (row, (labels, probs)) in results.items():
            pairs = list(zip(labels, probs, *reference, strict=True))
            agree = sum(a == b for a, _, b, _ in pairs) / len(pairs)
            same = [abs(p - q) for a, p, b, q in pairs if a == b]
            differ = [round(q - 0.5, 5) for a, _, b, q in pairs if a != b]  # Python's margin over a tie there
            rows.append(
                {
                    "runtime": runtime,
                    "variant": variant,
                    **row,
                    "label_agreement": agree,
                    "max_abs_dprob": round(max(same), 6),
                    "python_margin_where_labels_differ": differ,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        report = {"bundle": portable_path(args.bundle), "n_texts": len(texts), "rows": rows}
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
