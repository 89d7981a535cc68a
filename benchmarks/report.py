"""Render benchmark results (results.json) as markdown tables and a latency plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def tables(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}, torch {m['torch']}, "
        f"Python {m['python']}." + (f" CPU features: {' '.join(m['cpu_flags'])}." if m.get("cpu_flags") else ""),
        f"Encoder: {r['encoder']['spec']}"
        + (" (RANDOM weights: speed and size only)" if r.get("random_weights") else "")
        + f", max length {r['max_length']}. Optimum recipe: {r.get('optimum_recipe')}.",
        "",
    ]
    for threads, grid in r["latency"].items():
        names = list(grid)
        lengths = list(next(iter(grid.values())))
        lines += [
            f"### Latency, batch 1, {threads} thread(s): p50 ms (p90 / p99), and speed-up of the p50",
            "",
            "| contender | " + " | ".join(f"seq {n}" for n in lengths) + " | vs PyTorch @64 | vs Optimum @64 |",
            "|---" * (len(lengths) + 3) + "|",
        ]
        for name in names:
            cells = [
                f"{grid[name][n]['p50_ms']:.1f} ({grid[name][n]['p90_ms']:.1f} / {grid[name][n]['p99_ms']:.1f})"
                for n in lengths
            ]
            p64 = grid[name].get("64", {}).get("p50_ms")
            vs_t = _ratio(grid["PyTorch eager"]["64"]["p50_ms"], p64) if p64 else "-"
            vs_o = _ratio(grid["(c) Optimum int8"]["64"]["p50_ms"], p64) if p64 else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {vs_t} | {vs_o} |")
        lines.append("")
    if r.get("throughput"):
        tp = r["throughput"]
        a = tp["(a) PyTorch eager, padded to max length"]["texts_per_s"]
        b = tp["(b) PyTorch eager, padded to longest in batch"]["texts_per_s"]
        c = tp["(c) Optimum int8"]["texts_per_s"]
        lines += [
            "### Throughput on ChnSentiCorp test (real lengths), batch 32, most threads",
            "",
            "| contender | texts | texts/s | vs (a) | vs (b) | vs (c) |",
            "|---|---|---|---|---|---|",
        ]
        for name, v in tp.items():
            t = v["texts_per_s"]
            lines.append(f"| {name} | {v['texts']} | {t:.1f} | {_ratio(t, a)} | {_ratio(t, b)} | {_ratio(t, c)} |")
        lines.append("")
    if r.get("batch32x128"):
        lines += [
            "### Batch 32 x 128: effective ops/s against onnxruntime's GEMM ceiling",
            "",
            "| threads | contender | s | effective GOP/s | % of fp32 ceiling | % of int8 ceiling |",
            "|---|---|---|---|---|---|",
        ]
        for threads, eff in r["batch32x128"].items():
            ceil = r["ceiling"][threads]
            for name, v in eff.items():
                lines.append(
                    f"| {threads} | {name} | {v['b32x128_s']:.3f} | {v['ops_per_s'] / 1e9:.0f} | "
                    f"{100 * v['ops_per_s'] / ceil['fp32']:.0f}% | {100 * v['ops_per_s'] / ceil['int8']:.0f}% |"
                )
        lines.append("")
        lines.append(
            "Ceiling (onnxruntime's best GEMM over bert-base's shapes at 32 x 128; int8 = the better of "
            "MatMulInteger and DynamicQuantizeMatMul): "
            + "; ".join(
                f"{t} thread(s): fp32 {c['fp32'] / 1e9:.0f} GFLOP/s, int8 {c['int8'] / 1e9:.0f} GOP/s"
                + "".join(f", {k} {c[k] / 1e9:.0f}" for k in c if k.startswith("int8 "))
                for t, c in r["ceiling"].items()
            )
        )
        lines.append("")
    if r.get("sizes"):
        lines += ["### File sizes", "", "| file | MB |", "|---|---|"]
        lines += [f"| {k} | {v / 1e6:.1f} |" for k, v in r["sizes"].items()]
        lines.append("")
    if r.get("cold_start"):
        lines += [
            "### Cold start (fresh process → first label)",
            "",
            "| pipeline | wall s | peak RSS MB |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['wall_s']:.2f} | {v['peak_rss_mb']:.0f} |" for k, v in r["cold_start"].items()]
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(r["latency"]), figsize=(6 * len(r["latency"]), 4.5), squeeze=False)
    for ax, (threads, grid) in zip(axes[0], r["latency"].items(), strict=True):
        for name, series in grid.items():
            xs = [int(k) for k in series]
            ax.plot(xs, [series[k]["p50_ms"] for k in series], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens), batch 1")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title(f"{threads} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(tables(data))
