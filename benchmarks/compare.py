"""Side-by-side latency/throughput benchmark: the tutorial recipe, Optimum, and edge-sent's variants, in ONE run.

    .venv/bin/python benchmarks/compare.py --run-dir out/bench-run --bundle out/bench-bundle --out benchmarks

Method: every contender gets the same token ids in the latency grid; contenders run in rotated blocks
with a pause between blocks (an idle onnxruntime pool keeps spinning and taxes whatever runs next);
medians with p90/p99 after warm-up. Writes results.json, results.md and latency.png under --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import EdgeSent, OptimumInt8, TorchEager
from recorded import command_line

from edge_sent.contract import CONFIG, MANIFEST, TOKENIZER
from edge_sent.readers import read_records
from edge_sent.runtime.bench import percentiles, rotated_blocks, synthetic_feeds, time_calls
from edge_sent.runtime.host.cpu import cpu_flags
from edge_sent.tokenization import Tokenizer

VARIANTS = ("fp32", "int8", "int8-block", "int8-static", "int4")  # the bundle's variants that take part, if present


def bert_ops(cfg: dict, batch: int, length: int) -> float:
    """Multiply-adds x2 of one encoder forward (linear layers + attention scores/context)."""
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    linear = 2 * (4 * h * h + 2 * h * i) * n * batch * length
    attention = 2 * 2 * length * length * h * n * batch
    return float(linear + attention)


def _gemm_graph(kind: str, m: int, k: int, n: int, rng) -> tuple[onnx.ModelProto, dict]:
    a_float = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
    c_float = helper.make_tensor_value_info("C", TensorProto.FLOAT, [m, n])
    int8_b = helper.make_tensor("B", TensorProto.INT8, [k, n], rng.integers(-128, 127, k * n).astype(np.int8))
    if kind == "fp32 MatMul":
        b = helper.make_tensor("B", TensorProto.FLOAT, [k, n], rng.standard_normal(k * n).astype(np.float32))
        graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "g", [a_float], [c_float], [b])
        feed = {"A": rng.standard_normal((m, k)).astype(np.float32)}
    elif kind == "int8 MatMulInteger":
        a_in = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
        c_out = helper.make_tensor_value_info("C", TensorProto.INT32, [m, n])
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B"], ["C"])], "g", [a_in], [c_out], [int8_b]
        )
        feed = {"A": rng.integers(0, 255, (m, k)).astype(np.uint8)}
    else:  # what the int8 graph runs: fp32 in, per-tensor dynamic u8 activations, per-column s8 weights, fp32 out
        scale = helper.make_tensor("S", TensorProto.FLOAT, [n], (rng.random(n) * 0.01 + 0.001).astype(np.float32))
        node = helper.make_node("DynamicQuantizeMatMul", ["A", "B", "S"], ["C"], domain="com.microsoft")
        graph = helper.make_graph([node], "g", [a_float], [c_float], [int8_b, scale])
        feed = {"A": rng.standard_normal((m, k)).astype(np.float32)}
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets), feed


CEILING_KINDS = ("fp32 MatMul", "int8 MatMulInteger", "int8 DynamicQuantizeMatMul")
CEILING_SHAPES = ((4096, 768, 3072), (4096, 3072, 768), (4096, 768, 768))  # bert-base's GEMMs at 32 x 128


def gemm_ceiling(threads: int) -> dict:
    """onnxruntime's own GEMM throughput on bert-base's GEMM shapes at batch 32 x 128: the best op/s over
    the shapes, per kind; the int8 ceiling is the better of MatMulInteger and DynamicQuantizeMatMul."""
    out: dict = {"shapes": [list(s) for s in CEILING_SHAPES]}
    rng = np.random.default_rng(0)
    for kind in CEILING_KINDS:
        best = 0.0
        for m, k, n in CEILING_SHAPES:
            model, feed = _gemm_graph(kind, m, k, n, rng)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            times = time_calls(lambda f, s=sess: s.run(None, f), feed, runs=15, warmup=3)
            best = max(best, 2 * m * k * n / float(np.median(times)))
            del sess
            time.sleep(0.3)
        out[kind] = best
    out["fp32"] = out["fp32 MatMul"]
    out["int8"] = max(out["int8 MatMulInteger"], out["int8 DynamicQuantizeMatMul"])
    return out


def ceiling_fractions(bundle: Path, thread_list: list[int]) -> dict:
    """The GEMM ceilings, and each edge-sent variant's effective ops/s at batch 32 x 128, in one process."""
    cfg = json.loads((bundle / CONFIG).read_text())
    manifest = json.loads((bundle / MANIFEST).read_text())
    feeds = synthetic_feeds(32, 128, Tokenizer(bundle / TOKENIZER, 512))
    out = {}
    for threads in thread_list:
        ceiling = gemm_ceiling(threads)
        rows = {}
        for v in (v for v in VARIANTS if v in manifest["variants"]):
            contender = EdgeSent(bundle, v, threads)
            seconds = float(np.median(time_calls(contender.run, feeds, 3, warmup=1)))
            ops = bert_ops(cfg, 32, 128) / seconds
            rows[v] = {
                "b32x128_s": seconds,
                "ops_per_s": ops,
                "of_fp32": ops / ceiling["fp32"],
                "of_int8": ops / ceiling["int8"],
            }
            del contender
            time.sleep(0.5)
        out[str(threads)] = {"ceiling": ceiling, "edge-sent": rows}
    return out


