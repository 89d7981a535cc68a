"""How `info`, `tune` and `export` print a bundle and what `auto` does with it: key: value lines and narrow tables
that fit 100 columns (a terminal's own width when it is narrower), with no trailing spaces in a pipe.

One agreement figure per variant per host: the export's table shows the figure its recorded ranking uses
(`fidelity.recorded`), the host's the one measured here (`verdict.agreement_text`, a bound when the rerun stopped
early). The `auto` lines say which decision runs here and why the other does not.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from edge_sent.cli.common import console
from edge_sent.contract import Agreement, Manifest, VariantEntry
from edge_sent.fidelity import MIN_SPEEDUP, Choice, HostMeasure, host_candidates, recorded

if TYPE_CHECKING:
    from edge_sent.runtime.host.probe import HostResult
    from edge_sent.runtime.host.verdict import Verdict

WIDTH = 100  # the widest line `info` prints, in a pipe too


def width() -> int:
    return min(console.width, WIDTH)


def say(text: str, indent: str = "    ") -> None:
    """A line of prose, wrapped at `width()` with its continuation lines indented (never cut, no trailing space)."""
    lines = textwrap.wrap(text, width(), subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)
    for line in lines or [""]:  # (a path longer than the width stays whole, on a line of its own)
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def table(*columns: str, left: int = 1) -> Table:
    """A table without a title (the title is its own line, printed by `say`); the first `left` columns are
    left-aligned, the rest (numbers) right-aligned; a cell that does not fit wraps, it is never cut with "…"."""
    out = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for i, name in enumerate(columns):
        out.add_column(name, justify="left" if i < left else "right", overflow="fold")
    return out


def show(renderable: Any) -> None:
    console.print(renderable, width=width())


def _recorded_record(entry: VariantEntry, provider: str) -> tuple[float, str, Agreement | None] | None:
    """The agreement the recorded ranking uses for `entry` on `provider`, where it was measured, and its record."""
    measured = recorded(entry, provider)
    if measured is None:
        return None
    v = entry.verification
    if measured.provider == "openvino":
        record = entry.record.get("openvino") or {}
        found = Agreement.from_json(record.get("eval_vs_fp32")) or Agreement.from_json(record.get("vs_fp32"))
    else:
        found = {"eval set": v.eval_vs_fp32, "verification texts": v.vs_fp32}.get(measured.texts, v.host_check_vs_fp32)
    texts = "host-check texts" if measured.texts.endswith("host-check texts") else measured.texts
    return measured.agreement, texts, found


def recorded_agreement(entry: VariantEntry, provider: str = "cpu") -> str:
    """`61.5% of 200 (54.6–68.0%)`: the figure `auto_choice` compares with the floor, its count and interval."""
    found = _recorded_record(entry, provider)
    if found is None:
        return "-"
    share, _, record = found
    cell = f"{share:.1%}"
    if record is not None and record.n_texts:
        cell += f" of {record.n_texts}"
    if record is not None and record.ci95:
        cell += f" ({record.ci95[0] * 100:.1f}–{record.ci95[1]:.1%})"
    return cell


def overview(manifest: Manifest, root: Path) -> None:
    """The bundle in key: value lines, its variants' files, and what the export measured (one figure each)."""
    data = manifest.data
    enc = data["encoder"]
    say(f"bundle: {root}")
    say(f"encoder: {enc['spec']}" + (" (RANDOM weights: accuracy means nothing)" if manifest.random_weights else ""))
    say(f"labels: {', '.join(manifest.labels)} · max length {manifest.max_length} · {data.get('pooling')} pooling")
    files = manifest.files
    variants = table("variant", "file", "size", "eval acc", "batch-independent", left=2)
    measured = table("variant", "agreement with fp32 (95% CI)", "measured on", "max |Δprob|", "|Δlogit| vs torch")
    measured.columns[2].justify = "left"
    for name, entry in manifest.variants.items():
        v = entry.record
        file = files.get(entry.file)
        variants.add_row(
            name,
            entry.file,
            f"{file.bytes / 1e6:.1f} MB" if file else "?",
            f"{v['eval_accuracy']:.4f}" if "eval_accuracy" in v else "-",
            {True: "yes", False: "no"}.get(bool(v["batch_independent"]), "?") if "batch_independent" in v else "?",
        )
        found = _recorded_record(entry, "cpu") if name != "fp32" else None
        torch = (v.get("vs_torch") or {}).get("max_abs_dlogit")
        measured.add_row(
            name,
            "(the reference)" if name == "fp32" else recorded_agreement(entry),
            found[1] if found else "-",
            f"{found[2].max_abs_dprob:.3f}" if found and found[2] else "-",
            f"{torch:.2e}" if torch is not None else "-",
        )
    say("variants:")
    show(variants)
    say("recorded by the export (the figures its recorded ranking compares with the floor):")
    show(measured)


