"""onnxruntime session creation: resolve the provider, tune options, detect silent CPU fallback."""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import onnxruntime as ort

from edge_sent.errors import EdgeSentError
from edge_sent.providers import PROVIDERS, auto_provider, provider_spec
from edge_sent.runtime.host.cpu import cpu_flags

__all__ = ["SessionConfig", "create_session", "resolve_precision", "resolve_provider"]


class ProviderFallbackWarning(RuntimeWarning):
    """The session runs on a different execution provider than the one requested."""


@dataclass(frozen=True)
class SessionConfig:
    provider: str = "auto"
    threads: int | None = None
    strict: bool = False
    precision: str = "auto"  # OpenVINO only: fp32 | bf16 | auto
    custom_ops_library: str | None = None  # e.g. onnxruntime-extensions' (the string-in graph)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads do not help GEMM-bound inference)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                physical = value.strip()
            elif key.strip() == "core id":
                core = value.strip()
                cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(usable, len(cores) or usable))


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX on the CPU this code runs on (`host.cpu`: the emulated one under qemu)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def resolve_provider(requested: str) -> str:
    """Map a provider choice to a short name, checked against this onnxruntime build."""
    available = ort.get_available_providers()
    if requested == "auto":
        return auto_provider(available, platform.machine())
    if requested == "openvino":
        from edge_sent.runtime.openvino_runtime import runtime_available

        if runtime_available():  # the OpenVINO runtime itself (the `openvino` extra), beside onnxruntime
            return requested
    if provider_spec(requested).ort_name not in available:
        if requested == "openvino" and _installed("onnxruntime-openvino") and _installed("onnxruntime"):
            raise EdgeSentError(
                "provider 'openvino': onnxruntime-openvino is installed, but the CPU build (onnxruntime) shadows it "
                "(both provide the onnxruntime module); make a venv with scripts/openvino-venv.sh, or run "
                "`pip uninstall -y onnxruntime onnxruntime-openvino && pip install --no-deps onnxruntime-openvino`"
            )
        if requested == "openvino":
            raise EdgeSentError(
                "provider 'openvino' needs the OpenVINO runtime: pip install 'edge-sent[openvino]' "
                "(see docs/openvino.md)"
            )
        raise EdgeSentError(
            f"provider {requested!r} is not available in this onnxruntime build "
            f"(available: {', '.join(available)}); see docs/openvino.md (onnxruntime builds: one per venv)"
        )
    return requested


def resolve_precision(provider: str, precision: str) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise EdgeSentError(f"unknown precision {precision!r} (choose from auto, fp32, bf16)")
    spec = provider_spec(provider)
    if precision == "auto":
        return "bf16" if "bf16" in spec.precisions and cpu_has_bf16() else "fp32"
    if precision not in spec.precisions:
        able = [p for p in PROVIDERS.values() if precision in p.precisions]
        names = " or ".join(p.display for p in able)
        raise EdgeSentError(f"precision {precision} needs the {names} provider (--provider {able[0].name})")
    return precision


def create_session(model_path: Path, provider: str, config: SessionConfig) -> ort.InferenceSession:
    """Create the session and check that the requested provider really runs it."""
    precision = resolve_precision(provider, config.precision)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = config.threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if config.custom_ops_library:
        options.register_custom_ops_library(config.custom_ops_library)
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=provider_spec(provider).session_providers(precision)
        )
    except Exception as exc:  # onnxruntime raises its own exception types without a common base
        raise EdgeSentError(f"{model_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
    used = session.get_providers()
    if provider_spec(provider).ort_name not in used:
        message = f"requested provider {provider!r} is not running this model; onnxruntime fell back to {used[0]}"
        if config.strict:
            raise EdgeSentError(message)
        warnings.warn(message, ProviderFallbackWarning, stacklevel=3)
    return session
