"""`auto`'s rules: the fastest variant whose agreement with fp32 reaches a floor, else the faithful float path.

Two rules over the same variant table. `host_choice` (the default) decides from what the machine running
the bundle measured (`edge_sent.runtime.host.probe`): speed against the float path, and agreement with the
fp32 probabilities the export recorded for the bundle's host-check texts. `auto_choice` decides from the
export's records alone (the recorded ranking: `--no-probe`, `EDGE_SENT_PROBE=0`, and providers with no
quantized candidate).

The export records, per variant, how often its labels agree with fp32's: on the verification texts
(`vs_fp32`), on the `--eval` set when given (`eval_vs_fp32`, preferred: more texts), and for the variants
that target OpenVINO, measured on the OpenVINO provider itself (`openvino`). `auto` walks the variant
table's preference for the provider (fastest first) and takes the first variant the bundle has whose
agreement *on that provider* is at least `min_agreement`; otherwise the faithful float path (fp16 on
CUDA/TensorRT, else fp32, which OpenVINO computes in bf16 where the CPU has it). A variant with no
measurement for the provider is never taken by `auto` (it can still be named).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from edge_sent.candidates import MAX_BATCH_DPROB
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
    return _measured(v.eval_vs_fp32, v.vs_fp32, v.verified_on or "cpu", v.host_check_vs_fp32)


def _measured(
    on_eval: Agreement | None, on_verify: Agreement | None, provider: str, on_host_check: Agreement | None = None
) -> Measured | None:
    if on_eval is not None:
        return Measured(on_eval.label_agreement, "eval set", provider)
    if on_host_check is not None:
        return Measured(on_host_check.label_agreement, f"{on_host_check.n_texts} host-check texts", provider)
    if on_verify is not None:
        return Measured(on_verify.label_agreement, "verification texts", provider)
    return None


def auto_choice(
    manifest: Manifest, provider: str, min_agreement: float = MIN_AGREEMENT, among: set[str] | None = None
) -> Choice:
    """The variant `auto` takes on `provider`, with the reason in words."""
    available = set(manifest.variants) if among is None else set(manifest.variants) & among
    passed_over: list[str] = []
    for name in host_candidates(manifest, provider, among):
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


MIN_SPEEDUP = 1.05  # a quantized variant must beat the float path by this much at every probed shape on the host


def agreeing_needed(floor: float, n: int) -> int:
    """The fewest of `n` labels that must agree with fp32 to reach `floor`, in integers: the floor is read as the
    decimal it was written as (0.9 is 9/10, so 270 of 300 reach it). The fidelity rerun's early stop and the rule
    both count with this, so that they can never disagree."""
    return math.ceil(Fraction(repr(float(floor))) * n)


@dataclass(frozen=True)
class HostMeasure:
    """What one variant did on this host: p50 milliseconds per probed shape, its speed-up over the float path
    measured in the same run, and its agreement with fp32's recorded answers (None: not measured yet)."""

    variant: str
    ms: dict[str, float]
    speedups: dict[str, float]  # shape -> float-path ms / this variant's ms
    agreement: float | None = None
    max_abs_dprob: float | None = None
    n_texts: int = 0
    agreement_source: str = "host"  # "host": rerun here; "recorded": the export's figure (no host-check texts)
    complete: bool = True  # False: stopped early once the floor was out of reach; `agreement` is then an upper bound
    counts: tuple[int, int] | None = None  # (labels that agree, of how many texts); partial: the most that still can
    # another engine's candidate: its host-check texts alone against in their padded batches (None: not measured)
    batch_max_dprob: float | None = None
    batch_label_flips: int | None = None

    @property
    def batch_independent(self) -> bool:
        """Labels never change with the batch and probabilities move by at most MAX_BATCH_DPROB (serve's rule)."""
        if self.batch_max_dprob is None or self.batch_label_flips is None:
            return False
        return self.batch_label_flips == 0 and self.batch_max_dprob <= MAX_BATCH_DPROB

    def reaches(self, floor: float) -> bool:
        """Whether the agreement reaches `floor`, counted in labels where the counts are known."""
        counts = self.counts
        if counts is None and self.agreement_source == "host" and self.complete and self.n_texts:
            counts = (round((self.agreement or 0.0) * self.n_texts), self.n_texts)  # a profile cached without them
        if counts is not None:
            return counts[0] >= agreeing_needed(floor, counts[1])
        return self.agreement is not None and self.agreement >= floor

    @property
    def bound_text(self) -> str:
        """`≤ 97.0%, stopped after 64 of 200 texts`: a rerun stopped early, as the most it could still have reached
        (the one wording of it: `host_choice`'s reasons and the host tables of `info` and `tune` use it)."""
        of = f" of {self.counts[1]}" if self.counts else ""
        return f"≤ {self.agreement or 0.0:.1%}, stopped after {self.n_texts}{of} texts"

    @property
    def slowest(self) -> float:
        """The speed-up at the shape where the variant does worst (≥ 1: never slower than the float path)."""
        return min(self.speedups.values()) if self.speedups else 0.0

    @property
    def typical(self) -> float:
        """The geometric mean speed-up over the probed shapes: the ranking."""
        values = [v for v in self.speedups.values() if v > 0]
        return float(math.exp(sum(map(math.log, values)) / len(values))) if values else 0.0


