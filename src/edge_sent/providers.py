"""The provider table: every execution provider edge-sent knows, in one place (standard library only).

A provider's short name (what `--provider` takes), its onnxruntime name, whether it needs a GPU, the
providers onnxruntime may fall back to (a fallback is detected and warned about, or refused with
`strict`), and how its options are built from the requested precision. An unknown name is an error,
never another provider's options.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from edge_sent.errors import EdgeSentError

ProviderEntry = str | tuple[str, dict[str, str]]


def _no_options(precision: str) -> dict[str, str]:
    return {}


def _openvino_options(precision: str) -> dict[str, str]:
    hint = "bf16" if precision == "bf16" else "f32"
    return {"device_type": "CPU", "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint}})}


@dataclass(frozen=True)
class ProviderSpec:
    name: str  # what --provider takes
    ort_name: str  # onnxruntime's name
    display: str  # for messages
    gpu: bool = False
    fallback: tuple[str, ...] = ()  # onnxruntime names tried after it, in order
    options: Callable[[str], dict[str, str]] = _no_options  # precision -> provider options
    precisions: tuple[str, ...] = ("fp32",)  # what --precision may ask of it ("auto" resolves to one of these)
    auto_rank: int | None = None  # `--provider auto` takes the available provider of lowest rank; None: never
    machines: tuple[str, ...] | None = None  # platform.machine() values where auto may take it (None: any)

    def auto_eligible(self, available: list[str], machine: str) -> bool:
        if self.auto_rank is None or self.ort_name not in available:
            return False
        return self.machines is None or machine.lower() in self.machines

    def session_providers(self, precision: str) -> list[ProviderEntry]:
        """The `providers` argument of `onnxruntime.InferenceSession`."""
        options = self.options(precision)
        first: ProviderEntry = (self.ort_name, options) if options else self.ort_name
        return [first, *self.fallback]


CPU = "CPUExecutionProvider"
PROVIDER_TABLE: tuple[ProviderSpec, ...] = (
    ProviderSpec("cpu", CPU, "CPU", auto_rank=99),
    ProviderSpec("cuda", "CUDAExecutionProvider", "CUDA", gpu=True, fallback=(CPU,), auto_rank=0),
    ProviderSpec(
        "tensorrt", "TensorrtExecutionProvider", "TensorRT", gpu=True, fallback=("CUDAExecutionProvider", CPU)
    ),
    ProviderSpec(
        "openvino",
        "OpenVINOExecutionProvider",
        "OpenVINO",
        fallback=(CPU,),
        options=_openvino_options,
        precisions=("fp32", "bf16"),
        auto_rank=1,
        machines=("x86_64", "amd64"),  # the OpenVINO build's CPU plugin targets x86
    ),
)
PROVIDERS: dict[str, ProviderSpec] = {spec.name: spec for spec in PROVIDER_TABLE}
PROVIDER_CHOICES: tuple[str, ...] = ("auto", *PROVIDERS)
PROVIDER_HELP = ", ".join(PROVIDER_CHOICES)


def auto_provider(available: list[str], machine: str) -> str:
    """What `--provider auto` means with these onnxruntime providers on this machine."""
    eligible = [p for p in PROVIDER_TABLE if p.auto_eligible(available, machine)]
    return min(eligible, key=lambda p: p.auto_rank or 0).name if eligible else "cpu"


def provider_spec(name: str) -> ProviderSpec:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise EdgeSentError(f"unknown provider {name!r} (choose from {PROVIDER_HELP})") from None
