"""`edge-sent eval`: a bundle on labelled data (torch-free); `--report` writes a self-contained HTML page."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from edge_sent.cli import info_view
from edge_sent.cli.common import console, err_console, print_json, user_errors
from edge_sent.cli.info_view import say, show
from edge_sent.cli.options import MinAgreementOpt, PrecisionOpt, ProbeOpt, ProviderOpt, ThreadsOpt, VariantOpt
from edge_sent.errors import EdgeSentError
from edge_sent.fidelity import MIN_AGREEMENT


def _print_tables(report: dict, data: Path) -> None:
    say(f"{data} · variant {report['variant']} · {report['provider']}")
    table = info_view.table("", "value")
    table.add_row("texts", str(report["n"]))
    table.add_row("accuracy", f"{report['accuracy']:.4f}")
    table.add_row("macro-F1", f"{report['macro_f1']:.4f}")
    cal = report["calibration"]
    if "before" in cal:
        table.add_row("ECE (15 bins) before → after", f"{cal['before']['ece']:.4f} → {cal['after']['ece']:.4f}")
    else:
        table.add_row("ECE (15 bins), not calibrated", f"{cal['after']['ece']:.4f}")
    table.add_row("texts/s", f"{report['texts_per_s']:.1f}")
    table.add_row("truncated", str(report["truncated"]))
    show(table)
    say("per label:")
    labels = info_view.table("label", "precision", "recall", "F1", "support")
    for r in report["per_label"]:
        labels.add_row(r["label"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"]))
    show(labels)
    say("confusion (rows: true, columns: predicted):")
    matrix = info_view.table("", *report["labels"])
    for label, row in zip(report["labels"], report["confusion"], strict=True):
        matrix.add_row(label, *map(str, row))
    show(matrix)
    if report["random_weights"]:
        console.print("NOTE: this bundle's encoder has RANDOM weights: the accuracy means nothing.", style="yellow")


@user_errors
def eval_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: tsv, csv or jsonl.")],
    text_column: Annotated[str, typer.Option(help="Text column/key.")] = "text_a",
    label_column: Annotated[str, typer.Option(help="Label column/key (ids or names).")] = "label",
    variant: VariantOpt = "auto",
    provider: ProviderOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    min_agreement: MinAgreementOpt = MIN_AGREEMENT,
    probe: ProbeOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per batch.")] = 32,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N rows of --data.")] = None,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also run every variant of the bundle on the same texts and write one self-contained HTML page: "
            "accuracy, per-label F1, the confusion matrix, reliability before/after calibration, agreement with "
            "fp32 and |Δprob| per variant, latency measured in this run.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate a bundle on labelled data: accuracy, F1, confusion, calibration.

    Accuracy, per-label precision/recall/F1, the confusion matrix, calibration (ECE) and texts/s; `--report`
    writes them as one HTML page."""
    from edge_sent.atomic import atomic_write
    from edge_sent.labeled import DataConfig, label_ids, load_labeled
    from edge_sent.runtime import Classifier
    from edge_sent.runtime.host.verdict import decide_here
    from edge_sent.runtime.report.evaluation import LoadOptions, compare_variants, evaluate
    from edge_sent.runtime.report.html import render
    from edge_sent.runtime.session import SessionConfig, resolve_provider

    if report_path is not None and report_path.is_dir():
        raise EdgeSentError(f"--report {report_path} is a directory; give the HTML file to write")
    if report_path is not None and not report_path.absolute().parent.is_dir():
        raise EdgeSentError(f"cannot write {report_path}: {report_path.absolute().parent} is not a folder")
    dataset = load_labeled(data, DataConfig(text_field=text_column, label_field=label_column))
    clf = Classifier.load(
        bundle,
        variant=variant,
        provider=provider,
        threads=threads,
        precision=precision,
        min_agreement=min_agreement,
        probe=probe,
    )
    # labels by name; else as the training data wrote them (bundles since 0.1 record them); else by their
    # position as an id ("0", "1", ... as in ChnSentiCorp). A real name always keeps its own position.
    positions = [str(i) for i in range(len(clf.labels))]
    y_true = label_ids(dataset, clf.labels, [positions, clf.manifest.data_labels], known_from="the bundle's labels")
    texts, y_true = dataset.texts[:limit], y_true[:limit]
    report, scored = evaluate(clf, texts, y_true, batch_size)
    report["skipped_empty"] = dataset.skipped_empty
    if report_path is not None:
        progress = None if json_out else (lambda message: err_console.print(message, style="dim"))
        options = LoadOptions(provider=provider, precision=precision, threads=threads)
        comparison = compare_variants(clf, scored, texts, y_true, batch_size, options, progress)
        config = SessionConfig(provider=resolve_provider(provider), threads=threads, precision=precision)
        verdict = decide_here(clf.manifest, config.provider, config, min_agreement, probe, notify=progress)
        page = {
            "bundle": str(bundle),
            "data": str(data),
            "created": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "command": shlex.join(["edge-sent", *sys.argv[1:]]),
            "evaluation": report,
            "comparison": comparison,
            "verdict": verdict.as_dict() | {"sentence": verdict.sentence()},
        }
        atomic_write(report_path, render(page))
        report["comparison"] = comparison
        report["verdict"] = page["verdict"]
        report["report"] = str(report_path)
    if json_out:
        print_json(report)
        return
    _print_tables(report, data)
    if report_path is not None:
        err_console.print(f"report written to {report_path}")
