"""`edge-sent train` and `edge-sent export` (the torch side; imported lazily by the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edge_sent.cli.common import console, err_console, print_json, split_choices, user_errors
from edge_sent.cli.info_view import say
from edge_sent.contract import MANIFEST, parse_manifest
from edge_sent.errors import EdgeSentError
from edge_sent.fidelity import below_floor
from edge_sent.variants import DEFAULT_QUANTIZE, QUANTIZE_CHOICES

RANDOM_NOTE = (
    "NOTE: encoder {spec} has RANDOM weights (no pretrained weights are downloaded on this machine): "
    "its accuracy means nothing; use it for speed, size and export-parity checks only."
)


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgeSentError(
            "this command needs the training extra: pip install torch==2.13.0 && pip install 'edge-sent[train]'"
        ) from None


def _calibration_rows(record: dict) -> list[tuple[str, str]]:
    """Train's table: which calibration was chosen, why, and what it does to the ECE (test, else dev)."""
    from edge_sent.calibration import LogitMap

    if record.get("skipped"):
        return [("calibration", f"none ({record['skipped']})")]
    rows = [("calibration (chosen on dev)", LogitMap.from_json(record).describe())]
    split = "test" if "test" in record else "dev"
    figures = record[split]
    ece = f"{figures['ece_before']:.4f} → {figures['ece_after']:.4f}"
    if "ece_if_calibrated" in figures:
        ece += f" (calibrated: ~{figures['ece_if_calibrated']:.3f})"
    rows.append((f"ECE {split} (15 bins)", ece))
    if "accuracy_after" in figures:
        rows.append(
            (f"{split} accuracy, calibrated", f"{figures['accuracy_before']:.4f} → {figures['accuracy_after']:.4f}")
        )
    return rows


