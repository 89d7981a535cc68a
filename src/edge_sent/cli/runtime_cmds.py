"""`predict`, `info`, `verify`: torch-free commands (onnxruntime, tokenizers, numpy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edge_sent.cli.common import console, err_console, error_line, print_json, user_errors
from edge_sent.cli.info_view import say
from edge_sent.cli.options import MinAgreementOpt, PrecisionOpt, ProbeOpt, ProviderOpt, ThreadsOpt, VariantOpt
from edge_sent.contract import MANIFEST, read_manifest
from edge_sent.errors import EdgeSentError
from edge_sent.fidelity import MIN_AGREEMENT, auto_choice
from edge_sent.integrity import verify_bundle
from edge_sent.providers import PROVIDERS


def moving_variants(platforms: dict[str, dict[str, Any]]) -> dict[str, str]:
    """variant -> where its labels differ from the export machine's (the device matrix's record in the manifest)."""
    moved = {}
    for variant, rows in platforms.items():
        differ = [
            f"{platform} {row['labels_identical']:.1%} of labels identical (max |Δp| {row['max_abs_dprob']:.2g})"
            for platform, row in rows.items()
            if isinstance(row, dict) and row.get("labels_identical", 1.0) < 1.0
        ]
        if differ:
            moved[variant] = "; ".join(differ)
    return moved


def strings_check(manifest: dict) -> dict:
    """The export's token-id check of the string-in graphs: mismatches per text set, with their classes."""
    check = (manifest.get("strings") or {}).get("token_check") or {}
    keys = ("n_texts", "mismatches", "mismatch_rate", "classes")
    out = {name: {k: check[name].get(k) for k in keys} for name in ("corpus", "adversarial") if name in check}
    if "code_points" in check:
        out["code_points"] = {k: check["code_points"].get(k) for k in ("n", "mismatches", "classes")}
    return out


def strings_summary(manifest: dict) -> list[str]:
    """Readable lines on the string-in graphs (none when the bundle has none)."""
    record = manifest.get("strings")
    if not record:
        return []
    graphs = ", ".join(f"{name} → {g['file']}" for name, g in (record.get("graphs") or {}).items())
    lines = [
        f"string-in graphs (text in, label out; onnxruntime-extensions {record.get('onnxruntime_extensions')}): "
        f"{graphs}"
    ]
    check = strings_check(manifest)
    for name in ("corpus", "adversarial"):
        if name in check:
            c = check[name]
            classes = "; ".join(f"{k}: {v}" for k, v in (c["classes"] or {}).items())
            lines.append(
                f"  token ids vs tokenizer.json, {name}: {c['mismatches']} of {c['n_texts']} texts differ "
                f"({c['mismatch_rate']:.2%}){' — ' + classes if classes else ''}"
            )
    if "code_points" in check:
        c = check["code_points"]
        classes = "; ".join(f"{k}: {v}" for k, v in (c["classes"] or {}).items())
        lines.append(f"  every code point: {c['mismatches']} of {c['n']} differ{' — ' + classes if classes else ''}")
    return lines


def _texts(texts: list[str] | None, file: Path | None, text_column: str, fmt: str | None) -> tuple[list[str], int]:
    from edge_sent.readers import read_records

    out: list[str] = list(texts or [])
    for position, text in enumerate(out):
        if not text.strip():
            raise EdgeSentError(f"text argument {position + 1} is empty or whitespace")
    skipped = 0
    if file is not None:
        for record in read_records(file, text_field=text_column, fmt=fmt):
            if record.text.strip():
                out.append(record.text)
            else:
                skipped += 1
    if not out:
        raise EdgeSentError("no texts to classify (give TEXT arguments, --file PATH, or --file - for stdin)")
    return out, skipped


@user_errors
def predict_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory written by `edge-sent export`.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="txt (a text a line), tsv, csv or jsonl; - for stdin.")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Force the file format: txt, tsv, csv, jsonl.")] = None,
    text_column: Annotated[str, typer.Option(help="Text column (tsv/csv) or key (jsonl).")] = "text_a",
    variant: VariantOpt = "auto",
    provider: ProviderOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    min_agreement: MinAgreementOpt = MIN_AGREEMENT,
    probe: ProbeOpt = None,
    batch_size: Annotated[int, typer.Option(help="Texts per batch (sorted by length, padded per batch).")] = 32,
    strings: Annotated[
        bool,
        typer.Option(
            "--strings",
            help="Run the variant's string-in graph (export --with-tokenizer): tokenized inside onnxruntime by "
            "onnxruntime-extensions (the strings extra of edge-sent).",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON lines: text, label, probabilities, truncated.")
    ] = False,
) -> None:
    """Classify texts with a bundle (no torch needed)."""
    from edge_sent.runtime import Classifier

    items, skipped = _texts(texts, file, text_column, fmt)
    clf = Classifier.load(
        bundle,
        variant=variant,
        provider=provider,
        threads=threads,
        precision=precision,
        strings=strings,
        min_agreement=min_agreement,
        probe=probe,
    )
    results = clf.predict(items, batch_size=batch_size)
    truncated = sum(r.truncated for r in results)
    if json_out:
        for text, r in zip(items, results, strict=True):
            sys.stdout.write(json.dumps({"text": text} | r.as_dict(), ensure_ascii=False) + "\n")
    else:
        graph = " (string-in graph)" if strings else ""
        say(f"{len(items)} text(s) · variant {clf.variant}{graph} · {clf.providers[0]}")
        table = Table()
        table.add_column("text", overflow="ellipsis", max_width=60, no_wrap=True)
        table.add_column("label")
        table.add_column("p", justify="right")
        table.add_column("truncated")
        for text, r in zip(items, results, strict=True):
            table.add_row(text, r.label, f"{r.probabilities[r.label]:.3f}", "yes" if r.truncated else "")
        console.print(table)
    if truncated:
        err_console.print(f"note: {truncated} text(s) longer than {clf.max_length} tokens were truncated")
    if skipped:
        err_console.print(f"note: {skipped} empty line(s) in the input were skipped")