def latency_grid(contenders: dict, lengths, runs: int, tokenizer: Tokenizer, pause: float, batch: int = 1) -> dict:
    runners = {name: c.run for name, c in contenders.items()}
    result: dict = {name: {} for name in contenders}
    for length in lengths:
        feeds = synthetic_feeds(batch, length, tokenizer)
        for name, times in rotated_blocks(runners, feeds, runs, warmup=3, pause_s=pause).items():
            result[name][str(length)] = percentiles(times)
        print(f"  seq {length} done", file=sys.stderr, flush=True)
    return result


# peak RSS of the child itself: VmHWM (ru_maxrss would report the parent's peak, kept across fork+exec)
HWM = "[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"


def cold_start(bundle: Path, hf_dir: Path | None) -> dict:
    """Fresh process -> first label, with that process's peak RSS."""
    edge = (
        "import resource,sys,time;t=time.perf_counter();from edge_sent.runtime import Classifier;"
        f"c=Classifier.load({str(bundle)!r},variant='int8',provider='cpu');l=c.predict(['很好'])[0].label;"
        f"print(time.perf_counter()-t, {HWM})"
    )
    runs = {"edge-sent int8 (runtime only)": edge}
    if hf_dir is not None:
        runs["PyTorch eager fp32 (transformers)"] = (
            "import resource,sys,time;t=time.perf_counter();import torch;from transformers import AutoModel,"
            f"AutoTokenizer;m=AutoModel.from_pretrained({str(hf_dir)!r}).eval();"
            f"tok=AutoTokenizer.from_pretrained({str(hf_dir)!r});"
            "x=tok(['很好'],return_tensors='pt');\nwith torch.no_grad(): h=m(**x).last_hidden_state[:,0]\n"
            f"print(time.perf_counter()-t, {HWM})"
        )
    out = {}
    for name, code in runs.items():
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        inner, rss_kb = proc.stdout.split()[-2:]
        out[name] = {"wall_s": wall, "in_process_s": float(inner), "peak_rss_mb": int(rss_kb) / 1024}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("data/chnsenticorp/test.tsv"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks"))
    ap.add_argument("--lengths", default="16,64,128,256,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument(
        "--pad-fixed-subset", type=int, default=320, help="texts for (a), which pads every text to max length (slow)"
    )
    ap.add_argument("--pause", type=float, default=0.3)
    ap.add_argument("--ceiling-only", action="store_true", help="only measure the GEMM ceilings (JSON to stdout)")
    ap.add_argument(
        "--optimum-dir", type=Path, help="keep Optimum's export here (benchmarks/openvino_provider.py reuses it)"
    )
    args = ap.parse_args()
    if args.ceiling_only:
        print(json.dumps(ceiling_fractions(args.bundle, [int(t) for t in args.threads.split(",")]), indent=2))
        return
    lengths = [int(x) for x in args.lengths.split(",")]
    thread_list = [int(x) for x in args.threads.split(",")]
    manifest = json.loads((args.bundle / MANIFEST).read_text())
    cfg = json.loads((args.bundle / CONFIG).read_text())
    tokenizer = Tokenizer(args.bundle / TOKENIZER, int(manifest["max_length"]))
    texts = [r.text for r in read_records(args.data) if r.text.strip()]
    variants = [v for v in VARIANTS if v in manifest["variants"]]
    results: dict = {
        "command": command_line(),
        "machine": {
            "cpu": _cpu_name(),
            "cores": _cores(),
            "cpu_flags": cpu_flags(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "encoder": manifest["encoder"],
        "random_weights": manifest["encoder"].get("random_weights"),
        "max_length": manifest["max_length"],
        "ceiling": {},
        "latency": {},
        "throughput": {},
        "sizes": {},
    }
    for threads in thread_list:
        print(f"threads {threads}: building contenders", file=sys.stderr, flush=True)
        contenders = {"PyTorch eager": TorchEager(args.run_dir, threads, None, "PyTorch eager")}
        optimum = OptimumInt8(args.run_dir, threads, args.optimum_dir)
        results["optimum_recipe"] = optimum.recipe
        contenders["(c) Optimum int8"] = optimum
        for v in variants:
            contenders[f"edge-sent {v}"] = EdgeSent(args.bundle, v, threads)
        results["ceiling"][str(threads)] = gemm_ceiling(threads)
        results["latency"][str(threads)] = latency_grid(contenders, lengths, args.runs, tokenizer, args.pause)
        # effective ops/s at batch 32 x 128 against the ceiling
        feeds = synthetic_feeds(32, 128, tokenizer)
        eff = {}
        for name, c in contenders.items():
            t = float(np.median(time_calls(c.run, feeds, 3, warmup=1)))
            eff[name] = {"b32x128_s": t, "ops_per_s": bert_ops(cfg, 32, 128) / t}
            time.sleep(args.pause)
        results.setdefault("batch32x128", {})[str(threads)] = eff
        if threads == max(thread_list):
            tp = {}
            tutorial = TorchEager(args.run_dir, threads, manifest["max_length"], "(a)")
            sub = texts[: args.pad_fixed_subset]
            start = time.perf_counter()
            tutorial.classify(sub)
            tp["(a) PyTorch eager, padded to max length"] = {
                "texts": len(sub),
                "texts_per_s": len(sub) / (time.perf_counter() - start),
            }
            for name, c in contenders.items():
                label = "(b) PyTorch eager, padded to longest in batch" if name == "PyTorch eager" else name
                time.sleep(args.pause)
                start = time.perf_counter()
                c.classify(texts)
                tp[label] = {"texts": len(texts), "texts_per_s": len(texts) / (time.perf_counter() - start)}
            results["throughput"] = tp
            results["sizes"] = {
                f"edge-sent {v}": manifest["files"][manifest["variants"][v]["file"]]["bytes"] for v in variants
            } | {"(c) Optimum int8": optimum.file_bytes}
            results["cold_start"] = cold_start(args.bundle, optimum.hf_dir)
        del contenders, optimum
    results["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    from report import plot, tables

    (args.out / "results.md").write_text(tables(results))
    plot(results, args.out / "latency.png")
    print(tables(results))


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _cores() -> int:
    from edge_sent.runtime.session import physical_cores

    return physical_cores()


if __name__ == "__main__":
    main()