@user_errors
def train_cmd(
    train: Annotated[Path, typer.Option("--train", help="Training data: .tsv, .csv or .jsonl.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write (head, report, samples).")],
    dev: Annotated[Path | None, typer.Option(help="Dev data: early stopping on its loss, reported.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test data: reported only.")] = None,
    encoder: Annotated[
        str, typer.Option(help="Hub id, local directory, random:bert-base-chinese or random:tiny.")
    ] = "random:bert-base-chinese",
    text_column: Annotated[str, typer.Option(help="Text column (TSV/CSV) or key (JSONL).")] = "text_a",
    label_column: Annotated[str, typer.Option(help="Label column or key (ids or names).")] = "label",
    label_names: Annotated[
        str | None,
        typer.Option(help="Comma-separated display names for the sorted labels, e.g. negative,positive."),
    ] = None,
    max_length: Annotated[int, typer.Option(help="Token limit (capped by the encoder's).")] = 512,
    pooling: Annotated[str, typer.Option(help="cls ([CLS] row) or mean (masked mean).")] = "cls",
    epochs: Annotated[int, typer.Option(help="Head training epochs (early stopping on dev loss).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Head mini-batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed: identical seeds give identical weights.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training rows (N/4 dev/test).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: the user cache dir).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")] = False,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Calibrate the probabilities on --dev: none, a temperature or vector scaling, whichever lowers the "
            "ECE on held-out dev folds (export puts it into the graph). --no-calibrate keeps the raw softmax.",
        ),
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fit a linear head on a frozen encoder (each distinct text encoded once, cached)."""
    _need_torch()
    from edge_sent.labeled import DataConfig
    from edge_sent.train.head import HeadConfig
    from edge_sent.train.run import TrainConfig
    from edge_sent.train.run import train as run_training

    config = TrainConfig(
        train=train,
        out=out,
        encoder=encoder,
        dev=dev,
        test=test,
        data=DataConfig(text_field=text_column, label_field=label_column),
        max_length=max_length,
        pooling=pooling,
        head=HeadConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
        cache_dir=cache_dir,
        no_cache=no_cache,
        limit=limit,
        label_names=tuple(n.strip() for n in label_names.split(",")) if label_names else None,
        progress=not json_out,
        calibrate=calibrate,
    )
    if encoder.startswith("random:"):
        err_console.print(RANDOM_NOTE.format(spec=encoder), style="yellow")
    report = run_training(config)
    if json_out:
        print_json(report)
        return
    say(f"edge-sent train → {out}")
    table = Table()
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("training rows", str(report["n_train"]))
    table.add_row("dev / test rows", f"{report['n_dev']} / {report['n_test']}")
    table.add_row("distinct texts", str(report["n_distinct_texts"]))
    table.add_row("empty texts skipped", str(sum(report["skipped_empty"].values())))
    table.add_row(f"texts truncated at {report['max_length']} tokens", str(report["truncated_texts"]))
    table.add_row("feature store", "{encoded} encoded, {reused} reused".format(**report["feature_cache"]))
    table.add_row(
        "features / head time",
        f"{report['timings']['features_s']:.1f} s / {report['timings']['head_s']:.1f} s",
    )
    table.add_row("epochs run (best)", f"{report['epochs_run']} ({report['best_epoch']})")
    for split in ("train", "dev", "test"):
        if split in report:
            table.add_row(
                f"{split} accuracy / macro-F1",
                f"{report[split]['accuracy']:.4f} / {report[split]['macro_f1']:.4f}",
            )
    for row in _calibration_rows(report["calibration"]):
        table.add_row(*row)
    console.print(table)
    if report["calibration"].get("chosen_because"):
        console.print(f"calibration: {report['calibration']['chosen_because']}")
    if report["calibration"].get("warning"):
        console.print(f"NOTE: {report['calibration']['warning']}", style="yellow")
    if report["encoder_is_random"]:
        console.print(RANDOM_NOTE.format(spec=encoder), style="yellow")


@user_errors
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `edge-sent train`.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to write (atomically).")],
    quantize: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Variants to add beside fp32: {', '.join(QUANTIZE_CHOICES)} (repeat or comma-separate; default: "
            f"{','.join(DEFAULT_QUANTIZE)}, what `auto` may take on CPU)."
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Texts for int8-static calibration (default: a training sample in RUN_DIR)."),
    ] = None,
    calibration_size: Annotated[int, typer.Option(help="Calibration texts to use.")] = 128,
    eval_data: Annotated[Path | None, typer.Option("--eval", help="Labelled data: accuracy of every variant.")] = None,
    eval_limit: Annotated[int | None, typer.Option(help="Use only the first N rows of --eval.")] = None,
    verify_size: Annotated[int, typer.Option(help="Texts (spread over lengths) for parity checks.")] = 64,
    host_check_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Texts (a random sample of the run's dev texts) every variant's agreement with fp32 is measured on, "
            "at export and again by `auto` on each host; their fp32 probabilities go into the bundle.",
        ),
    ] = 300,
    text_column: Annotated[str, typer.Option(help="Text column/key in --eval and --calibration.")] = "text_a",
    label_column: Annotated[str, typer.Option(help="Label column/key in --eval.")] = "label",
    reduce_range: Annotated[
        bool,
        typer.Option(
            "--reduce-range",
            help="int8 and int8-static with 7-bit weights: x86 CPUs without VNNI cannot saturate their u8×s8 sums, "
            "so answers move less between CPU classes, at some cost in agreement with fp32 (see the device table).",
        ),
    ] = False,
    portable: Annotated[
        bool,
        typer.Option("--portable", help="Also keep model_portable.onnx (standard ops, for TensorRT & co.)."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle directory.")] = False,
    refit_head: Annotated[
        list[str] | None,
        typer.Option(
            help="Refit these variants' heads on their own features ('all' = every --quantize variant; "
            "int8-static is refitted on OpenVINO when --openvino-python is given)."
        ),
    ] = None,
    refit_data: Annotated[
        Path | None, typer.Option(help="Labelled training data for --refit-head (default: the run's own).")
    ] = None,
    openvino_python: Annotated[
        Path | None,
        typer.Option(
            help="Python of a venv with onnxruntime-openvino (scripts/openvino-venv.sh): measure fp32-as-bf16 "
            "and int8-static on the OpenVINO provider there. Default: $EDGE_SENT_OPENVINO_PYTHON."
        ),
    ] = None,
    with_tokenizer: Annotated[
        bool,
        typer.Option(
            "--with-tokenizer",
            help="Also write string-in graphs (text in, label out: the tokenizer inside, onnxruntime-extensions), "
            "each checked against tokenizer.json and its token-id graph.",
        ),
    ] = False,
    tokenizer_variants: Annotated[
        list[str] | None,
        typer.Option(help="Variants to wrap with the tokenizer (default: fp32, and int8 when built)."),
    ] = None,
    tokenizer_check: Annotated[
        list[Path] | None,
        typer.Option(
            help="Texts (--text-column) whose token ids must match tokenizer.json (repeatable; default: the run's "
            "training and dev data)."
        ),
    ] = None,
    tokenizer_tolerance: Annotated[
        float, typer.Option(help="Share of --tokenizer-check texts allowed to differ (default 0: any refuses).")
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Export a bundle: one fused ONNX graph, quantized variants, each verified.

    Fuses encoder + pooling + head (+ softmax) into ONE ONNX graph, adds quantized variants, verifies each against
    torch, and writes a self-describing bundle."""
    _need_torch()
    from edge_sent.export.run import ExportConfig, export_bundle
    from edge_sent.labeled import DataConfig

    config = ExportConfig(
        run_dir=run_dir,
        out=out,
        quantize=split_choices(quantize) or DEFAULT_QUANTIZE,
        calibration=calibration,
        calibration_size=calibration_size,
        eval=eval_data,
        eval_limit=eval_limit,
        verify_size=verify_size,
        host_check_size=host_check_size,
        portable=portable,
        reduce_range=reduce_range,
        force=force,
        data=DataConfig(text_field=text_column, label_field=label_column),
        quiet=json_out,
        refit_head=split_choices(refit_head),
        refit_data=refit_data,
        openvino_python=openvino_python,
        with_tokenizer=with_tokenizer,
        tokenizer_variants=split_choices(tokenizer_variants),
        tokenizer_check=tuple(tokenizer_check or ()),
        tokenizer_tolerance=tokenizer_tolerance,
    )
    manifest = export_bundle(config)
    for warning in below_floor(parse_manifest(out, manifest, out / MANIFEST)):
        err_console.print(warning, style="yellow")
    if json_out:
        print_json(manifest)
        return
    from edge_sent.cli import info_view
    from edge_sent.cli.runtime_cmds import strings_summary

    info_view.overview(parse_manifest(out, manifest, out / MANIFEST), out)  # as `info` shows it
    for line in strings_summary(manifest):
        info_view.say(line)
    if manifest["encoder"].get("random_weights"):
        console.print(RANDOM_NOTE.format(spec=manifest["encoder"]["spec"]), style="yellow")
