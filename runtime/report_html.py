"""`edge-sent eval --report`: one self-contained HTML page (inline CSS and SVG; no script, no font, no CDN)."""

from __future__ import annotations

from html import escape
from typing import Any

from edge_sent.runtime import report_svg

STYLE = """
body { font-family: system-ui, sans-serif; color: #111827; margin: 24px auto; max-width: 980px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #4b5563; font-size: 13px; } .note { background: #fef3c7; padding: 8px 12px; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 12px 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 12px; color: #4b5563; max-width: 560px; }
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(figure_id: str, svg: str, caption: str) -> str:
    return f'<figure id="{figure_id}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def _summary(ev: dict[str, Any]) -> str:
    cal = ev["calibration"]
    rows = [
        ["texts", str(ev["n"])],
        ["accuracy", f"{ev['accuracy']:.4f}"],
        ["macro-F1", f"{ev['macro_f1']:.4f}"],
        ["temperature T", f"{cal['temperature']:.4f}" + ("" if "before" in cal else " (not calibrated)")],
        ["ECE (15 bins), as exported", f"{cal['after']['ece']:.4f}"],
    ]
    if "before" in cal:
        rows.append(["ECE (15 bins), before calibration", f"{cal['before']['ece']:.4f}"])
    rows += [["texts/s (batches of the eval)", f"{ev['texts_per_s']:.1f}"], ["truncated", str(ev["truncated"])]]
    labels = [
        [r["label"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])]
        for r in ev["per_label"]
    ]
    return _table(["", "value"], rows) + _table(["label", "precision", "recall", "F1", "support"], labels)


def _calibration(ev: dict[str, Any]) -> str:
    cal = ev["calibration"]
    after = report_svg.reliability(cal["after"]["bins"], "as exported", cal["after"]["ece"])
    parts = []
    if "before" in cal:
        before = report_svg.reliability(cal["before"]["bins"], "before calibration", cal["before"]["ece"])
        parts.append(_figure("reliability-before", before, "softmax(logits × T): the head's raw probabilities."))
        caption = f"The bundle's probabilities: its graph divides the logits by T = {cal['temperature']:.4f}."
    else:
        caption = "This bundle is not calibrated (T = 1): exported with a run trained with --no-calibrate or no dev."
    parts.append(_figure("reliability-after", after, caption))
    return "".join(parts)


def _variants(cmp: dict[str, Any]) -> str:
    rows = []
    for name, r in cmp["variants"].items():
        agree = r["vs_fp32"]
        low, high = agree["ci95"]
        rows.append(
            [
                name,
                f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] else "-",
                f"{r['accuracy']:.4f}",
                f"{agree['label_agreement']:.2%} ({low:.1%}–{high:.1%})",
                f"{r['delta']['quantiles']['p50']:.1e} / {r['delta']['quantiles']['p99']:.1e} / "
                f"{r['delta']['quantiles']['max']:.1e}",
                f"{r['texts_per_s']:.1f}",
                "{p50:.2f} / {p90:.2f} / {p99:.2f}".format(**r["latency_ms"]),
            ]
        )
    header = [
        "variant",
        "graph file",
        "accuracy",
        "labels as fp32 (95% CI)",
        "|Δprob| p50 / p99 / max",
        f"texts/s (batch {cmp['batch_size']})",
        f"1 text, ms p50 / p90 / p99 (n {cmp['latency_texts']})",
    ]
    skipped = "".join(f"<li>{escape(n)}: {escape(why)}</li>" for n, why in cmp["skipped"].items())
    delta_rows = {n: r["delta"] for n, r in cmp["variants"].items() if n != "fp32"}
    figures = _figure(
        "latency",
        report_svg.latency({n: r["latency_ms"] for n, r in cmp["variants"].items()}),
        "Measured in this run, interleaved: each text went through every variant before the next text.",
    )
    if delta_rows:
        caption = "0: the same probabilities as fp32; ≤1e-k: the largest difference is at most 10^-k."
        figures = _figure("deltas", report_svg.deltas(delta_rows), caption) + figures
    machine = cmp["machine"]
    where = f"onnxruntime {machine['onnxruntime']}; CPU flags: {', '.join(machine['cpu_flags']) or 'none found'}"
    return (
        _table(header, rows)
        + (f"<p>Not run here:</p><ul>{skipped}</ul>" if skipped else "")
        + f'<p class="meta">{escape(where)}</p>'
        + figures
    )


def render(report: dict[str, Any]) -> str:
    ev = report["evaluation"]
    note = (
        '<p class="note">This bundle\'s encoder has RANDOM weights: its accuracy means nothing.</p>'
        if ev["random_weights"]
        else ""
    )
    title = f"edge-sent eval · {report['data']}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">bundle {escape(report["bundle"])} · variant {escape(ev["variant"])} on '
        f"{escape(ev['provider'])} · {escape(report['created'])} · <code>{escape(report['command'])}</code></p>",
        note,
        "<h2>Accuracy</h2>",
        _summary(ev),
        _figure(
            "confusion", report_svg.confusion(ev["confusion"], ev["labels"]), "Rows: true label; columns: predicted."
        ),
        "<h2>Calibration</h2>",
        _calibration(ev),
    ]
    if report.get("comparison"):
        body += ["<h2>Variants against fp32, measured in this run</h2>", _variants(report["comparison"])]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
