"""Load test of `edge-sent serve` against the servers a user could run instead: throughput and p50/p90/p99
latency against concurrency, one text per request, plus the in-process `Classifier.predict` figures the goals
compare with, and the server's memory under overload.

    .venv/bin/python benchmarks/serve.py --bundle BUNDLE --run-dir RUN --optimum-dir DIR \
        --concurrency 1,4,16,32,64 --requests 128 --out benchmarks/serve.json

Contenders (`--contenders`, all by default):
* edge-sent: `edge-sent serve` with its defaults (dynamic batching);
* edge-sent-no-batching: the same server with `--max-batch-size 1` (one request, one run);
* fastapi-optimum: what a user writes without edge-sent (benchmarks/optimum_server.py: FastAPI + uvicorn, one
  request → one transformers pipeline call on Optimum's `ORTModelForSequenceClassification`, int8);
* infinity: infinity-emb's `/classify` with its optimum engine on the same Optimum int8 directory, from
  `--infinity-venv` (scripts/infinity-venv.sh); skipped with a note when that venv is absent.
The Optimum directory (`--optimum-dir`) is built from `--run-dir` by `contenders.optimum_classifier_dir` when
it holds no quantized graph yet (the bundle's run; Optimum's int8 recipe; needs torch).

Every contender gets the same texts, cut on the client to the bundle's max length in tokens (infinity does not
truncate; the others would cut at the same place), so all run the same work. The load generator is
closed-loop and bounded: at each concurrency level, C client threads (one keep-alive connection each) send
`--requests` requests in all, after `--warmup` untimed ones. It runs on the same machine as the servers (its
CPU time counts against them). Overload: edge-sent with `--max-queue Q` and 4×Q clients; status counts, the
server's RSS (sampled every 0.1 s) before, during and after, and whether the next requests all succeed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from tokenizers import Tokenizer as HfTokenizer

from edge_sent.contract import TOKENIZER
from edge_sent.readers import read_records
from edge_sent.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Contender:
    name: str
    command: list[str]
    route: str
    body: Callable[[str], dict]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def edge_sent(args: argparse.Namespace, port: int, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "edge_sent", "serve", str(args.bundle), "--port", str(port)]
    cmd += ["--variant", args.variant, "--provider", args.provider, *extra]
    return cmd + (["--threads", str(args.threads)] if args.threads else [])


def contenders(args: argparse.Namespace, port: int) -> dict[str, Contender]:
    tei = lambda text: {"inputs": text}  # noqa: E731
    infinity = args.infinity_venv / "bin" / "infinity_emb"
    return {
        "edge-sent": Contender("edge-sent", edge_sent(args, port, "--max-queue", "4096"), "/predict", tei),
        "edge-sent-no-batching": Contender(
            "edge-sent-no-batching",
            edge_sent(args, port, "--max-queue", "4096", "--max-batch-size", "1"),
            "/predict",
            tei,
        ),
        "fastapi-optimum": Contender(
            "fastapi-optimum",
            [
                sys.executable,
                str(ROOT / "benchmarks" / "optimum_server.py"),
                str(args.optimum_dir),
                "--port",
                str(port),
            ],
            "/predict",
            tei,
        ),
        # infinity-emb 0.0.78 hands optimum the ONNX file's path as found under --model-id, and optimum-onnx
        # wants a bare file name: run it from inside the directory with --model-id . ; its warm-up sends a
        # 1026-token text to a 512-position model, hence --no-model-warmup (the load generator warms it up)
        "infinity": Contender(
            "infinity",
            [
                *(str(infinity), "v2", "--model-id", ".", "--engine", "optimum", "--device", "cpu"),
                *("--host", "127.0.0.1", "--port", str(port), "--batch-size", "32", "--no-model-warmup"),
                *("--onnx-disable-optimize", "--log-level", "warning"),
            ],
            "/classify",
            lambda text: {"input": [text]},
            cwd=args.optimum_dir,
            env={"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"},
        ),
    }


def start(contender: Contender, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, **contender.env}
    with log.open("w") as sink:
        proc = subprocess.Popen(
            contender.command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=contender.cwd, env=env
        )
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{contender.name} did not start:\n" + log.read_text()[-3000:])
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_level(url: str, contender: Contender, texts: list[str], concurrency: int, total: int, warmup: int) -> dict:
    """C threads share a budget of `total` timed requests (after `warmup` untimed ones)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
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
                status = str(session.post(url, json=contender.body(texts[n % len(texts)]), timeout=120).status_code)
            except requests.Timeout:
                status = "timeout"
            except requests.RequestException as exc:
                status = type(exc).__name__
            seconds = time.perf_counter() - t0
            if n >= warmup:
                with lock:
                    statuses[status] += 1
                    if status == "200":
                        latencies.append(seconds)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait(timeout=120)
    start_at = time.perf_counter()
    for t in threads:
        t.join(timeout=1800)
    wall = time.perf_counter() - start_at
    ms = np.asarray(latencies) * 1000
    pct = {f"p{q}_ms": float(np.percentile(ms, q)) if len(ms) else None for q in (50, 90, 99)}
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": total - len(latencies),
        "statuses": dict(statuses),
        "texts_per_s": len(latencies) / wall if wall else 0.0,
        **pct,
    }


