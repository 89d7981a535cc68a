"""The OpenVINO rows, side by side with Optimum's int8 graph and edge-sent int8 on the CPU provider, in ONE run.

Where `pip install 'edge-sent[openvino]'` is installed, `--provider openvino` is the OpenVINO runtime itself (beside
onnxruntime's CPU build, which runs the anchors); in the provider's venv it is onnxruntime-openvino's execution
provider. The JSON names which (`engine`), with the CPU flags and both versions.

Runs in the OpenVINO venv (`scripts/openvino-venv.sh .venv-ov bench`; a later `pip install -e .` there would
bring the CPU build back over the OpenVINO one): that venv's
onnxruntime (the OpenVINO build) also has the CPU provider, so the anchors run in the same process:

    .venv-ov/bin/python benchmarks/openvino_provider.py --run-dir RUN --bundle BUNDLE [--refit-bundle BUNDLE2] \\
        --optimum-graph OPTIMUM_DIR/q/model_quantized.onnx --out benchmarks

Same method as compare.py: identical token ids for every contender in the latency grid, rotated blocks
with a pause between blocks, medians with p90/p99 after warm-up; real-corpus throughput at batch 32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import EdgeSent, OptimumGraph
from openvino_engines import cpu_flags
from recorded import command_line

from edge_sent.contract import TOKENIZER, read_manifest
from edge_sent.readers import read_records
from edge_sent.runtime.bench import percentiles, rotated_blocks, synthetic_feeds
from edge_sent.runtime.openvino_runtime import runtime_available, runtime_version
from edge_sent.tokenization import Tokenizer

ANCHOR = "(c) Optimum int8"


def contenders(args: argparse.Namespace, tokenizer: Path) -> dict:
    found = {ANCHOR: OptimumGraph(args.optimum_graph, args.run_dir, tokenizer, args.threads)}
    found["edge-sent int8 (cpu)"] = EdgeSent(args.bundle, "int8", args.threads)
    in_bundle = set(read_manifest(args.bundle).variants)
    for variant, precision in (("fp32", "bf16"), ("int8-static", "fp32"), ("int8-static", "bf16")):
        if variant not in in_bundle:  # (a default export has no int8-static)
            continue
        c = EdgeSent(args.bundle, variant, args.threads, provider="openvino", precision=precision)
        found[c.name] = c
    if args.refit_bundle:
        c = EdgeSent(args.refit_bundle, "int8-static", args.threads, provider="openvino", precision="bf16")
        found[c.name.replace("int8-static", "int8-static refit")] = c
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True, help="with the fp32, int8 and int8-static variants")
    ap.add_argument("--refit-bundle", type=Path, help="the same export with --refit-head int8-static")
    ap.add_argument("--optimum-graph", type=Path, required=True, help="model_quantized.onnx written by OptimumInt8")
    ap.add_argument("--data", type=Path, default=Path("data/chnsenticorp/test.tsv"))
    ap.add_argument("--lengths", default="16,64,128,256,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--pause", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks"))
    ap.add_argument("--throughput-limit", type=int, help="the first N texts of --data for the throughput column")
    args = ap.parse_args()
    on_runtime = runtime_available()  # `--provider openvino` then runs on the OpenVINO runtime, not the provider
    if "OpenVINOExecutionProvider" not in ort.get_available_providers() and not on_runtime:
        sys.exit(
            "error: run this where OpenVINO is installed (pip install 'edge-sent[openvino]', or the provider's venv)"
        )
    tokenizer = Tokenizer(args.bundle / TOKENIZER, 512)
    found = contenders(args, args.bundle / TOKENIZER)
    runners = {name: c.run for name, c in found.items()}
    result: dict = {
        "command": command_line(),
        "onnxruntime": ort.__version__,
        "openvino": runtime_version(),
        "engine": "OpenVINO runtime" if on_runtime else "onnxruntime-openvino execution provider",
        "cpu_flags": cpu_flags(),
        "threads": args.threads,
        "latency_b1": {name: {} for name in found},
    }
    for length in [int(x) for x in args.lengths.split(",")]:
        feeds = synthetic_feeds(1, length, tokenizer)
        for name, times in rotated_blocks(runners, feeds, args.runs, warmup=3, pause_s=args.pause).items():
            result["latency_b1"][name][str(length)] = percentiles(times)
        print(f"  1 x {length} done", file=sys.stderr, flush=True)
    feeds = synthetic_feeds(32, 128, tokenizer)
    result["latency_b32x128"] = {
        name: percentiles(t) for name, t in rotated_blocks(runners, feeds, 6, warmup=1, pause_s=args.pause).items()
    }
    texts = [r.text for r in read_records(args.data) if r.text.strip()][: args.throughput_limit]
    result["throughput"] = {}
    for name, c in found.items():
        time.sleep(args.pause)
        start = time.perf_counter()
        c.classify(texts)
        result["throughput"][name] = {"texts": len(texts), "texts_per_s": len(texts) / (time.perf_counter() - start)}
        print(f"  throughput {name} done", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "openvino.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(r: dict) -> str:
    anchor_b1 = r["latency_b1"][ANCHOR]["64"]["p50_ms"]
    anchor_b32 = r["latency_b32x128"][ANCHOR]["p50_ms"]
    anchor_tp = r["throughput"][ANCHOR]["texts_per_s"]
    lines = [
        "| contender | 1 × 64 p50 (p90/p99) | vs Optimum | 32 × 128 p50 | vs Optimum "
        "| ChnSentiCorp test | vs Optimum |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in r["latency_b1"]:
        b1, b32 = r["latency_b1"][name]["64"], r["latency_b32x128"][name]
        tp = r["throughput"][name]["texts_per_s"]
        lines.append(
            f"| {name} | {b1['p50_ms']:.1f} ms ({b1['p90_ms']:.1f}/{b1['p99_ms']:.1f}) | "
            f"{anchor_b1 / b1['p50_ms']:.2f}× | {b32['p50_ms']:.0f} ms | {anchor_b32 / b32['p50_ms']:.2f}× | "
            f"{tp:.1f} texts/s | {tp / anchor_tp:.2f}× |"
        )
    grid = ["", "| contender | " + " | ".join(f"1 × {n}" for n in r["latency_b1"][ANCHOR]) + " |"]
    grid.append("|---|" + "---|" * len(r["latency_b1"][ANCHOR]))
    for name, row in r["latency_b1"].items():
        grid.append(f"| {name} | " + " | ".join(f"{v['p50_ms']:.1f}" for v in row.values()) + " |")
    return "\n".join(lines + grid) + "\n"


if __name__ == "__main__":
    main()
