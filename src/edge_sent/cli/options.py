"""The options the runtime commands share (predict, eval, score, serve, tune, info): one declaration each."""

from __future__ import annotations

from typing import Annotated

import typer

from edge_sent.providers import PROVIDER_HELP
from edge_sent.variants import variant_help

VariantOpt = Annotated[str, typer.Option(help=variant_help())]
ProviderOpt = Annotated[str, typer.Option(help=f"{PROVIDER_HELP}.")]
PrecisionOpt = Annotated[
    str, typer.Option(help="OpenVINO only: fp32, bf16, or auto (bf16 where the CPU has AVX-512 BF16 or AMX).")
]
ThreadsOpt = Annotated[int | None, typer.Option(help="Intra-op threads (default: physical cores).")]
MinAgreementOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Share of the host-check texts (0 to 1) on which a quantized variant must give fp32's label for "
        "--variant auto to take it.",
    ),
]


ProbeOpt = Annotated[
    bool | None,
    typer.Option(
        "--probe/--no-probe",
        help="--variant auto: decide from speed and fidelity measured on this host (once per host, cached; the "
        "default unless EDGE_SENT_PROBE=0), or from the export's recorded ranking (--no-probe).",
        show_default=False,
    ),
]