def offline_rate(clf: Classifier, texts: list[str]) -> float:
    """In-process `Classifier.predict` texts/s (batch 32, length-sorted: the model's own limit)."""
    start_at = time.perf_counter()
    clf.predict(texts, batch_size=32)
    return len(texts) / (time.perf_counter() - start_at)


def single_p50_ms(clf: Classifier, texts: list[str]) -> float:
    """In-process `Classifier.predict` of one text at a time: the median milliseconds."""
    singles = []
    for text in texts:
        t0 = time.perf_counter()
        clf.predict([text])
        singles.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(singles, 50))


def in_process(clf: Classifier, texts: list[str]) -> dict:
    clf.predict(texts[:64])
    return {
        "variant": clf.variant,
        "provider": clf.providers[0],
        "offline_texts_per_s": offline_rate(clf, texts),
        "single_p50_ms": single_p50_ms(clf, texts[:200]),
    }


def overload(args: argparse.Namespace, texts: list[str]) -> dict:
    """edge-sent with a small queue under 4× that many clients: statuses, RSS, and service right after."""
    port = free_port()
    queue = args.overload_queue
    contender = Contender(
        "edge-sent",
        edge_sent(args, port, "--max-queue", str(queue), "--max-client-batch", "1"),
        "/predict",
        lambda t: {"inputs": t},
    )
    proc = start(contender, port, Path(os.environ.get("TMPDIR", "/tmp")) / "edge-sent-serve-bench-overload.log")
    url = f"http://127.0.0.1:{port}/predict"
    try:
        load_level(url, contender, texts, 4, 32, 0)  # warm: the arena grows to the batch sizes first
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_mb(proc.pid))
                time.sleep(0.1)

        before = rss_mb(proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        phases = []
        for _ in range(args.overload_rounds):
            phases.append(load_level(url, contender, texts, 4 * queue, args.overload_requests, 0))
            phases[-1]["rss_mb_max"] = max(samples)
        done.set()
        sampler.join()
        after = load_level(url, contender, texts, 1, 20, 0)
        return {
            "max_queue": queue,
            "clients": 4 * queue,
            "rounds": phases,
            "rss_mb_before": before,
            "rss_mb_max": max(samples),
            "rss_mb_end": rss_mb(proc.pid),
            "after": after,
        }
    finally:
        stop(proc)


def client_cut(bundle: Path, texts: list[str], max_length: int) -> list[str]:
    """Each text cut to what fits in max_length tokens with [CLS] and [SEP] (the server-side truncation)."""
    tok = HfTokenizer.from_file(str(bundle / TOKENIZER))
    tok.no_truncation()
    tok.no_padding()
    cut = []
    for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False), strict=True):
        keep = max_length - 2
        cut.append(text if len(enc.ids) <= keep else text[: enc.offsets[keep - 1][1]])
    return cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, default=None, help="the bundle's run (builds --optimum-dir)")
    parser.add_argument("--optimum-dir", type=Path, default=Path("/tmp/edge-sent-optimum-cls"))
    parser.add_argument("--infinity-venv", type=Path, default=ROOT / ".venv-infinity")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "chnsenticorp" / "test.tsv")
    parser.add_argument("--limit", type=int, default=600, help="texts taken from --data")
    parser.add_argument("--variant", default="auto")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--concurrency", default="1,4,16,32,64")
    parser.add_argument("--requests", type=int, default=128, help="timed requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--contenders", default="edge-sent,edge-sent-no-batching,fastapi-optimum,infinity")
    parser.add_argument("--offline-texts", type=int, default=160, help="texts of the per-level offline reference")
    parser.add_argument("--overload-queue", type=int, default=16, help="0: no overload phase")
    parser.add_argument("--overload-requests", type=int, default=400)
    parser.add_argument("--overload-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    records = itertools.islice(read_records(args.data, text_field="text_a"), args.limit)
    clf = Classifier.load(args.bundle, variant=args.variant, provider=args.provider, threads=args.threads)
    texts = client_cut(args.bundle, [r.text for r in records], clf.max_length)
    names = args.contenders.split(",")
    if any(n in ("fastapi-optimum", "infinity") for n in names) and not any(args.optimum_dir.glob("*quantized.onnx")):
        if args.run_dir is None:
            raise SystemExit(f"{args.optimum_dir} holds no Optimum graph: give --run-dir to build it")
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from contenders import optimum_classifier_dir

        graph, recipe = optimum_classifier_dir(
            args.run_dir, args.optimum_dir.parent / (args.optimum_dir.name + "-work")
        )
        args.optimum_dir.mkdir(parents=True, exist_ok=True)
        for item in graph.parent.iterdir():
            (args.optimum_dir / item.name).write_bytes(item.read_bytes())
        print(f"Optimum int8 graph built: {recipe}", flush=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "texts": len(texts),
        "max_length": clf.max_length,
        "contenders": {},
        "skipped": {},
    }
    result["in_process"] = in_process(clf, texts)
    print(json.dumps(result["in_process"]), flush=True)
    servers: dict[str, tuple[Contender, subprocess.Popen, int]] = {}
    try:
        for name in names:
            port = free_port()
            contender = contenders(args, port)[name]
            if name == "infinity" and not Path(contender.command[0]).exists():
                result["skipped"][name] = f"{contender.command[0]} is absent (scripts/infinity-venv.sh builds it)"
                continue
            log = Path(os.environ.get("TMPDIR", "/tmp")) / f"edge-sent-serve-bench-{name}.log"
            try:
                servers[name] = (contender, start(contender, port, log), port)
            except RuntimeError as exc:
                result["skipped"][name] = str(exc).splitlines()[0] + f" (log: {log})"
                print(result["skipped"][name], flush=True)
        for name, (_, proc, _) in servers.items():
            result["contenders"][name] = {"rows": [], "rss_mb_start": rss_mb(proc.pid)}
        # the machine is shared: every level measures the offline reference and then every contender, in an
        # order that rotates from level to level, so that each ratio compares figures taken minutes apart at most
        result["offline_by_level"] = []
        for index, c in enumerate(levels):
            offline = offline_rate(clf, texts[: args.offline_texts])
            result["offline_by_level"].append({"concurrency": c, "texts_per_s": offline})
            print(json.dumps({"offline": offline, "concurrency": c}), flush=True)
            if c == 1:  # the one-client goal compares with this, measured just before
                result["single_p50_ms_adjacent"] = single_p50_ms(clf, texts[:80])
            order = list(servers)[index % len(servers) :] + list(servers)[: index % len(servers)]
            for name in order:
                contender, proc, port = servers[name]
                url = f"http://127.0.0.1:{port}{contender.route}"
                row = load_level(url, contender, texts, c, args.requests, args.warmup)
                row["vs_offline"] = row["texts_per_s"] / offline
                result["contenders"][name]["rows"].append(row)
                print(json.dumps({"contender": name, **row}), flush=True)
        for name, (_, proc, _) in servers.items():
            result["contenders"][name]["rss_mb_end"] = rss_mb(proc.pid)
    finally:
        for _, proc, _ in servers.values():
            stop(proc)
    if args.overload_queue:
        result["overload"] = overload(args, texts)
        print(json.dumps(result["overload"]), flush=True)
    report(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def report(result: dict) -> None:
    ip = result["in_process"]
    head = "| contender | clients | texts/s | × offline | p50 ms | p90 ms | p99 ms | errors |"
    print(f"\n{head}\n|---|---|---|---|---|---|---|---|")
    for name, data in result["contenders"].items():
        for row in data["rows"]:
            print(
                f"| {name} | {row['concurrency']} | {row['texts_per_s']:.1f} | {row['vs_offline']:.2f} | "
                f"{row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
            )
    for level in result["offline_by_level"]:
        print(f"offline before the {level['concurrency']}-client level: {level['texts_per_s']:.1f} texts/s")
    if "single_p50_ms_adjacent" in result:
        print(f"in-process single p50 just before the 1-client level: {result['single_p50_ms_adjacent']:.1f} ms")
    print(
        f"\nin-process Classifier.predict: {ip['offline_texts_per_s']:.1f} texts/s (batch 32), "
        f"single text p50 {ip['single_p50_ms']:.2f} ms ({ip['variant']}, {ip['provider']})"
    )
    for name, why in result["skipped"].items():
        print(f"skipped {name}: {why}")


if __name__ == "__main__":
    main()
