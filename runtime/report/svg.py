"""The evaluation report's figures as inline SVG (no plotting library, no script): a confusion matrix, a
reliability diagram, the |Δprob| distribution per variant and batch-of-one latency per variant.

Every figure carries its axis labels, units and legend as SVG text, laid out so that no two texts overlap (the
report's headless-Chromium test measures their boxes)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

BLUE, RED, AMBER, GREY, INK = "#2563eb", "#dc2626", "#d97706", "#9ca3af", "#111827"
CHAR_PX = 7.2  # a generous width of one character at 12 px, for laying out labels


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    w, h = math.ceil(width), math.ceil(height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="{escape(label)}" font-family="system-ui, sans-serif" font-size="12">'
        + "".join(body)
        + "</svg>"
    )


def _attrs(style: dict[str, str]) -> str:
    return "".join(f' {k.replace("_", "-")}="{v}"' for k, v in style.items())


def _text(x: float, y: float, text: str, anchor: str = "middle", raw: bool = False, **style: str) -> str:
    """A text element; `raw`: `text` is already SVG markup (a <tspan> superscript)."""
    body = text if raw else escape(text)
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{_attrs(style)}>{body}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, **style: str) -> str:
    size = f'width="{max(w, 0):.1f}" height="{max(h, 0):.1f}"'
    return f'<rect x="{x:.1f}" y="{y:.1f}" {size} fill="{fill}"{_attrs(style)}/>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = INK, **style: str) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{_attrs(style)}/>'


def _fit(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def power_of_ten(exponent: int) -> str:
    """`10⁻⁷` as SVG markup: the exponent a raised, smaller <tspan>."""
    return f'10<tspan dy="-5" font-size="9">{"−" if exponent < 0 else ""}{abs(exponent)}</tspan>'


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 × 10^k) that cuts `span` into about `ticks` parts."""
    raw = max(span, 1e-12) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw))


def confusion(matrix: list[list[int]], labels: list[str]) -> str:
    """Rows: true label, columns: predicted; a cell's shade is its share of the row."""
    cell, top = 72, 56
    left = 24 + CHAR_PX * min(14, max((len(label) for label in labels), default=1))
    n = len(labels)
    body = [_text(left + n * cell / 2, 18, "predicted", font_weight="bold")]
    body.append(
        _text(12, top + n * cell / 2, "true", font_weight="bold", transform=f"rotate(-90 12 {top + n * cell / 2})")
    )
    for j, label in enumerate(labels):
        body.append(_text(left + j * cell + cell / 2, top - 10, _fit(label, 9)))
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        body.append(_text(left - 8, top + i * cell + cell / 2 + 4, _fit(label, 14), anchor="end"))
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            body.append(_rect(left + j * cell, top + i * cell, cell - 2, cell - 2, BLUE, fill_opacity=f"{share:.3f}"))
            colour = "white" if share > 0.55 else INK
            body.append(_text(left + j * cell + cell / 2, top + i * cell + cell / 2 - 2, str(count), fill=colour))
            body.append(_text(left + j * cell + cell / 2, top + i * cell + cell / 2 + 14, f"{share:.0%}", fill=colour))
    return _svg(left + n * cell + 10, top + n * cell + 10, body, "confusion matrix")


def _legend(x: float, y: float, items: list[tuple[str, str]]) -> list[str]:
    """Swatches with their labels, one a line."""
    out = []
    for k, (colour, label) in enumerate(items):
        yy = y + k * 17
        if colour == "diagonal":
            out.append(_line(x, yy - 4, x + 12, yy - 4, stroke_dasharray="4 3"))
        else:
            out.append(_rect(x, yy - 10, 12, 10, colour, fill_opacity="0.8"))
        out.append(_text(x + 18, yy, label, anchor="start", font_size="11"))
    return out


def reliability(bins: list[dict[str, Any]], title: str, ece: float, num_labels: int = 2) -> str:
    """Accuracy per confidence bin (bars) against the diagonal, the gap to the bin's mean confidence (red: the model
    is over-confident there, amber: under-confident) and the texts per bin above the plot. The confidence axis
    starts where a top probability can start, 1/num_labels, rounded down to a tenth."""
    size, left, top = 280, 56, 58
    lo = math.floor(10 / max(num_labels, 1)) / 10 if num_labels > 1 else 0.0

    def x(c: float) -> float:
        return left + (max(c, lo) - lo) / (1 - lo) * size

    def y(a: float) -> float:
        return top + size - a * size

    body = [_text(left + size / 2, 16, f"{title} · ECE {ece:.4f}", font_weight="bold")]
    body.append(_rect(left, top, size, size, "none", stroke=GREY))
    step = 0.1 if 1 - lo <= 0.5 else 0.2
    for k in range(round((1 - lo) / step) + 1):
        tick = lo + k * step
        body += [_line(x(tick), y(0), x(tick), y(0) + 4), _text(x(tick), y(0) + 20, f"{tick:.1f}")]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body += [_line(left - 4, y(tick), left, y(tick)), _text(left - 7, y(tick) + 4, f"{tick:g}", anchor="end")]
    body.append(_text(left - 7, top - 12, "texts", anchor="end", font_size="10", fill="#4b5563"))
    for b in bins:
        if not b["n"] or b["upper"] <= lo:
            continue
        x0, x1 = x(b["lower"]), x(b["upper"])
        body.append(_rect(x0, y(b["accuracy"]), x1 - x0 - 1, b["accuracy"] * size, BLUE, fill_opacity="0.8"))
        low, high = sorted((b["accuracy"], b["confidence"]))
        gap = RED if b["confidence"] > b["accuracy"] else AMBER
        body.append(_rect(x0, y(high), x1 - x0 - 1, (high - low) * size, gap, fill_opacity="0.45"))
        narrow = x1 - x0 < CHAR_PX * len(str(b["n"])) * 0.8 + 4
        mid = (x0 + x1) / 2
        turn = f"rotate(-90 {mid:.1f} {top - 12:.1f})" if narrow else "rotate(0)"
        body.append(_text(mid, top - 12, str(b["n"]), "start" if narrow else "middle", font_size="10", transform=turn))
    body.append(_line(x(lo), y(lo), x(1), y(1), stroke_dasharray="4 3"))
    body.append(_text(left + size / 2, y(0) + 38, "confidence (top probability)"))
    body.append(_text(16, top + size / 2, "accuracy", transform=f"rotate(-90 16 {top + size / 2})"))
    legend = [(BLUE, "accuracy of the bin's texts"), ("diagonal", "perfect calibration")]
    legend += [(RED, "over-confident gap"), (AMBER, "under-confident gap")]
    body += _legend(left, y(0) + 60, legend)
    return _svg(left + size + 16, y(0) + 60 + 17 * len(legend), body, f"reliability diagram {title}")