def host_speed(measured: dict[str, HostMeasure], floor: float) -> None:
    """Speed per variant as a table, then one agreement line per variant (a bound when the rerun stopped early)."""
    from edge_sent.runtime.host.verdict import agreement_text

    shapes = list(next(iter(measured.values())).ms) if measured else []
    speed = table("variant", *(f"p50 {s}" for s in shapes), f"slowest speed-up (≥ {MIN_SPEEDUP:.2f}×)")
    for m in measured.values():
        speed.add_row(m.variant, *(f"{m.ms[s]:.2f} ms" for s in shapes), f"{m.slowest:.2f}×")
    show(speed)
    say("agreement with fp32 here (host-check texts rerun on this host):")
    for m in measured.values():
        if m.agreement is None and m.slowest == 1.0:
            continue  # the float path itself
        dprob = f"; max |Δprob| {m.max_abs_dprob:.3f}" if m.max_abs_dprob is not None else ""
        say(f"  {m.variant}: {agreement_text(m, floor)}{dprob}", indent="      ")


def what_runs(manifest: Manifest, here: str, recorded_choice: Choice, host: HostResult | None) -> Verdict | None:
    """The decision `--variant auto` runs on this host: the host's measurements, or the recorded ranking when probing
    is off or the provider has no quantized candidate to measure; None while this host has not measured yet."""
    from edge_sent.runtime.host.probe import probing_enabled
    from edge_sent.runtime.host.verdict import RECORDED, Verdict, from_result

    if probing_enabled() and host is not None:
        return from_result(host, here)
    if probing_enabled() and host_candidates(manifest, here):
        return None
    return Verdict(here, recorded_choice.variant, recorded_choice.reason, RECORDED)


def engine_text(variant: str, provider: str) -> str:
    """The engine and its version that run `variant` on `provider` here: `OpenVINO 2026.4.1, bf16`."""
    from edge_sent.runtime.host.candidates import engine_label

    return engine_label(variant, provider)


def auto_lines(
    here: str,
    choices: dict[str, Choice],
    runs: Verdict | None,
    probing: bool,
    bundle: Path,
) -> None:
    """Which `auto` runs here (the host's decision, or the recorded ranking when probing is off or the provider has
    no quantized candidate to measure), why the other does not, and the recorded ranking on other providers."""
    from edge_sent.runtime.host.verdict import HOST

    say("--variant auto:")
    recorded_here = choices[here]
    if runs is None:
        say(
            f"  on this host ({here}): not measured yet: decided on first use (predict, eval, score, serve) or now "
            f"by `edge-sent tune {bundle}`; the recorded ranking's {recorded_here.variant} runs only with "
            "--no-probe or EDGE_SENT_PROBE=0",
            indent="      ",
        )
    else:
        how = "decided by measurements on this host" if runs.decided_by == HOST else "from the recorded ranking"
        on = engine_text(runs.variant, here)
        say(f"  runs on this host ({here}): {runs.variant} on {on}, {how} — {runs.reason}", indent="      ")
        if runs.decided_by == HOST:
            same = "the same variant" if recorded_here.variant == runs.variant else "not what runs here"
            say(
                f"  recorded ranking on {here}: {recorded_here.variant} ({same}: the export's figures decide only "
                f"with --no-probe or EDGE_SENT_PROBE=0) — {recorded_here.reason}",
                indent="      ",
            )
        elif not probing:
            say("  (probing is off here: EDGE_SENT_PROBE=0)", indent="      ")
    for provider, choice in choices.items():
        if provider != here:
            say(f"  on {provider} (recorded ranking): {choice.variant} — {choice.reason}", indent="      ")
