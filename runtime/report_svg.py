"""The evaluation report's figures as inline SVG (no plotting library, no script): a confusion matrix, a
reliability diagram, the |Δprob| distribution per variant and batch-of-one latency per variant."""

from __future__ import annotations

import math
from html import escape
from typing import Any

BLUE, RED, GREY, INK = "#2563eb", "#dc2626", "#9ca3af", "#111827"


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}" font-family="system-ui, sans-serif" font-size="12">'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "middle", **style: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in style.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, **style: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in style.items())
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}"{extra}/>'


def confusion(matrix: list[list[int]], labels: list[str]) -> str:
    """Rows: true label, columns: predicted; a cell's shade is its share of the row."""
    cell, left, top = 72, 120, 56
    n = len(labels)
    body = [_text(left + n * cell / 2, 18, "predicted", font_weight="bold")]
    body.append(
        _text(16, top + n * cell / 2, "true", font_weight="bold", transform=f"rotate(-90 16 {top + n * cell / 2})")
    )
    for j, label in enumerate(labels):
        body.append(_text(left + j * cell + cell / 2, top - 10, label[:14]))
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        body.append(_text(left - 8, top + i * cell + cell / 2 + 4, label[:14], anchor="end"))
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            body.append(_rect(left + j * cell, top + i * cell, cell - 2, cell - 2, BLUE, fill_opacity=f"{share:.3f}"))
            colour = "white" if share > 0.55 else INK
            body.append(_text(left + j * cell + cell / 2, top + i * cell + cell / 2, str(count), fill=colour))
            body.append(_text(left + j * cell + cell / 2, top + i * cell + cell / 2 + 16, f"{share:.0%}", fill=colour))
    return _svg(left + n * cell + 10, top + n * cell + 10, body, "confusion matrix")


def reliability(bins: list[dict[str, Any]], title: str, ece: float) -> str:
    """Accuracy per confidence bin (bars) against the diagonal; red: the gap to the bin's mean confidence."""
    size, left, top = 260, 44, 28
    body = [_text(left + size / 2, 16, f"{title} · ECE {ece:.4f}", font_weight="bold")]
    body.append(_rect(left, top, size, size, "none", stroke=GREY))
    for tick in (0.0, 0.5, 1.0):
        body.append(_text(left + tick * size, top + size + 16, f"{tick:g}"))
        body.append(_text(left - 6, top + size - tick * size + 4, f"{tick:g}", anchor="end"))
    for b in bins:
        if not b["n"]:
            continue
        x, w = left + b["lower"] * size, (b["upper"] - b["lower"]) * size
        body.append(_rect(x, top + size - b["accuracy"] * size, w - 1, b["accuracy"] * size, BLUE, fill_opacity="0.8"))
        low, high = sorted((b["accuracy"], b["confidence"]))
        body.append(_rect(x, top + size - high * size, w - 1, (high - low) * size, RED, fill_opacity="0.35"))
    body.append(
        f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" stroke="{INK}" stroke-dasharray="4 3"/>'
    )
    body.append(_text(left + size / 2, top + size + 32, "confidence (top probability)"))
    return _svg(left + size + 12, top + size + 40, body, f"reliability diagram {title}")


def deltas(rows: dict[str, dict[str, Any]]) -> str:
    """Per variant, the share of texts whose largest |Δprob| against fp32 falls in each decade (0 first)."""
    left, width, row_h, top = 110, 480, 46, 24
    names = list(rows)
    edges = next(iter(rows.values()))["histogram"]["edges"] if rows else [0.0, 1.0]
    n_bins = len(edges)  # the exact-zero column, then one per decade
    col = width / n_bins
    body = []
    labels = ["0"] + [f"≤1e{round(math.log10(e))}" for e in edges[1:]]
    for k, label in enumerate(labels):
        body.append(_text(left + k * col + col / 2, top + len(names) * row_h + 16, label))
    for i, name in enumerate(names):
        record = rows[name]
        counts = [record["zero"], *record["histogram"]["counts"]]
        total = sum(counts) or 1
        y = top + i * row_h
        body.append(_text(left - 8, y + row_h / 2 + 4, name, anchor="end"))
        body.append(_rect(left, y + row_h - 1, width, 1, GREY))
        for k, count in enumerate(counts):
            h = (row_h - 8) * count / total
            body.append(_rect(left + k * col + 2, y + row_h - 1 - h, col - 4, h, BLUE, fill_opacity="0.8"))
    body.append(_text(left + width / 2, 14, "largest |Δprob| against fp32, share of texts per bin", font_weight="bold"))
    return _svg(left + width + 10, top + len(names) * row_h + 28, body, "probability differences against fp32")


def latency(rows: dict[str, dict[str, float]]) -> str:
    """Batch-of-one latency per variant: the bar is the median, the whisker reaches p90."""
    left, width, bar_h, top = 110, 420, 26, 28
    longest = max((r["p90"] for r in rows.values()), default=1.0) or 1.0
    body = [_text(left + width / 2, 16, "one text at a time: median (bar) and p90 (whisker), ms", font_weight="bold")]
    for i, (name, r) in enumerate(rows.items()):
        y = top + i * (bar_h + 8)
        body.append(_text(left - 8, y + bar_h / 2 + 4, name, anchor="end"))
        body.append(_rect(left, y, width * r["p50"] / longest, bar_h, BLUE, fill_opacity="0.8"))
        x90 = left + width * r["p90"] / longest
        body.append(f'<line x1="{x90:.1f}" y1="{y + 4}" x2="{x90:.1f}" y2="{y + bar_h - 4}" stroke="{INK}"/>')
        body.append(_text(min(x90 + 6, left + width - 4), y + bar_h / 2 + 4, f"{r['p50']:.1f}", anchor="start"))
    return _svg(left + width + 50, top + len(rows) * (bar_h + 8) + 8, body, "latency per variant")