@user_errors
def info_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    min_agreement: MinAgreementOpt = MIN_AGREEMENT,
    threads: Annotated[
        int | None, typer.Option(help="The host measurements made at this many threads (what --threads gave).")
    ] = None,
) -> None:
    """Show the bundle: encoder, labels, variants, what was verified, what `auto` takes.

    The manifest, readable: variants with sizes and verification figures, and which variant `auto` takes on each
    provider, and why."""
    from edge_sent.cli import info_view
    from edge_sent.cli.tune_cmd import host_rows, result_threads
    from edge_sent.runtime.host.probe import cached_result, probing_enabled
    from edge_sent.runtime.session import SessionConfig, resolve_provider

    manifest = read_manifest(bundle)
    choices = {p: auto_choice(manifest, p, min_agreement) for p in PROVIDERS}
    here = resolve_provider("auto")
    config = SessionConfig(provider=here, threads=threads)
    host = cached_result(manifest, here, config, min_agreement)
    served = cached_result(manifest, here, config, min_agreement, serving=True)  # serve's batch-independent choice
    moved = moving_variants(manifest.platforms)
    runs = info_view.what_runs(manifest, here, choices[here], host)
    if json_out:
        from edge_sent.runtime.host.candidates import engine_fields

        host_json: dict[str, Any] | None = None
        if host is not None:
            host_json = {"provider": here, "variant": host.choice.variant, **engine_fields(host.choice.variant, here)}
            host_json |= {"reason": host.choice.reason, "measured": host_rows(host.measured)}
        auto = {p: {"variant": c.variant, "reason": c.reason} for p, c in choices.items()}
        serve_json = None
        if served is not None:
            serve_json = {"variant": served.choice.variant, **engine_fields(served.choice.variant, here)}
            serve_json["reason"] = served.choice.reason
        host_state = {"host": host_json, "host_serve": serve_json}
        runs_json = None if runs is None else runs.as_dict() | engine_fields(runs.variant, here)
        print_json(manifest.data | {"auto": auto, "runs": runs_json, **host_state, "moves_across_platforms": moved})
        return
    info_view.overview(manifest, bundle)
    shown = host or served
    if shown is not None:
        by = "" if host is not None else " by serve"
        threads_here = result_threads(config.threads)
        info_view.say(f"measured on this host{by} ({here}, {threads_here} threads; cached in {shown.cache_file}):")
        info_view.host_speed(shown.measured, min_agreement)
    info_view.auto_lines(here, choices, runs, probing_enabled(), bundle)
    if served is not None:
        serve_runs = f"{served.choice.variant} on {info_view.engine_text(served.choice.variant, here)}"
        info_view.say(f"  for serve on this host ({here}): {serve_runs} — {served.choice.reason}", "      ")
    for variant, where in moved.items():
        info_view.say(f"note: variant {variant}'s answers move across platforms: {where}")
    for line in strings_summary(manifest.data):
        info_view.say(line)
    info_view.say(
        f"format: {manifest.data['format']} v{manifest.data['format_version']}, "
        f"edge-sent {manifest.data.get('edge_sent_version')}, created {manifest.data.get('created')}"
    )


@user_errors
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check every file of the bundle against its sha256 and size in the manifest."""
    manifest = read_manifest(bundle)
    problems = verify_bundle(bundle)
    unlisted = sorted(p.name for p in Path(bundle).iterdir() if p.name != MANIFEST and p.name not in manifest.files)
    if json_out:
        print_json(
            {"ok": not problems, "problems": problems, "files": len(manifest.files), "unlisted": unlisted}
            | ({"strings": strings_check(manifest.data)} if "strings" in manifest.data else {})
        )
    if problems:
        if not json_out:
            for problem in problems:
                error_line(problem)
        raise typer.Exit(1)
    if not json_out:
        console.print(f"ok: {len(manifest.files)} files match the manifest of {bundle}")
        for line in strings_summary(manifest.data):
            console.print(line)
        if unlisted:
            err_console.print(f"note: files not in the manifest (ignored): {', '.join(unlisted)}")
