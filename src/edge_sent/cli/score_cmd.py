"""`edge-sent score`: large files → resumable output shards (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edge_sent.cli.common import err_console, print_json, user_errors
from edge_sent.cli.options import PrecisionOpt, ProviderOpt, ThreadsOpt, VariantOpt


@user_errors
def score_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory written by `edge-sent export`.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Input files: txt (a text a line), tsv, csv, jsonl or parquet (the parquet extra)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory: job.json and part-III-SSSSSS.jsonl shards.")],
    text_column: Annotated[str, typer.Option(help="Text column (tsv/csv/parquet) or key (jsonl).")] = "text_a",
    id_column: Annotated[
        str | None, typer.Option(help="Column/key holding each row's id (default: FILE:LINE, Parquet FILE:ROW from 0).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Force the input format: txt, tsv, csv, jsonl, parquet.")
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Rows per output shard (a shard is the unit of resume).")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="Texts per batch (sorted by length within a shard).")] = 32,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Skip and count malformed rows instead of stopping at the first.")
    ] = False,
    engine: Annotated[str, typer.Option(help="local (this process) or ray (Ray Data, an actor pool).")] = "local",
    address: Annotated[
        str | None, typer.Option(help="--engine ray: an existing cluster's address (default: start a local one).")
    ] = None,
    actors: Annotated[int, typer.Option(help="--engine ray: actors, each loading the bundle once.")] = 1,
    variant: VariantOpt = "auto",
    provider: ProviderOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Classify large files into shards, with bounded memory; resumable.

    Streams the inputs into output shards. Rerun the same command after an interruption and it finishes the job
    (finished shards are skipped, none is written twice)."""
    from edge_sent.errors import EdgeSentError
    from edge_sent.runtime import Classifier
    from edge_sent.runtime.scoring.run import ScoreConfig, score

    if engine not in ("local", "ray"):
        raise EdgeSentError(f"unknown --engine {engine!r} (choose from local, ray)")

    config = ScoreConfig(
        inputs=tuple(inputs),
        out=out,
        text_column=text_column,
        id_column=id_column,
        fmt=fmt,
        shard_size=shard_size,
        batch_size=batch_size,
        skip_bad_rows=skip_bad_rows,
    )
    clf = Classifier.load(bundle, variant=variant, provider=provider, threads=threads, precision=precision)
    columns = (SpinnerColumn(), TextColumn("scoring {task.completed} texts · {task.fields[rate]}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, disable=json_out, transient=False) as bar:
        task = bar.add_task("score", total=None, rate="")

        def advance(n: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            done = bar.tasks[0].completed + n
            bar.update(task, advance=n, rate=f"{done / elapsed:.1f} texts/s" if elapsed else "")

        if engine == "ray":
            from edge_sent.runtime.scoring.on_ray import RayConfig, score_on_ray

            ray_config = RayConfig(address=address, actors=actors, threads_per_actor=threads or 1)
            stats = score_on_ray(clf, config, ray_config, progress=advance)  # the workers load what clf resolved
        else:
            stats = score(clf, config, progress=advance)
    summary = stats.as_dict() | {
        "out": str(out),
        "engine": engine,
        "variant": clf.variant,
        "provider": clf.providers[0],
    }
    if json_out:
        print_json(summary)
        return
    err_console.print(
        f"scored {stats.rows} texts into {stats.shards_written} shard(s) in {stats.seconds:.1f} s "
        f"({summary['texts_per_s']:.1f} texts/s); {stats.shards_skipped} shard(s) ({stats.resumed_rows} rows) "
        f"were already done; variant {clf.variant} on {clf.providers[0]} → {out}"
    )
    if stats.empty_skipped:
        err_console.print(f"note: {stats.empty_skipped} empty row(s) were skipped")
    if stats.bad_rows:
        err_console.print(f"note: {len(stats.bad_rows)} malformed row(s) were skipped, first: {stats.bad_rows[0]}")
