"""The two ways to run a bundle on OpenVINO, each against onnxruntime's CPU fp32 path in the same process.

    # the OpenVINO runtime itself (`openvino`, beside onnxruntime in one venv)
    python benchmarks/openvino_engines.py --bundle B --way runtime --out ov-runtime.json
    # onnxruntime-openvino's execution provider (its own venv: scripts/openvino-venv.sh)
    .venv-ov/bin/python benchmarks/openvino_engines.py --bundle B --way provider --out ov-provider.json

Speed: p50 of rotated blocks of consecutive runs (each block after an untimed run) at 1 text of about 100
characters and at the 32 longest texts (cut at the bundle's max length), as a ratio to CPU fp32 measured in the
same rounds. Fidelity: label agreement and max |Δp| against CPU fp32 on the test texts in length-sorted batches
of 32. Batch independence: each of the first `--alone` texts run alone against its answer inside its padded
batch. Compile: the first compile (empty cache)
and a second load from OpenVINO's model cache.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_sent.contract import TOKENIZER, read_manifest
from edge_sent.integrity import check_file
from edge_sent.readers import read_records
from edge_sent.tokenization import Tokenizer

Run = Callable[[dict[str, np.ndarray]], np.ndarray]


def cpu_flags() -> list[str]:
    """The x86 vector flags that decide the kernels (AVX2, AVX-512 and its BF16/VNNI, AMX)."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return sorted({f for f in line.split(":", 1)[-1].split() if f.startswith(("avx", "amx", "asimd", "sve"))})


def cpu_session(model: Path, threads: int) -> Run:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(["probabilities"], feeds)[0]


def provider_session(model: Path, threads: int, hint: str) -> tuple[Run, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    started = time.perf_counter()
    config = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": str(threads)}})
    session = ort.InferenceSession(
        str(model), options, providers=[("OpenVINOExecutionProvider", {"device_type": "CPU", "load_config": config})]
    )
    assert session.get_providers()[0] == "OpenVINOExecutionProvider"
    return (lambda feeds: session.run(["probabilities"], feeds)[0]), time.perf_counter() - started


def runtime_model(model: Path, threads: int, hint: str, cache: Path) -> tuple[Run, float]:
    import openvino as ov

    core = ov.Core()
    started = time.perf_counter()
    compiled = core.compile_model(
        str(model),
        "CPU",
        {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "CACHE_DIR": str(cache)},
    )
    elapsed = time.perf_counter() - started
    request = compiled.create_infer_request()
    out = compiled.output("probabilities")
    return (lambda feeds: np.asarray(request.infer(feeds)[out])), elapsed


def timed(runs: dict[str, Run], feeds: dict[str, np.ndarray], rounds: int, block: int = 3) -> dict[str, float]:
    """p50 ms of `rounds` timed runs each, in rotated blocks of `block` consecutive runs after an untimed one (as
    the host probe times them: a shape's first run compiles it, the first after another engine's finds its
    threads cold or the other's spinning)."""
    names = list(runs)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(-(-rounds // block)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name](feeds)
            for _ in range(block):
                t = time.perf_counter()
                runs[name](feeds)
                samples[name].append(time.perf_counter() - t)
    return {n: float(np.median(s)) * 1000 for n, s in samples.items()}


def answers(run: Run, tokenizer: Tokenizer, encoded: list, batch_size: int) -> np.ndarray:
    out = np.zeros((len(encoded), 2), dtype=np.float32)
    for batch in tokenizer.batches(encoded, batch_size):
        out[batch.index] = run(batch.feeds())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--way", choices=("runtime", "provider"), required=True)
    ap.add_argument("--data", type=Path, default=Path("data/chnsenticorp/test.tsv"))
    ap.add_argument("--limit", type=int, default=1200)
    ap.add_argument("--alone", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hints", default="f32,bf16")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    manifest = read_manifest(args.bundle)
    model = args.bundle / "model.onnx"
    tokenizer = Tokenizer(check_file(manifest, TOKENIZER), manifest.max_length)
    texts = [r.text for r in read_records(args.data)][: args.limit]
    encoded = tokenizer.encode(texts)
    lengths = np.array([len(e.ids) for e in encoded])
    one = int(np.argmin(np.abs(np.array([len(t) for t in texts]) - 100)))
    shapes = {
        "1 text": tokenizer.pad(encoded, np.array([one])),
        "32 texts": tokenizer.pad(encoded, np.argsort(-lengths)[:32]),
    }

    runs: dict[str, Run] = {"cpu fp32": cpu_session(model, args.threads)}
    compile_s: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for hint in args.hints.split(","):
            name = f"openvino {args.way} {hint}"
            if args.way == "runtime":
                runs[name], first = runtime_model(model, args.threads, hint, Path(cache) / hint)
                _, second = runtime_model(model, args.threads, hint, Path(cache) / hint)
                compile_s[name] = {"first": round(first, 3), "cached": round(second, 3)}
            else:
                runs[name], first = provider_session(model, args.threads, hint)
                compile_s[name] = {"first": round(first, 3)}
        speed = {shape: timed(runs, batch.feeds(), args.rounds) for shape, batch in shapes.items()}
        reference = answers(runs["cpu fp32"], tokenizer, encoded, 32)
        result: dict[str, dict] = {}
        for name, run in runs.items():
            probs = reference if name == "cpu fp32" else answers(run, tokenizer, encoded, 32)
            alone = np.concatenate([run(tokenizer.pad(encoded, np.array([i])).feeds()) for i in range(args.alone)])
            result[name] = {
                "ms": {s: round(speed[s][name], 2) for s in speed},
                "speedup": {s: round(speed[s]["cpu fp32"] / speed[s][name], 2) for s in speed},
                "agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
                "max_abs_dprob": float(np.abs(probs - reference).max()),
                "batch_vs_alone_max_dprob": float(np.abs(alone - probs[: args.alone]).max()),
                "batch_vs_alone_label_flips": int((alone.argmax(1) != probs[: args.alone].argmax(1)).sum()),
            } | ({"compile_s": compile_s[name]} if name in compile_s else {})
    versions = {"onnxruntime": ort.__version__, "python": platform.python_version()}
    try:
        import openvino

        versions["openvino"] = openvino.__version__
    except ImportError:
        pass
    report = {
        "bundle": str(args.bundle),
        "n_texts": len(texts),
        "one_text_tokens": int(lengths[one]),
        "threads": args.threads,
        "cpu": {"model": platform.processor() or platform.machine(), "flags": cpu_flags()},
        "versions": versions,
        "results": result,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
