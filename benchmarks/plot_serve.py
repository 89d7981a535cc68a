"""Plot benchmarks/serve.json: throughput and p50/p99 latency against concurrency, every contender.

.venv/bin/python benchmarks/plot_serve.py benchmarks/serve.json benchmarks/serve.png   (needs the bench extra)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: Path, target: Path) -> None:
    data = json.loads(source.read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, (name, contender) in enumerate(data["contenders"].items()):
        rows = contender["rows"]
        clients = [r["concurrency"] for r in rows]
        color = f"C{index}"
        left.plot(clients, [r["texts_per_s"] for r in rows], marker="o", color=color, label=name)
        right.plot(clients, [r["p50_ms"] for r in rows], marker="o", color=color, label=f"{name} p50")
        right.plot(clients, [r["p99_ms"] for r in rows], marker="x", linestyle="--", color=color, label=f"{name} p99")
    if "offline_by_level" in data:  # the offline reference measured just before each level
        levels = data["offline_by_level"]
        left.plot(
            [r["concurrency"] for r in levels],
            [r["texts_per_s"] for r in levels],
            color="grey",
            linestyle=":",
            label="Classifier.predict (batch 32)",
        )
    else:
        left.axhline(data["in_process"]["offline_texts_per_s"], color="grey", linestyle=":", label="Classifier.predict")
    right.set_yscale("log")
    for axis, label in ((left, "texts/s"), (right, "latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients (one text per request)")
        axis.set_ylabel(label)
        axis.legend(fontsize=7)
    fig.suptitle(f"edge-sent serve vs other servers, {data['in_process']['variant']} on {data['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
