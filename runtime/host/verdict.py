"""What `auto` runs on this host and why, in one sentence: the decision `tune`, `info` and the evaluation report
share (the rule itself is `edge_sent.fidelity`; the measurements `host.probe`'s).

`decide_here` asks the same `HostProbe.decide` that `tune` and a first load run (from the host cache when it holds
the measurements, else measuring now), or, with probing off, the export's recorded ranking. `agreement_text` is the
one way a host measurement of agreement with fp32 is written: a run stopped early is an upper bound and reads as one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sent.contract import Manifest
from edge_sent.fidelity import MIN_AGREEMENT, HostMeasure, auto_choice
from edge_sent.runtime.host.probe import HostProbe, HostResult, ProbeSettings, probing_enabled
from edge_sent.runtime.session import SessionConfig

HOST, RECORDED = "this host", "recorded ranking"


def percent(share: float) -> str:
    """98% for 0.98, 97.5% for 0.975: a floor as it was written."""
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def agreement_text(m: HostMeasure, floor: float = MIN_AGREEMENT) -> str:
    """`92.0% of 300`; `≤ 97.3%, stopped after 128 of 300 texts: cannot reach 98%` for a rerun that stopped early (its
    figure is the most it could still have reached); `91.5% (recorded at export)` without host-check texts."""
    if m.agreement is None:
        return "not measured yet"
    if m.agreement_source == "none":
        return "not measured (no host-check texts, none recorded)"
    if m.agreement_source != "host":
        return f"{m.agreement:.1%} ({m.agreement_source} at export)"
    if m.complete:
        return f"{m.agreement:.1%} of {(m.counts[1] if m.counts else 0) or m.n_texts}"
    verdict = f"cannot reach {percent(floor)}" if not m.reaches(floor) else "not measured whole"
    return f"{m.bound_text}: {verdict}"


@dataclass(frozen=True)
class Verdict:
    """The variant `auto` runs on this host, why, and what decided it: the host's measurements (`HOST`) or the
    export's recorded figures (`RECORDED`: probing off, or no quantized candidate on the provider)."""

    provider: str
    variant: str
    reason: str
    decided_by: str
    measured: dict[str, HostMeasure] = field(default_factory=dict)
    probe_s: float = 0.0
    cache_file: Path | None = None

    def line(self) -> str:
        """What `tune` prints: `auto on cpu: fp32 — the faithful float path (...)`."""
        return f"auto on {self.provider}: {self.variant} — {self.reason}"

    def sentence(self) -> str:
        """The evaluation report's verdict."""
        return f"deploy {self.variant} on this host ({self.provider}): {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "variant": self.variant,
            "reason": self.reason,
            "decided_by": self.decided_by,
        }


def from_result(result: HostResult, provider: str) -> Verdict:
    decided_by = HOST if result.measured else RECORDED
    choice = result.choice
    return Verdict(
        provider, choice.variant, choice.reason, decided_by, result.measured, result.probe_s, result.cache_file
    )


def decide_here(
    manifest: Manifest,
    provider: str,
    config: SessionConfig,
    min_agreement: float = MIN_AGREEMENT,
    probe: bool | None = None,
    refresh: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Verdict:
    """What `auto` takes on this host, with every candidate's fidelity measured (from the cache where it is there;
    all of it afresh with `refresh`, as `tune` does). With probing off: the recorded ranking, as a load does."""
    if not probing_enabled(probe):
        choice = auto_choice(manifest, provider, min_agreement)
        return Verdict(provider, choice.variant, choice.reason, RECORDED)
    probe_ = HostProbe(manifest, provider, config, min_agreement, settings=ProbeSettings(notify=notify))
    return from_result(probe_.decide(refresh=refresh, every=True), provider)
