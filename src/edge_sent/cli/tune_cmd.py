"""`edge-sent tune`: measure on this host what `auto` chooses from (speed and fidelity), ahead of time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sent.candidates import parse_candidate
from edge_sent.cli.common import print_json, user_errors
from edge_sent.cli.info_view import host_speed, say
from edge_sent.cli.options import MinAgreementOpt, PrecisionOpt, ProviderOpt, ThreadsOpt
from edge_sent.fidelity import MIN_AGREEMENT, HostMeasure


def host_rows(measured: dict[str, HostMeasure], floor: float = MIN_AGREEMENT) -> list[dict[str, Any]]:
    from edge_sent.runtime.host.verdict import agreement_text

    return [
        {
            "variant": m.variant,
            "engine": parse_candidate(m.variant).engine or "onnxruntime",
            "ms": {k: round(v, 3) for k, v in m.ms.items()},
            "speedup_vs_float_path": {k: round(v, 3) for k, v in m.speedups.items()},
            "agreement_with_fp32": m.agreement,
            "max_abs_dprob": m.max_abs_dprob,
            "n_texts": m.n_texts,
            "agreement_source": m.agreement_source if m.agreement is not None else None,
            "complete": m.complete,  # False: stopped early, `agreement_with_fp32` is the most it could reach
            "agreement_text": agreement_text(m, floor),
        }
        for m in measured.values()
    ]


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
    from edge_sent.runtime.host.candidates import engine_fields, engine_label
    from edge_sent.runtime.host.verdict import decide_here
    from edge_sent.runtime.session import SessionConfig, resolve_provider

    manifest = read_manifest(bundle)
    short = resolve_provider(provider)
    config = SessionConfig(provider=short, threads=threads, precision=precision)
    verdict = decide_here(manifest, short, config, min_agreement, probe=True, refresh=True, notify=lambda _: None)
    if json_out:
        print_json(
            {
                "provider": short,
                "variant": verdict.variant,
                **engine_fields(verdict.variant, short),
                "reason": verdict.reason,
                "decided_by": verdict.decided_by,
                "probe_s": round(verdict.probe_s, 3),
                "cache_file": str(verdict.cache_file) if verdict.cache_file else None,
                "measured": host_rows(verdict.measured, min_agreement),
            }
        )
        return
    if verdict.measured:
        say(f"{bundle} on this host ({short}, {result_threads(config.threads)} threads):")
        host_speed(verdict.measured, min_agreement)
    say(verdict.line())
    say(f"engine: {engine_label(verdict.variant, short)}")
    if verdict.cache_file:
        say(f"measured in {verdict.probe_s:.1f} s; cached in {verdict.cache_file}")
