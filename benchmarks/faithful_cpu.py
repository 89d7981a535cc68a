"""Candidates for a faithful, batch-independent fast CPU variant (issue 13): fidelity and side-by-side speed.

Three steps, each printing JSON (README "A faithful, batch-independent fast CPU variant"; RESULTS.md):

    # int8 weights per output channel as DequantizeLinear -> MatMul (OpenVINO quantizes activations itself)
    .venv/bin/python benchmarks/faithful_cpu.py weights-qdq PORTABLE.onnx OUT.onnx
    # agreement with fp32 / accuracy / batch independence of one graph on one provider configuration
    .venv-ov/bin/python benchmarks/faithful_cpu.py fidelity GRAPH --tokenizer T --max-length 256 \\
        --reference FP32.onnx [--openvino '{"INFERENCE_PRECISION_HINT": "f32", ...}']
    # p50/p90/p99 at 1 x 64 and 32 x 128, rotated blocks, side by side with Optimum's int8 graph
    .venv-ov/bin/python benchmarks/faithful_cpu.py speed --tokenizer T --optimum OPTIMUM.onnx \\
        'NAME|GRAPH|' 'NAME|GRAPH|{"INFERENCE_PRECISION_HINT": "bf16"}' ...

PORTABLE.onnx is a bundle's standard-ops graph (`edge-sent export --portable`); the NNCF candidates come
from benchmarks/nncf_candidates.py (a venv with nncf). Fidelity and speed run in the OpenVINO venv, whose
onnxruntime also has the CPU provider (an empty configuration = the CPU provider).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_sent.readers import read_records
from edge_sent.runtime.bench import percentiles, rotated_blocks, synthetic_feeds
from edge_sent.tokenization import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recorded import command_line


def weights_qdq(src: Path, dst: Path) -> int:
    """Every MatMul with a constant 2-D fp32 weight: int8 symmetric per output channel, DequantizeLinear'd."""
    import onnx  # the export venv has it; the OpenVINO venv (fidelity, speed) does not
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    count = 0
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.ndim == 2 and w.dtype == np.float32 and w.size >= 1024:
                amax = np.abs(w).max(axis=0)
                scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
                q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
                base = node.input[1]
                model.graph.initializer.extend(
                    [
                        numpy_helper.from_array(q, base + "_q"),
                        numpy_helper.from_array(scale, base + "_scale"),
                        numpy_helper.from_array(np.zeros(scale.shape, np.int8), base + "_zp"),
                    ]
                )
                dq = helper.make_node(
                    "DequantizeLinear", [base + "_q", base + "_scale", base + "_zp"], [base + "_dq"], axis=1
                )
                nodes.append(dq)
                node.input[1] = base + "_dq"
                count += 1
        nodes.append(node)
    used = {name for node in nodes for name in node.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return count


def session(graph: str, openvino: str, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if not openvino:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    config = {"device_type": "CPU", "load_config": json.dumps({"CPU": json.loads(openvino)})}
    s = ort.InferenceSession(graph, options, providers=[("OpenVINOExecutionProvider", config)])
    if s.get_providers()[0] != "OpenVINOExecutionProvider":
        sys.exit(f"error: OpenVINO does not run {graph}")
    return s


def probabilities(s: ort.InferenceSession, tok: Tokenizer, texts: list[str], batch: int, order=None) -> np.ndarray:
    names = {i.name for i in s.get_inputs()}
    out = np.zeros((len(texts), 2), np.float32)
    for b in tok.batches(tok.encode(texts), batch, order):
        out[b.index] = s.run(["probabilities"], {k: v for k, v in b.feeds().items() if k in names})[0]
    return out


def fidelity(args: argparse.Namespace) -> dict:
    tok = Tokenizer(args.tokenizer, args.max_length)
    records = [r for r in read_records(args.data, label_field="label") if r.text.strip()]
    texts = [r.text for r in records]
    gold = np.array([int(r.label) for r in records])
    ref = probabilities(session(args.reference, ""), tok, texts, 32)
    s = session(args.graph, args.openvino)
    p = probabilities(s, tok, texts, 32)
    sample, longest = texts[:48], sorted(texts, key=len)[-16:]
    alone = np.concatenate([probabilities(s, tok, [t], 1) for t in sample])
    similar = probabilities(s, tok, sample, 16)
    mixed = probabilities(s, tok, sample[:16] + longest, 32, order=np.arange(32))[:16]
    return {
        "graph": args.graph,
        "openvino": args.openvino or None,
        "agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
        "accuracy": float((p.argmax(1) == gold).mean()),
        "fp32_accuracy": float((ref.argmax(1) == gold).mean()),
        "batch_max_dprob": float(max(np.abs(similar - alone).max(), np.abs(mixed - alone[:16]).max())),
    }


def speed(args: argparse.Namespace) -> dict:
    tok = Tokenizer(args.tokenizer, 512)
    found = {"Optimum int8 (cpu)": (session(args.optimum, ""), "last_hidden_state")}
    for spec in args.contenders:
        name, graph, openvino = spec.split("|", 2)
        found[name] = (session(graph, openvino), "probabilities")

    def runner(s: ort.InferenceSession, output: str):
        names = {i.name for i in s.get_inputs()}
        return lambda feeds: s.run([output], {k: v for k, v in feeds.items() if k in names})

    runners = {name: runner(*value) for name, value in found.items()}
    result: dict = {"command": command_line(), "onnxruntime": ort.__version__}
    for batch, length, runs in ((1, 64, 40), (32, 128, 6)):
        times = rotated_blocks(runners, synthetic_feeds(batch, length, tok), runs, warmup=2, pause_s=0.3)
        result[f"{batch}x{length}"] = {name: percentiles(t) for name, t in times.items()}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    w = sub.add_parser("weights-qdq")
    w.add_argument("src", type=Path)
    w.add_argument("dst", type=Path)
    f = sub.add_parser("fidelity")
    f.add_argument("graph")
    f.add_argument("--tokenizer", required=True)
    f.add_argument("--max-length", type=int, default=256)
    f.add_argument("--data", type=Path, default=Path("data/chnsenticorp/test.tsv"))
    f.add_argument("--reference", required=True, help="the fp32 graph, run on the CPU provider")
    f.add_argument("--openvino", default="", help="OpenVINO CPU properties (JSON); empty: the CPU provider")
    s = sub.add_parser("speed")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--optimum", required=True, help="model_quantized.onnx written by OptimumInt8")
    s.add_argument("contenders", nargs="+", help="NAME|GRAPH|OPENVINO-JSON (empty JSON: the CPU provider)")
    args = ap.parse_args()
    if args.step == "weights-qdq":
        print(json.dumps({"quantized_matmuls": weights_qdq(args.src, args.dst)}))
    elif args.step == "fidelity":
        print(json.dumps(fidelity(args)))
    else:
        print(json.dumps(speed(args), indent=1))


if __name__ == "__main__":
    main()
