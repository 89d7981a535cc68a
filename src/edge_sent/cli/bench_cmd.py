"""`edge-sent bench`: a quick latency/throughput table for one bundle (full comparison: benchmarks/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edge_sent.cli.common import console, print_json, split_choices, user_errors
from edge_sent.cli.info_view import say
from edge_sent.providers import PROVIDER_HELP


@user_errors
def bench_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    variant: Annotated[list[str] | None, typer.Option(help="Variants to time (default: all that run here).")] = None,
    seq: Annotated[str, typer.Option(help="Comma-separated sequence lengths for batch latency.")] = "16,64,128",
    batch_size: Annotated[int, typer.Option(help="Batch size of the latency grid.")] = 1,
    runs: Annotated[int, typer.Option(help="Timed runs per variant and length (after warm-up).")] = 50,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: physical cores).")] = None,
    provider: Annotated[str, typer.Option(help=f"{PROVIDER_HELP}.")] = "cpu",
    precision: Annotated[str, typer.Option(help="OpenVINO only: fp32, bf16 or auto.")] = "auto",
    data: Annotated[
        Path | None, typer.Option(help="Texts (txt/tsv/csv/jsonl) for a throughput run at batch 32.")
    ] = None,
    text_column: Annotated[str, typer.Option(help="Text column/key in --data.")] = "text_a",
    out: Annotated[Path | None, typer.Option(help="Also write the JSON result to this file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure latency per variant and text length, and throughput on real texts.

    Latency p50/p90/p99 at batch 1 per variant and sequence length; throughput on real texts."""
    import json

    from edge_sent.errors import EdgeSentError
    from edge_sent.readers import read_records
    from edge_sent.runtime.bench import BenchConfig, run_bench

    try:
        lengths = tuple(int(s) for s in seq.split(",") if s.strip())
    except ValueError:
        raise EdgeSentError(f"--seq must be comma-separated integers, got {seq!r}") from None
    if not lengths or min(lengths) < 4 or runs < 1:
        raise EdgeSentError("--seq lengths must be at least 4 tokens and --runs at least 1")
    texts = None
    if data is not None:
        texts = [r.text for r in read_records(data, text_field=text_column) if r.text.strip()]
    config = BenchConfig(
        variants=split_choices(variant),
        seq_lengths=lengths,
        batch_size=batch_size,
        runs=runs,
        threads=threads,
        provider=provider,
        precision=precision,
    )
    result = run_bench(str(bundle), config, texts)
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
    if json_out:
        print_json(result)
        return
    say(f"edge-sent bench {bundle} · batch {batch_size} · p50 / p90 / p99 ms")
    table = Table()
    table.add_column("variant")
    table.add_column("size", justify="right")
    for length in lengths:
        table.add_column(f"seq {length}", justify="right")
    if texts:
        table.add_column("texts/s (b32)", justify="right")
    for name, entry in result["variants"].items():
        cells = [f"{entry['file_bytes'] / 1e6:.1f} MB"]
        for stats in entry["latency"].values():
            cells.append(f"{stats['p50_ms']:.1f} / {stats['p90_ms']:.1f} / {stats['p99_ms']:.1f}")
        if texts:
            cells.append(f"{entry['throughput']['texts_per_s']:.1f}")
        table.add_row(name, *cells)
    console.print(table)
