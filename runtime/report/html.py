"""`edge-sent eval --report`: one self-contained HTML page (inline CSS and SVG; no script, no font, no CDN).

It opens with a verdict: the variant `auto` runs on this host and why (the sentence `edge-sent tune` prints, from
the same rule and measurements: `edge_sent.runtime.host.verdict`), the most accurate variant on these texts,
what was not measured, and the caveats (truncated texts)."""

from __future__ import annotations

from html import escape
from typing import Any

from edge_sent.runtime.report import svg as report_svg

STYLE = """
body { font-family: system-ui, sans-serif; color: #111827; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #4b5563; font-size: 13px; } .note { background: #fef3c7; padding: 8px 12px; border-radius: 4px; }
.verdict { border-left: 4px solid #2563eb; background: #eff6ff; padding: 8px 14px; margin: 16px 0; }
.verdict p { font-size: 15px; margin: 6px 0; } .verdict ul { margin: 6px 0; padding-left: 20px; font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
table.wide { width: 100%; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 10px; text-align: right; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 12px 16px 12px 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 12px; color: #4b5563; max-width: 560px; }
"""

# the ISA features that decide which onnxruntime kernels run (int8 dot products, bf16, wide vectors), first first
KEY_FLAGS = (
    "amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16", "avx512f", "avx_vnni", "avx2", "fma",
    "sve", "i8mm", "asimddp", "bf16", "asimd",
)  # fmt: skip


def cpu_summary(flags: list[str], machine: str | None = None) -> str:
    """`x86-64 AVX-512 VNNI (avx512_vnni, avx512f, avx2, fma; 21 ISA flags in all)`: the class and the flags that
    matter for the variants' speed and answers."""
    have = set(flags)
    if have & {"asimd", "asimddp", "sve", "i8mm"} or (machine or "").startswith(("aarch64", "arm")):
        extras = [name for flag, name in (("asimddp", "dotprod"), ("i8mm", "i8mm"), ("sve", "SVE")) if flag in have]
        kind = "Arm64 NEON" + (" + " + ", ".join(extras) if extras else "")
    elif "amx_int8" in have:
        kind = "x86-64 AMX"
    elif "avx512_vnni" in have:
        kind = "x86-64 AVX-512 VNNI"
    elif "avx512f" in have:
        kind = "x86-64 AVX-512"
    elif "avx_vnni" in have:
        kind = "x86-64 AVX2 + AVX-VNNI"
    else:
        kind = "x86-64 AVX2" if "avx2" in have else (machine or "CPU")
    key = [flag for flag in KEY_FLAGS if flag in have][:4]
    return f"{kind} ({', '.join(key) or 'no SIMD flags found'}; {len(flags)} ISA flags in all)"


