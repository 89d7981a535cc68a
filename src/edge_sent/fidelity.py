"""`auto` chooses by recorded fidelity: the fastest variant whose measured agreement with fp32 reaches a floor.

The export records, per variant, how often its labels agree with fp32's: on the verification texts
(`vs_fp32`), on the `--eval` set when given (`eval_vs_fp32`, preferred: more texts), and for the variants
that target OpenVINO, measured on the OpenVINO provider itself (`openvino`). `auto` walks the variant
table's preference for the provider (fastest first) and takes the first variant the bundle has whose
agreement *on that provider* is at least `min_agreement`; otherwise the faithful float path (fp16 on
CUDA/TensorRT, else fp32, which OpenVINO computes in bf16 where the CPU has it). A variant with no
measurement for the provider is never taken by `auto` (it can still be named).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sent.contract import Agreement, Manifest, VariantEntry
from edge_sent.variants import REFERENCE, VARIANTS, auto_preference, float_path

MIN_AGREEMENT = 0.98  # label agreement with fp32 that `auto` requires of a quantized variant


@dataclass(frozen=True)
class Measured:
    """A variant's recorded label agreement with fp32, and where it was measured."""

    agreement: float
    texts: str  # "eval set" or "verification texts"
    provider: str  # the provider it was measured on


@dataclass(frozen=True)
class Choice:
    """What `auto` chose and why (shown by `edge-sent info`)."""

    variant: str
    reason: str


def recorded(entry: VariantEntry, provider: str) -> Measured | None:
    """The agreement recorded for `entry` on `provider`; None when nothing representative was measured.

    Variants that target OpenVINO (a precision in the variant table) count only what was measured on
    OpenVINO when `provider` is openvino: OpenVINO computes them differently (its own int8 kernels, bf16).
    """
    spec = VARIANTS.get(entry.name)
    if provider == "openvino" and spec is not None and spec.openvino_precision is not None:
        record = entry.record.get("openvino")
        if not isinstance(record, dict):
            return None
        return _measured(
            Agreement.from_json(record.get("eval_vs_fp32")), Agreement.from_json(record.get("vs_fp32")), "openvino"
        )
    if spec is not None and spec.openvino_only:
        return None
    v = entry.verification
    return _measured(v.eval_vs_fp32, v.vs_fp32, v.verified_on or "cpu")


def _measured(on_eval: Agreement | None, on_verify: Agreement | None, provider: str) -> Measured | None:
    if on_eval is not None:
        return Measured(on_eval.label_agreement, "eval set", provider)
    if on_verify is not None:
        return Measured(on_verify.label_agreement, "verification texts", provider)
    return None


def auto_choice(
    manifest: Manifest, provider: str, min_agreement: float = MIN_AGREEMENT, among: set[str] | None = None
) -> Choice:
    """The variant `auto` takes on `provider`, with the reason in words."""
    available = set(manifest.variants) if among is None else set(manifest.variants) & among
    passed_over: list[str] = []
    for name in auto_preference(provider):
        if name not in available:
            continue
        measured = recorded(manifest.variants[name], provider)
        if measured is None:
            passed_over.append(f"{name}: no agreement measured on {provider}")
        elif measured.agreement < min_agreement:
            passed_over.append(f"{name}: {measured.agreement:.1%} agreement with fp32 < {min_agreement:.0%}")
        else:
            return Choice(
                name,
                f"fastest variant for {provider} with ≥ {min_agreement:.0%} agreement with fp32 "
                f"({measured.agreement:.1%} on the {measured.texts})",
            )
    fallback = next((name for name in float_path(provider) if name in available), None)
    if fallback is None:
        fallback = REFERENCE if REFERENCE in available or among is None else next(iter(sorted(available)), REFERENCE)
    why = "; ".join(passed_over) if passed_over else "no faster variant for this provider in the bundle"
    return Choice(fallback, f"the faithful float path ({why})")


def below_floor(manifest: Manifest, min_agreement: float = MIN_AGREEMENT) -> list[str]:
    """A warning for each variant measured below the floor (`edge-sent export` prints them)."""
    warnings = []
    for name, entry in manifest.variants.items():
        if name == REFERENCE:
            continue
        for provider in ("cpu", "openvino") if "openvino" in entry.record else ("cpu",):
            measured = recorded(entry, provider)
            if measured is None or measured.agreement >= min_agreement:
                continue
            warnings.append(
                f"warning: variant {name} agrees with fp32 on {measured.agreement:.1%} of labels ({measured.texts}, "
                f"{measured.provider}), below {min_agreement:.0%}: `auto` will not choose it there; name it with "
                f"--variant {name} to use it anyway"
            )
    return warnings
