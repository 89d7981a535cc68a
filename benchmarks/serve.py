"""Load test of `edge-sent serve`: throughput and p50/p99 latency against concurrency, one text per request,
batching on (the defaults) vs off (`--max-batch-size 1`: one request, one run), plus the in-process
`Classifier.predict` figures the goals compare with.

    .venv/bin/python benchmarks/serve.py --bundle out/bench-bundle --concurrency 1,2,4,8,16,32,64 \
        --requests 400 --out benchmarks/serve.json

The load generator is closed-loop and bounded: at each concurrency level, C client threads (one keep-alive
connection each) send `--requests` requests in all, each the next text of `--data`, after `--warmup` requests
that are not timed. It runs on the same machine as the server (its CPU time counts against the server's).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

from edge_sent.readers import read_records
from edge_sent.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]
MODES = {"batching": (), "no-batching": ("--max-batch-size", "1")}


def start_server(
    bundle: Path, args: argparse.Namespace, extra: tuple[str, ...], log: Path
) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "edge_sent", "serve", str(bundle), "--port", "0", "--variant", args.variant]
    cmd += ["--provider", args.provider, "--max-queue", "4096", *extra]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit("server did not start:\n" + log.read_text())
        found = re.search(r"listening on (http://\S+?:\d+)", log.read_text())
        if found:
            url = found.group(1)
            try:
                if requests.get(url + "/health", timeout=5).status_code == 200:
                    return proc, url
            except requests.ConnectionError:
                pass
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def load_level(url: str, texts: list[str], concurrency: int, total: int, warmup: int) -> dict:
    """C threads share a budget of `total` timed requests (after `warmup` untimed ones)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(concurrency + 1)

    def client() -> None:
        session = requests.Session()
        barrier.wait(timeout=120)
        while True:
            with lock:
                n = next(counter)
            if n >= warmup + total:
                return
            t0 = time.perf_counter()
            try:
                reply = session.post(url + "/predict", json={"inputs": texts[n % len(texts)]}, timeout=120)
                ok = reply.status_code == 200
            except requests.RequestException as exc:
                ok, reply = False, exc
            seconds = time.perf_counter() - t0
            if n >= warmup:
                with lock:
                    (latencies if ok else errors).append(seconds if ok else str(reply))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait(timeout=120)
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=1800)
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "texts_per_s": len(latencies) / wall if wall else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
    }


def in_process(bundle: Path, args: argparse.Namespace, texts: list[str]) -> dict:
    clf = Classifier.load(bundle, variant=args.variant, provider=args.provider, threads=args.threads)
    clf.predict(texts[:64])
    start = time.perf_counter()
    clf.predict(texts, batch_size=32)
    offline = len(texts) / (time.perf_counter() - start)
    singles = []
    for text in texts[: min(len(texts), 200)]:
        t0 = time.perf_counter()
        clf.predict([text])
        singles.append((time.perf_counter() - t0) * 1000)
    return {
        "variant": clf.variant,
        "provider": clf.providers[0],
        "offline_texts_per_s": offline,
        "single_p50_ms": float(np.percentile(singles, 50)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "chnsenticorp" / "test.tsv")
    parser.add_argument("--limit", type=int, default=1200, help="texts taken from --data")
    parser.add_argument("--variant", default="auto")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    texts = [r.text for r in itertools.islice(read_records(args.data, text_field="text_a"), args.limit)]
    levels = [int(c) for c in args.concurrency.split(",")]
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "texts": len(texts),
    }
    result["in_process"] = in_process(args.bundle, args, texts)
    print(json.dumps(result["in_process"]), flush=True)
    for mode in args.modes.split(","):
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"edge-sent-serve-bench-{mode}.log"
        proc, url = start_server(args.bundle, args, MODES[mode], log)
        try:
            rows = []
            for c in levels:
                row = load_level(url, texts, c, args.requests, args.warmup)
                rows.append(row)
                print(json.dumps({"mode": mode, **row}), flush=True)
            result[mode] = rows
        finally:
            stop(proc)
    print("\n| mode | clients | texts/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for row in result[mode]:
            print(
                f"| {mode} | {row['concurrency']} | {row['texts_per_s']:.1f} | {row['p50_ms']:.1f} | "
                f"{row['p99_ms']:.1f} | {row['errors']} |"
            )
    ip = result["in_process"]
    print(
        f"\nin-process Classifier.predict: {ip['offline_texts_per_s']:.1f} texts/s (batch 32), "
        f"single text p50 {ip['single_p50_ms']:.2f} ms ({ip['variant']}, {ip['provider']})"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