def _table(header: list[str], rows: list[list[str]], wide: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    css = ' class="wide"' if wide else ""
    return f"<table{css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(figure_id: str, svg: str, caption: str, caption_html: bool = False) -> str:
    text = caption if caption_html else escape(caption)
    return f'<figure id="{figure_id}">{svg}<figcaption>{text}</figcaption></figure>'


def _truncation(ev: dict[str, Any]) -> str | None:
    if not ev["truncated"]:
        return None
    share = ev["truncated"] / ev["n"] if ev["n"] else 0.0
    return (
        f"{share:.0%} of the texts ({ev['truncated']} of {ev['n']}) are longer than the bundle's max length "
        f"({ev.get('max_length', '?')} tokens) and were cut there: their labels come from their beginning only."
    )


def verdict_section(report: dict[str, Any]) -> str:
    """The verdict at the top: what to deploy here and why, the most accurate variant, what was not measured."""
    verdict, ev, cmp = report.get("verdict"), report["evaluation"], report.get("comparison") or {}
    items: list[str] = []
    rows = cmp.get("variants") or {}
    if rows:
        best = max(r["accuracy"] for r in rows.values())
        top = [name for name, r in rows.items() if r["accuracy"] == best]
        others = ", ".join(f"{n} {r['accuracy']:.4f}" for n, r in rows.items() if n not in top)
        items.append(
            f"Most accurate on these {ev['n']} texts: {' and '.join(top)} (accuracy {best:.4f})"
            + (f"; then {others}." if others else ".")
        )
    missing = [f"{name} ({why})" for name, why in (cmp.get("skipped") or {}).items()]
    machine = cmp.get("machine") or {}
    where = cpu_summary(machine.get("cpu_flags") or [], machine.get("machine")) if machine else "this CPU"
    missing.append(f"other CPUs and providers: speed and quantized answers differ between CPU classes (here: {where})")
    items.append("Not measured here: " + "; ".join(missing) + ".")
    caveat = _truncation(ev)
    if caveat:
        items.append("Caveat: " + caveat)
    if ev["random_weights"]:
        items.append("Caveat: the encoder has random weights, so accuracy means nothing here.")
    lis = "".join(f"<li>{escape(item)}</li>" for item in items)
    if verdict is None:
        return f'<section id="verdict" class="verdict"><ul>{lis}</ul></section>'
    how = "measured on this host" if verdict["decided_by"] == "this host" else "from the export's recorded ranking"
    head = (
        f"<p><strong>Deploy {escape(verdict['variant'])} on this host</strong> ({escape(verdict['provider'])}, "
        f"{escape(how)}: the rule <code>--variant auto</code> and <code>edge-sent tune</code> apply): "
        f"{escape(verdict['reason'])}</p>"
    )
    return (
        f'<section id="verdict" class="verdict" data-variant="{escape(verdict["variant"])}">{head}<ul>{lis}</ul>'
        "</section>"
    )


def _summary(ev: dict[str, Any]) -> str:
    cal = ev["calibration"]
    rows = [
        ["texts", str(ev["n"])],
        ["accuracy", f"{ev['accuracy']:.4f}"],
        ["macro-F1", f"{ev['macro_f1']:.4f}"],
        ["calibration in the graph", cal["described"]],
        ["ECE (15 bins), as exported", f"{cal['after']['ece']:.4f}"],
    ]
    if "before" in cal:
        rows.append(["ECE (15 bins), before calibration", f"{cal['before']['ece']:.4f}"])
    truncated = f"{ev['truncated']} ({ev['truncated'] / ev['n']:.0%})" if ev["n"] else "0"
    rows += [["texts/s (batches of the eval)", f"{ev['texts_per_s']:.1f}"], ["truncated", truncated]]
    labels = [
        [r["label"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])]
        for r in ev["per_label"]
    ]
    return _table(["", "value"], rows) + _table(["label", "precision", "recall", "F1", "support"], labels)


def _calibration(ev: dict[str, Any]) -> str:
    cal = ev["calibration"]
    k = len(ev["labels"])
    after = report_svg.reliability(cal["after"]["bins"], "as exported", cal["after"]["ece"], k)
    parts = []
    if "before" in cal:
        before = report_svg.reliability(cal["before"]["bins"], "before calibration", cal["before"]["ece"], k)
        parts.append(_figure("reliability-before", before, "The head's raw probabilities (calibration undone)."))
        caption = f"The bundle's probabilities, calibrated in its graph: {cal['described']}."
    else:
        caption = "This bundle's graph applies no calibration (T = 1)."
    if cal.get("chosen_because"):
        caption += f" Chosen on dev: {cal['chosen_because']}."
    parts.append(_figure("reliability-after", after, caption))
    return "".join(parts)


def _variants(cmp: dict[str, Any]) -> str:
    rows = []
    for name, r in cmp["variants"].items():
        agree = r["vs_fp32"]
        low, high = agree["ci95"]
        q = r["delta"]["quantiles"]
        rows.append(
            [
                name,
                f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] else "-",
                f"{r['accuracy']:.4f}",
                f"{agree['label_agreement']:.2%} ({low:.1%}–{high:.1%})",
                f"{q['p50']:.1e} / {q['p99']:.1e} / {q['max']:.1e}",
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
        caption = "0: exactly fp32's probabilities; ≤ 10<sup>−k</sup>: the largest difference is at most that."
        figures = _figure("deltas", report_svg.deltas(delta_rows), caption, caption_html=True) + figures
    machine = cmp["machine"]
    where = f"onnxruntime {machine['onnxruntime']} · CPU: {cpu_summary(machine['cpu_flags'], machine.get('machine'))}"
    return (
        _table(header, rows, wide=True)
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
        verdict_section(report),
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
