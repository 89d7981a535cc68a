"""`auto`'s candidates across engines: (variant, engine, precision), named in one place (standard library only).

A candidate on onnxruntime's CPU provider is named by its variant alone (`int8`, `int8-block`): the names the host
profiles, `tune` and `info` have always shown. A candidate on another engine carries it and its precision in the
name: `fp32@openvino-bf16` is the fp32 graph compiled by the OpenVINO runtime to compute in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

OPENVINO = "openvino"
MAX_BATCH_DPROB = 1e-3  # serve's `auto`: how far a text's probabilities may move between alone and in a batch


@dataclass(frozen=True)
class Candidate:
    variant: str
    engine: str | None = None  # None: onnxruntime, on the probe's provider
    precision: str = "fp32"

    @property
    def name(self) -> str:
        return self.variant if self.engine is None else f"{self.variant}@{self.engine}-{self.precision}"


def parse_candidate(name: str) -> Candidate:
    """The candidate a name stands for (a plain variant name: onnxruntime on the probe's provider)."""
    variant, at, rest = name.partition("@")
    if not at:
        return Candidate(variant)
    engine, _, precision = rest.rpartition("-")
    return Candidate(variant, engine or rest, precision if engine else "fp32")


def openvino_candidates(bf16: bool) -> tuple[str, ...]:
    """The OpenVINO runtime's candidates: the fp32 graph computed in bf16 (where the CPU has it), and in f32."""
    return tuple(Candidate("fp32", OPENVINO, p).name for p in (("bf16", "fp32") if bf16 else ("fp32",)))