@dataclass(frozen=True)
class HostChoice(Choice):
    """A `Choice` made from host measurements; `needs` names a variant whose agreement must be measured before the
    rule can decide (the probe measures fidelity lazily, fastest candidate first)."""

    needs: str | None = None


def host_candidates(manifest: Manifest, provider: str, among: set[str] | None = None) -> list[str]:
    """The quantized variants `auto` may take on this provider that the bundle has (fastest by the table first)."""
    available = set(manifest.variants) if among is None else set(manifest.variants) & among
    return [name for name in auto_preference(provider) if name in available]


def host_choice(
    manifest: Manifest,
    provider: str,
    measured: dict[str, HostMeasure],
    min_agreement: float = MIN_AGREEMENT,
    among: set[str] | None = None,
    engines: Sequence[str] = (),
    batch_independent: bool = False,
) -> HostChoice:
    """The fastest candidate that is at least MIN_SPEEDUP faster than the float path at every probed shape *on this
    host* and agrees with fp32 on at least `min_agreement` of the host-check texts *on this host*; else the float
    path (`auto_choice`'s fallback). Candidates the speed probe has not measured are never taken. `engines`: other
    engines' candidates (`edge_sent.candidates`); with `batch_independent` (serve) one is taken only if its answers
    measured alone and in a batch pass `HostMeasure.batch_independent`."""
    candidates = [*host_candidates(manifest, provider, among), *engines]
    ranked = sorted(candidates, key=lambda n: -measured[n].typical if n in measured else 0.0)
    passed_over: list[str] = []
    for name in ranked:
        m = measured.get(name)
        if m is None or not m.speedups:
            passed_over.append(f"{name}: not probed on this host")
            continue
        speed = f"{m.slowest:.2f}× the float path at its slowest shape"
        if m.slowest < MIN_SPEEDUP:
            passed_over.append(f"{name}: {speed} (needs ≥ {MIN_SPEEDUP:.2f}×)")
            continue
        if m.agreement is None:
            return HostChoice(REFERENCE, f"{name}: agreement not measured yet", needs=name)
        if m.agreement_source == "none":
            passed_over.append(f"{name}: no agreement with fp32 measured (neither recorded nor rerunnable here)")
            continue
        where = "on this host" if m.agreement_source == "host" else "recorded at export; no host-check texts to rerun"
        fidelity = f"{m.agreement:.1%} agreement with fp32 on {m.n_texts or 'the recorded'} texts ({where})"
        if not m.complete:
            fidelity = f"agreement with fp32 {m.bound_text} ({where})"
            if m.reaches(min_agreement):  # a lower floor than the one it stopped at: measure it whole
                return HostChoice(REFERENCE, f"{name}: agreement measured in part only", needs=name)
        if not m.reaches(min_agreement):
            passed_over.append(
                f"{name}: {fidelity}" + (" < " if m.complete else ": cannot reach ") + f"{min_agreement:.0%}"
            )
            continue
        if batch_independent and name in engines and not m.batch_independent:
            if m.batch_max_dprob is None:
                return HostChoice(REFERENCE, f"{name}: batch independence not measured yet", needs=name)
            passed_over.append(
                f"{name}: its answers depend on the batch ({m.batch_label_flips} labels change, max |Δp| "
                f"{m.batch_max_dprob:.1e} > {MAX_BATCH_DPROB:.0e} alone vs batched)"
            )
            continue
        return HostChoice(name, f"fastest faithful variant on this host: {speed}, {fidelity}")
    fallback = auto_choice(manifest, provider, min_agreement, among=(among or set(manifest.variants)) - set(ranked))
    why = "; ".join(passed_over) if passed_over else "no faster variant for this provider in the bundle"
    return HostChoice(fallback.variant, f"the faithful float path ({why})")
