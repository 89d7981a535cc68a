"""`edge-sent tune`: measure on this host what `auto` chooses from (speed and fidelity), ahead of time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edge_sent.cli.common import console, print_json, user_errors
from edge_sent.cli.runtime_cmds import MinAgreementOpt, PrecisionOpt, ProviderOpt, ThreadsOpt
from edge_sent.fidelity import MIN_AGREEMENT, MIN_SPEEDUP, HostMeasure


def host_rows(measured: dict[str, HostMeasure]) -> list[dict[str, Any]]:
    return [
        {
            "variant": m.variant,
            "ms": {k: round(v, 3) for k, v in m.ms.items()},
            "speedup_vs_float_path": {k: round(v, 3) for k, v in m.speedups.items()},
            "agreement_with_fp32": m.agreement,
            "max_abs_dprob": m.max_abs_dprob,
            "n_texts": m.n_texts,
            "agreement_source": m.agreement_source if m.agreement is not None else None,
        }
        for m in measured.values()
    ]


def host_table(measured: dict[str, HostMeasure], title: str) -> Table:
    shapes = list(next(iter(measured.values())).ms) if measured else []
    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    for shape in shapes:
        table.add_column(f"p50 {shape}", justify="right")
    table.add_column(f"slowest speed-up (≥ {MIN_SPEEDUP:.2f}×)", justify="right")
    table.add_column("agreement with fp32 here", justify="right")
    table.add_column("max |Δprob|", justify="right")
    for m in measured.values():
        agreement = "-" if m.agreement is None else f"{m.agreement:.1%} of {m.n_texts or '?'}"
        if m.agreement is not None and m.agreement_source != "host":
            agreement += f" ({m.agreement_source})"
        table.add_row(
            m.variant,
            *(f"{m.ms[s]:.2f} ms" for s in shapes),
            f"{m.slowest:.2f}×",
            agreement,
            "-" if m.max_abs_dprob is None else f"{m.max_abs_dprob:.3f}",
        )
    return table


def result_threads(threads: int | None) -> int:
    from edge_sent.runtime.session import physical_cores

    return threads or physical_cores()


@user_errors
def tune_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    provider: ProviderOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    min_agreement: MinAgreementOpt = MIN_AGREEMENT,
    json_out: Annotated[bool, typer.Option("--json", help="Print the measurements and the choice as JSON.")] = False,
) -> None:
    """Measure `auto`'s candidates on this host now, and say which it takes and why.

    Speed against the float path, agreement with fp32's recorded answers on the bundle's host-check texts; the
    result is cached. `predict`, `serve` and the rest do the same lazily on first use; this does all of it now,
    afresh."""
    from edge_sent.contract import read_manifest
    from edge_sent.runtime.host_probe import HostProbe, ProbeSettings
    from edge_sent.runtime.session import SessionConfig, resolve_provider

    manifest = read_manifest(bundle)
    short = resolve_provider(provider)
    config = SessionConfig(provider=short, threads=threads, precision=precision)
    settings = ProbeSettings(notify=lambda message: None)
    result = HostProbe(manifest, short, config, min_agreement, settings=settings).decide(refresh=True, every=True)
    if json_out:
        print_json(
            {
                "provider": short,
                "variant": result.choice.variant,
                "reason": result.choice.reason,
                "probe_s": round(result.probe_s, 3),
                "cache_file": str(result.cache_file) if result.cache_file else None,
                "measured": host_rows(result.measured),
            }
        )
        return
    if result.measured:
        console.print(
            host_table(result.measured, f"{bundle} on this host ({short}, {result_threads(config.threads)} threads)")
        )
    console.print(f"auto on {short}: [bold]{result.choice.variant}[/bold] — {result.choice.reason}")
    if result.cache_file:
        console.print(f"measured in {result.probe_s:.1f} s; cached in {result.cache_file}")