def deltas(rows: dict[str, dict[str, Any]]) -> str:
    """Per variant, the share of texts whose largest |Δprob| against fp32 falls in each decade (0 first), printed
    on each bar."""
    col, row_h, top = 58, 58, 30
    names = list(rows)
    left = 20 + CHAR_PX * max((len(n) for n in names), default=4)
    edges = next(iter(rows.values()))["histogram"]["edges"] if rows else [0.0, 1.0]
    width = col * len(edges)  # the exact-zero column, then one per decade
    body = [_text(left + width / 2, 16, "largest |Δprob| against fp32: share of texts per bin", font_weight="bold")]
    for i, name in enumerate(names):
        record = rows[name]
        counts = [record["zero"], *record["histogram"]["counts"]]
        total = sum(counts) or 1
        base = top + (i + 1) * row_h
        body.append(_text(left - 8, base - row_h / 2 + 8, name, anchor="end"))
        body.append(_rect(left, base, width, 1, GREY))
        for k, count in enumerate(counts):
            if not count:
                continue
            share = count / total
            h = (row_h - 20) * share
            body.append(_rect(left + k * col + 3, base - h, col - 6, h, BLUE, fill_opacity="0.8"))
            label = f"{share:.0%}" if share >= 0.01 else "<1%"
            body.append(_text(left + k * col + col / 2, base - h - 3, label, font_size="10"))
    axis = top + len(names) * row_h + 18
    labels = ["0"] + ["≤ " + power_of_ten(round(math.log10(e))) for e in edges[1:]]
    for k, label in enumerate(labels):
        body.append(_text(left + k * col + col / 2, axis, label, raw=True))
    body.append(_text(left + width / 2, axis + 22, "the largest change of any label's probability for a text"))
    return _svg(left + width + 12, axis + 30, body, "probability differences against fp32")


def latency(rows: dict[str, dict[str, float]]) -> str:
    """Batch-of-one latency per variant: the bar is the median (its value written on it), the whisker runs on to
    p90 (long tick) and p99 (short tick); an axis in milliseconds."""
    width, bar_h, gap, top = 440, 22, 12, 46
    names = list(rows)
    left = 20 + CHAR_PX * max((len(n) for n in names), default=4)
    slowest = max((r["p99"] for r in rows.values()), default=1.0) or 1.0
    step = nice_step(slowest)
    axis_max = step * math.ceil(slowest / step - 1e-9)

    def x(ms: float) -> float:
        return left + width * ms / axis_max

    body = [_text(left + width / 2, 16, "one text at a time: milliseconds per text", font_weight="bold")]
    legend = "bar: median (its value on it) · whisker: to p90 (long tick) and p99 (short tick)"
    body.append(_text(left + width / 2, 33, legend, font_size="11", fill="#4b5563"))
    for i, name in enumerate(names):
        r = rows[name]
        y = top + i * (bar_h + gap)
        mid = y + bar_h / 2
        body.append(_text(left - 8, mid + 4, name, anchor="end"))
        body.append(_rect(left, y, x(r["p50"]) - left, bar_h, BLUE, fill_opacity="0.8"))
        body.append(_line(x(r["p50"]), mid, x(r["p99"]), mid, stroke_width="1.5"))
        body.append(_line(x(r["p90"]), mid - 8, x(r["p90"]), mid + 8, stroke_width="2"))
        body.append(_line(x(r["p99"]), mid - 5, x(r["p99"]), mid + 5, stroke_width="1.5"))
        value = f"{r['p50']:.2f} ms"
        if x(r["p50"]) - left > CHAR_PX * len(value) + 8:
            body.append(_text(x(r["p50"]) - 5, mid + 4, value, anchor="end", fill="white"))
        else:  # too short a bar to write on: after the whisker, named
            body.append(_text(x(r["p99"]) + 6, mid + 4, f"median {value}", anchor="start"))
    axis = top + len(names) * (bar_h + gap)
    body.append(_line(left, axis, left + width, axis))
    for k in range(round(axis_max / step) + 1):
        tick = k * step
        body += [_line(x(tick), axis, x(tick), axis + 4), _text(x(tick), axis + 17, f"{tick:g}")]
    body.append(_text(left + width / 2, axis + 36, "milliseconds (batch of 1)"))
    return _svg(left + width + 120, axis + 44, body, "latency per variant")
