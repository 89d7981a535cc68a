"""`edge-sent score` side by side: the local engine vs `Classifier.predict` on the same texts, Ray (1 and 2
actors) vs local, and peak memory on a small vs a large input (synthetic: ChnSentiCorp texts with distinct
suffixes; also the Parquet reader alone on the same texts in one row group). Run it in the Ray venv
(scripts/ray-venv.sh) for the Ray rows; without Ray they are skipped.

    .venv-ray/bin/python benchmarks/score.py --bundle BUNDLE --out benchmarks
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "data" / "chnsenticorp" / "test.tsv"


def synthetic(path: Path, rows: int, prefix_chars: int) -> Path:
    texts = [line.split("\t", 1)[1] for line in TEST.read_text(encoding="utf-8").splitlines()[1:]]
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            text = texts[i % len(texts)][:prefix_chars].replace("\n", " ")
            handle.write(f"{text} #{i}\n")
    return path


def _score_cli(python: str, bundle: Path, inputs: list[Path], out: Path, *extra: str) -> dict:
    command = [python, "-m", "edge_sent", "score", str(bundle), *map(str, inputs), "--out", str(out), "--json"]
    proc = subprocess.run([*command, *extra], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def peak_rss_mb(python: str, bundle: Path, source: Path, out: Path, variant: str) -> float:
    """Peak RSS of a fresh `edge-sent score` process (ru_maxrss of the child, via a wrapper interpreter)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [python, "-m", "edge_sent", "score", str(bundle), str(source), "--out", str(out), "--variant", variant]
    proc = subprocess.run([python, "-c", code, *command], capture_output=True, text=True, check=True)
    return int(proc.stdout.strip()) / 1024


def parquet_copy(source: Path, path: Path) -> Path:
    """The same texts as a Parquet file with ONE row group (the worst case for a reader that loads row groups)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = source.read_text(encoding="utf-8").splitlines()
    pq.write_table(pa.table({"text_a": texts}), path, row_group_size=len(texts))
    return path


def reader_peak_rss_mb(python: str, path: Path) -> float:
    """Peak RSS of a fresh process that reads every record of `path` with edge-sent's reader (no model): its
    VmHWM, not ru_maxrss, which after fork+exec also counts the parent's peak (this process holds 1M texts)."""
    code = (
        "import sys; from edge_sent.readers import read_records; "
        "n = sum(1 for _ in read_records(sys.argv[1])); "
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    )
    proc = subprocess.run([python, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(proc.stdout.strip()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--variant", default="fp32", help="fp32: answers independent of the batch")
    ap.add_argument("--rows", type=int, default=12_000, help="texts for the throughput rows")
    ap.add_argument("--memory-rows", default="10000,1000000", help="small,large input sizes for peak RSS")
    ap.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per input size (median kept)")
    ap.add_argument("--prefix-chars", type=int, default=40, help="characters of each ChnSentiCorp text kept")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from edge_sent.runtime import Classifier
    from edge_sent.runtime.scoring.run import ScoreConfig, score

    work = Path(tempfile.mkdtemp(prefix="edge-sent-score-bench-"))
    source = synthetic(work / "texts.txt", args.rows, args.prefix_chars)
    texts = source.read_text(encoding="utf-8").splitlines()
    clf = Classifier.load(args.bundle, variant=args.variant, provider="cpu")
    times: dict[str, list[float]] = {"Classifier.predict": [], "score local": []}
    for k in range(args.repeats):  # alternated, side by side
        start = time.perf_counter()
        clf.predict(texts)
        times["Classifier.predict"].append(time.perf_counter() - start)
        stats = score(clf, ScoreConfig(inputs=(source,), out=work / f"local-{k}", shard_size=10_000))
        times["score local"].append(stats.seconds)
    try:
        import ray  # noqa: F401

        for actors in (1, 2):
            times[f"score ray, {actors} actor(s)"] = [
                _score_cli(sys.executable, args.bundle, [source], work / f"ray{actors}-{k}", "--engine", "ray",
                           "--actors", str(actors), "--variant", args.variant, "--shard-size", "2000",
                           # the local engine uses every core: give the actors the same cores between them
                           "--threads", str(max(1, (os.cpu_count() or 1) // actors)))["seconds"]
                for k in range(args.repeats)
            ]  # fmt: skip
    except ImportError:
        print("no Ray here: Ray rows skipped (run in scripts/ray-venv.sh's venv)", file=sys.stderr)
    throughput = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    small, large = (int(n) for n in args.memory_rows.split(","))
    memory, memory_runs, parquet_reader = {}, {}, {}
    for n in (small, large):
        path = synthetic(work / f"mem-{n}.txt", n, args.prefix_chars)
        memory_runs[str(n)] = [
            peak_rss_mb(sys.executable, args.bundle, path, work / f"mem-out-{n}-{k}", args.variant)
            for k in range(args.memory_repeats)
        ]
        memory[str(n)] = statistics.median(memory_runs[str(n)])
        parquet_reader[str(n)] = reader_peak_rss_mb(sys.executable, parquet_copy(path, work / f"mem-{n}.parquet"))
    result = {
        "bundle": str(args.bundle),
        "variant": args.variant,
        "rows": len(texts),
        "seconds": times,
        "texts_per_s": throughput,
        "ratios": {
            "score local / Classifier.predict": throughput["score local"] / throughput["Classifier.predict"],
            **{
                f"{name} / score local": value / throughput["score local"]
                for name, value in throughput.items()
                if name.startswith("score ray")
            },
        },
        "peak_rss_mb": memory,
        "peak_rss_mb_runs": memory_runs,
        "rss_ratio_large_vs_small": memory[str(large)] / memory[str(small)],
        "rss_ratio_worst": max(memory_runs[str(large)]) / min(memory_runs[str(small)]),
        "parquet_reader_peak_rss_mb": parquet_reader,
        "parquet_reader_rss_ratio_large_vs_small": parquet_reader[str(large)] / parquet_reader[str(small)],
        "self_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
